"""Bookings through the HTTP API: validation, scope rules, evaluation and department scoping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.dispatch.conftest import Api, Org, booking_body, tomorrow


def test_create_draft_and_read_back(api: Api, org: Org) -> None:
    b = api.book(org.staff_a, destinations=[
        {"address": "高新区管委会", "lat": 30.62, "lon": 104.08},
        {"address": "锦江宾馆", "lat": 30.64, "lon": 104.05}], vehicle_category="general")
    assert b["status"] == "draft" and b["department_id"] == org.a.id
    assert b["requester_id"] == org.staff_a.id
    assert [d["address"] for d in b["destinations"]] == ["高新区管委会", "锦江宾馆"]
    assert b["allowed"] == ["update", "submit", "cancel"]
    got = api.get(org.staff_a, f"/bookings/{b['id']}").json()
    assert got["pickup"]["address"] == "市政府" and got["version"] == b["version"]
    r = api.patch(org.staff_a, f"/bookings/{b['id']}", {"passengers": 3, "notes": "改"})
    assert r.status_code == 200 and r.json()["passengers"] == 3


def test_validation_answers_422_with_field(api: Api, org: Org) -> None:
    past = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    cases = [
        ({"start_at": past}, "start_at", "past"),
        ({"start_at": tomorrow(12), "end_at": tomorrow(10)}, "end_at", "before it starts"),
        ({"passengers": 9}, "passengers", "exceed"),
        ({"department_id": 999999}, "department_id", "unknown department"),
        ({"destinations": []}, "destinations", ""),
        ({"urgent_tag": "打球"}, "urgent_tag", "unknown urgent task"),
        ({"start_at": "2030-01-01T10:00:00"}, "start_at", "time zone"),
        ({"pickup": {"address": "x", "lat": 95, "lon": 104}}, "pickup.lat", ""),
    ]
    for over, field, reason in cases:
        over = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in over.items()}
        r = api.post(org.staff_a, "/bookings", booking_body(**over))
        assert r.status_code == 422, (over, r.text)
        body = r.json()
        fields = [e["field"] for e in body.get("errors", [])] + [body.get("field")]
        assert any(x and x.startswith(field) for x in fields), (field, body)
        assert reason in body["detail"], body
    # six passengers fit the 7-seat van; a category with no car in service does not
    assert api.post(org.staff_a, "/bookings", booking_body(passengers=6)).status_code == 201
    r = api.post(org.staff_a, "/bookings", booking_body(vehicle_category="emergency"))
    assert r.status_code == 422 and r.json()["field"] == "passengers"


def test_evaluate_draft_before_submitting(api: Api, org: Org) -> None:
    ok = api.post(org.staff_a, "/bookings/evaluate", booking_body()).json()
    assert ok == {"outcome": "in_scope", "reasons": []}
    night = api.post(org.staff_a, "/bookings/evaluate", booking_body(
        start_at=tomorrow(21).isoformat(), end_at=tomorrow(23).isoformat())).json()
    assert night["outcome"] == "needs_approval"
    assert "夜间" in night["reasons"][0]["message"]
    far = api.post(org.staff_a, "/bookings/evaluate", booking_body(destinations=[
        {"address": "重庆", "lat": 29.56, "lon": 106.55}])).json()  # ~270 km
    assert far["outcome"] == "needs_approval" and "50公里" in far["reasons"][0]["message"]
    very_far = api.post(org.staff_a, "/bookings/evaluate", booking_body(destinations=[
        {"address": "西安", "lat": 34.34, "lon": 108.94}])).json()  # ~600 km
    assert very_far["outcome"] == "refused"
    assert {h["outcome"] for h in very_far["reasons"]} == {"needs_approval", "refused"}
    reserved = api.post(org.staff_a, "/bookings/evaluate",
                        booking_body(vehicle_category="law_enforcement")).json()
    assert reserved["outcome"] == "refused" and "执法" in reserved["reasons"][0]["message"]
    own = api.post(org.dispatcher, "/bookings/evaluate", booking_body(
        vehicle_category="law_enforcement", department_id=org.enforce.id)).json()
    assert own["outcome"] == "in_scope"
    other = api.post(org.staff_a, "/bookings/evaluate", booking_body(purpose="other")).json()
    assert other["outcome"] == "needs_approval"
    # evaluation validates like creation, and stores nothing
    r = api.post(org.staff_a, "/bookings/evaluate", booking_body(passengers=40))
    assert r.status_code == 422
    assert api.get(org.staff_a, "/bookings").json()["total"] == 0


def test_refused_submission_is_rejected_with_the_reason(api: Api, org: Org) -> None:
    b = api.book(org.staff_a, submit=True, destinations=[
        {"address": "西安", "lat": 34.34, "lon": 108.94}])
    assert b["status"] == "rejected" and b["scope_outcome"] == "refused"
    assert any("300公里" in r["message"] for r in b["scope_reasons"])
    approvals = api.get(org.staff_a, f"/bookings/{b['id']}/approvals").json()
    assert approvals[0]["decision"] == "rejected" and approvals[0]["actor_id"] is None
    assert "保障范围" in approvals[0]["reason"]


def test_rules_are_data_with_admin_crud(api: Api, org: Org) -> None:
    rules = api.get(org.staff_a, "/rules").json()
    assert {r["kind"] for r in rules} >= {"max_distance", "night_hours", "reserved_category"}
    body = {"name": "周末用车", "kind": "weekend", "params": {"weekdays": [0, 1, 2, 3, 4, 5, 6]},
            "outcome": "refused", "message": "本单位周末不保障"}
    assert api.post(org.dispatcher, "/rules", body).status_code == 403
    assert api.post(org.supervisor, "/rules", body).status_code == 403
    bad = api.post(org.admin, "/rules", {**body, "params": {}})
    assert bad.status_code == 422 and bad.json()["field"] == "params"
    r = api.post(org.admin, "/rules", body)
    assert r.status_code == 201, r.text
    rule = r.json()
    ev = api.post(org.staff_a, "/bookings/evaluate", booking_body()).json()
    assert ev["outcome"] == "refused" and ev["reasons"][0]["message"] == "本单位周末不保障"
    r = api.patch(org.admin, f"/rules/{rule['id']}", {"outcome": "needs_approval"})
    assert r.status_code == 200
    assert api.post(org.staff_a, "/bookings/evaluate",
                    booking_body()).json()["outcome"] == "needs_approval"
    api.patch(org.admin, f"/rules/{rule['id']}", {"active": False})
    assert api.post(org.staff_a, "/bookings/evaluate",
                    booking_body()).json()["outcome"] == "in_scope"
    assert api.delete(org.staff_a, f"/rules/{rule['id']}").status_code == 403
    assert api.delete(org.admin, f"/rules/{rule['id']}").status_code == 204
    assert api.get(org.admin, f"/rules/{rule['id']}").status_code == 404
    trail = api.get(org.supervisor, "/audit", params={"entity": "scope_rule"}).json()
    assert [e["action"] for e in trail if e["entity_id"] == str(rule["id"])] == \
        ["create", "update", "update", "delete"]
    # reserved purposes, with department codes
    api.post(org.admin, "/rules", {"name": "执法事由", "kind": "reserved_purpose",
                                   "params": {"purposes": ["law_enforcement"],
                                              "department_codes": ["market.enforce"]},
                                   "outcome": "refused", "message": "执法执勤仅限执法单位"})
    assert api.post(org.staff_a, "/bookings/evaluate", booking_body(
        purpose="law_enforcement")).json()["outcome"] == "refused"


# --- scoping -----------------------------------------------------------------------------
def test_staff_see_and_create_only_their_department(api: Api, org: Org) -> None:
    mine = api.book(org.staff_a)
    sub = api.book(org.staff_a, department_id=org.a_sub.id)  # sub-units are in scope
    theirs = api.book(org.staff_b)
    listed = {b["id"] for b in api.get(org.staff_a, "/bookings").json()["items"]}
    assert listed == {mine["id"], sub["id"]}
    assert api.get(org.staff_a, f"/bookings/{theirs['id']}").status_code == 404
    assert api.post(org.staff_a, f"/bookings/{theirs['id']}/submit").status_code == 404
    assert api.patch(org.staff_a, f"/bookings/{theirs['id']}", {"passengers": 1}
                     ).status_code == 404
    r = api.post(org.staff_a, "/bookings", booking_body(department_id=org.b.id))
    assert r.status_code == 403
    assert api.get(org.staff_b, "/bookings").json()["total"] == 1


def test_approvers_approve_only_their_department(api: Api, org: Org) -> None:
    b = api.book(org.staff_a, submit=True)
    assert api.post(org.approver_b, f"/bookings/{b['id']}/approve", {}).status_code == 404
    assert api.post(org.staff_a, f"/bookings/{b['id']}/approve", {}).status_code == 403
    r = api.post(org.dispatcher, f"/bookings/{b['id']}/approve", {})
    assert r.status_code == 403 and "单位审批" in r.json()["detail"]
    assert api.post(org.approver_a, f"/bookings/{b['id']}/approve", {}).status_code == 200
    # the dispatch stage belongs to dispatchers, not approvers
    assert api.post(org.approver_a, f"/bookings/{b['id']}/approve", {}).status_code == 403


def test_dispatchers_see_all_supervisors_read_all_write_nothing(api: Api, org: Org) -> None:
    a = api.book(org.staff_a, submit=True)
    b = api.book(org.staff_b)
    for reader in (org.dispatcher, org.supervisor):
        ids = {x["id"] for x in api.get(reader, "/bookings").json()["items"]}
        assert ids == {a["id"], b["id"]}
        assert api.get(reader, f"/bookings/{a['id']}").status_code == 200
    sup = org.supervisor
    writes = [
        api.post(sup, "/bookings", booking_body()),
        api.post(sup, f"/bookings/{a['id']}/approve", {}),
        api.post(sup, f"/bookings/{a['id']}/reject", {"reason": "x"}),
        api.post(sup, f"/bookings/{a['id']}/cancel", {"reason": "x"}),
        api.post(sup, f"/bookings/{b['id']}/submit"),
        api.patch(sup, f"/bookings/{b['id']}", {"passengers": 1}),
        api.post(sup, f"/bookings/{a['id']}/assign", {"vehicle_id": org.car.id,
                                                      "driver_id": org.driver.id}),
        api.post(sup, "/rules", {"name": "x", "kind": "purpose", "params": {"purposes": []},
                                 "outcome": "refused", "message": "x"}),
    ]
    for r in writes:
        assert r.status_code == 403, r.text
        assert "read-only" in r.json()["detail"]
    # staff cannot read the audit trail or statistics; supervisors can
    assert api.get(org.staff_a, "/audit").status_code == 403
    assert api.get(org.supervisor, "/audit").status_code == 200


def test_list_items_are_the_same_views_as_single_reads(api: Api, org: Org) -> None:
    """The list reads rows, not ORM objects, and joins stops and assignments itself: each
    item must equal GET /bookings/{id} (drafts, several stops, assigned, released)."""
    api.book(org.staff_a, destinations=[{"address": "一", "lat": 30.6, "lon": 104.0},
                                        {"address": "二", "lat": 30.61, "lon": 104.01}])
    assigned = api.assigned(org)
    released = api.assigned(org, start_at=tomorrow(14).isoformat(),
                            end_at=tomorrow(16).isoformat())
    r = api.post(org.dispatcher, f"/bookings/{released['id']}/unassign", {"reason": "换车"})
    assert r.status_code == 200 and r.json()["assignment"] is None
    for who in (org.dispatcher, org.staff_a):
        items = api.get(who, "/bookings", params={"limit": 500}).json()["items"]
        assert len(items) == 3
        for item in items:
            assert item == api.get(who, f"/bookings/{item['id']}").json()
    listed = {b["id"]: b for b in api.get(org.dispatcher, "/bookings",
                                          params={"limit": 500}).json()["items"]}
    assert listed[assigned["id"]]["assignment"]["vehicle_id"] is not None
    assert listed[released["id"]]["assignment"] is None


def test_list_pages_count_every_visible_booking_once(api: Api, org: Org) -> None:
    """The total rides on the page's rows (a window count); a page past the end counts on
    its own. Released and reassigned bookings (two assignments, one active) count once."""
    api.assigned(org)
    moved = api.assigned(org, start_at=tomorrow(14).isoformat(), end_at=tomorrow(16).isoformat())
    api.post(org.dispatcher, f"/bookings/{moved['id']}/unassign", {"reason": "换车"})
    r = api.post(org.dispatcher, f"/bookings/{moved['id']}/assign",
                 {"vehicle_id": org.car.id, "driver_id": org.driver.id})
    assert r.status_code == 200, r.text
    for _ in range(3):
        api.book(org.staff_a)
    pages = [api.get(org.dispatcher, "/bookings", params={"limit": 2, "offset": o}).json()
             for o in (0, 2, 4, 6)]
    assert [p["total"] for p in pages] == [5, 5, 5, 5]
    assert [len(p["items"]) for p in pages] == [2, 2, 1, 0]
    assert len({b["id"] for p in pages for b in p["items"]}) == 5
    drafts = api.get(org.dispatcher, "/bookings", params={"status": "draft", "limit": 1}).json()
    assert drafts["total"] == 3 and len(drafts["items"]) == 1
    past = api.get(org.dispatcher, "/bookings", params={"status": "draft", "offset": 9}).json()
    assert past["total"] == 3 and past["items"] == []
    assert api.get(org.staff_b, "/bookings", params={"offset": 3}).json()["total"] == 0
