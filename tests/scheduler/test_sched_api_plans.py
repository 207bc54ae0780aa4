"""The day planner's API end to end, on PostGIS and SpatiaLite: approved bookings → preview →
commit → assigned; unserved reasons; roles; all-or-nothing commit; frozen legs; insertion."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.models import DriverStatus, Vehicle, VehicleStatus
from tests import factories as f
from tests.dispatch.conftest import Api, Org, api, make_driver, org, tomorrow  # noqa: F401

FAST = {"time_limit": 1}


def plan_day() -> str:
    return (datetime.now(UTC) + timedelta(hours=8) + timedelta(days=1)).date().isoformat()


def plans(api: Api, user: Any, path: str = "", body: dict | None = None) -> Any:  # noqa: F811
    return api.client.post(f"/api/plans{path}", json=body or {}, headers=api.h(user))


def preview(api: Api, o: Org, **options: Any) -> dict:  # noqa: F811
    r = plans(api, o.dispatcher, "", {"day": plan_day(), "options": {**FAST, **options}})
    assert r.status_code == 200, r.text
    return r.json()


def booking(api: Api, o: Org, bid: int) -> dict:  # noqa: F811
    r = api.get(o.dispatcher, f"/bookings/{bid}")
    assert r.status_code == 200, r.text
    return r.json()


def test_preview_then_commit_assigns_the_planned_car_and_driver(api: Api, org: Org) -> None:  # noqa: F811
    o = org
    b1 = api.approved(o)
    b2 = api.approved(o, start_at=tomorrow(14).isoformat(), end_at=tomorrow(16).isoformat())
    p = preview(api, o)
    assert p["status"] == "preview" and p["valid"]
    assert p["served"] == 2 and p["unserved"] == []
    assert p["vehicles_available"] >= 3 and p["drivers_available"] >= 2
    served = {bid for r in p["routes"] for bid in r["bookings"]}
    assert served == {b1["id"], b2["id"]}
    route = p["routes"][0]
    assert route["plate"].startswith("川A") and route["driver_name"].startswith("司机")
    kinds = [s["kind"] for s in route["stops"]]
    assert kinds[0] == "start" and kinds[-1] == "end" and "pickup" in kinds
    pick = next(s for s in route["stops"] if s["kind"] == "pickup")
    assert datetime.fromisoformat(pick["start"]) == datetime.fromisoformat(b1["start_at"]) or \
        datetime.fromisoformat(pick["start"]) == datetime.fromisoformat(b2["start_at"])
    assert p["km"] > 0 and p["vehicles_used"] >= 1
    # nothing is assigned by a preview
    assert booking(api, o, b1["id"])["status"] == "approved"

    r = plans(api, o.dispatcher, "/commit", {"assignments": p["assignments"]})
    assert r.status_code == 200, r.text
    for item in p["assignments"]:
        b = booking(api, o, item["booking_id"])
        assert b["status"] == "assigned"
        assert b["assignment"]["vehicle_id"] == item["vehicle_id"]
        assert b["assignment"]["driver_id"] == item["driver_id"]
        assert b["assignment"]["source"] == "scheduler"


def test_commit_in_one_call_and_unserved_category(api: Api, org: Org, db: Session) -> None:  # noqa: F811
    o = org
    rescue = f.vehicle(db, o.admin, o.bureau, seats=5, category="emergency")
    db.commit()
    wanted = api.approved(o, vehicle_category="emergency")
    plain = api.approved(o)
    rescue.status = VehicleStatus.maintenance  # the only emergency car goes to the workshop
    db.commit()
    r = plans(api, o.dispatcher, "", {"day": plan_day(), "options": FAST, "preview": False})
    assert r.status_code == 200, r.text
    p = r.json()
    assert p["status"] == "committed"
    [u] = p["unserved"]
    assert u["booking_id"] == wanted["id"] and u["code"] == "no_vehicle_category"
    assert "emergency" in u["reason"] and "emergency" in u["reason_zh"]
    assert booking(api, o, plain["id"])["status"] == "assigned"
    assert booking(api, o, wanted["id"])["status"] == "approved"


def test_roles(api: Api, org: Org) -> None:  # noqa: F811
    o = org
    body = {"day": plan_day(), "options": FAST}
    for u in (o.supervisor, o.staff_a, o.approver_a):
        assert plans(api, u, "", body).status_code == 403
        assert plans(api, u, "/insert", {"booking_id": 1}).status_code == 403
        assert plans(api, u, "/commit", {"assignments": [
            {"booking_id": 1, "vehicle_id": 1, "driver_id": 1}]}).status_code == 403
    assert plans(api, o.admin, "", body).status_code == 200
    bad = plans(api, o.dispatcher, "", {"day": plan_day(), "options": {"time_limit": 61}})
    assert bad.status_code == 422


def test_concurrent_manual_assignment_makes_commit_409_and_nothing_committed(
        api: Api, org: Org) -> None:  # noqa: F811
    o = org
    b1 = api.approved(o)
    b2 = api.approved(o, start_at=tomorrow(14).isoformat(), end_at=tomorrow(16).isoformat())
    p = preview(api, o)
    assert len(p["assignments"]) == 2
    # meanwhile a dispatcher assigns b2 by hand
    r = api.post(o.dispatcher, f"/bookings/{b2['id']}/assign",
                 {"vehicle_id": o.van.id, "driver_id": o.driver2.id})
    assert r.status_code == 200, r.text
    r = plans(api, o.dispatcher, "/commit", {"assignments": p["assignments"]})
    assert r.status_code == 409, r.text
    assert r.json()["booking_id"] == b2["id"] and f"booking {b2['id']}" in r.json()["detail"]
    assert booking(api, o, b1["id"])["status"] == "approved"  # rolled back
    b = booking(api, o, b2["id"])
    assert b["assignment"]["source"] == "manual" and b["assignment"]["vehicle_id"] == o.van.id


def test_frozen_legs_are_kept_on_replan(api: Api, org: Org) -> None:  # noqa: F811
    o = org
    held = api.assigned(o, vehicle=o.van, driver=o.driver2,
                        start_at=tomorrow(8).isoformat(), end_at=tomorrow(9).isoformat())
    new = api.approved(o)
    p = preview(api, o)
    van = next(r for r in p["routes"] if r["vehicle_id"] == o.van.id)
    assert van["frozen"] == [held["id"]]
    assert van["bookings"][0] == held["id"]
    assert [s["kind"] for s in van["stops"][1:3]] == ["pickup", "delivery"]
    assert van["driver_id"] == o.driver2.id
    assert all(a["booking_id"] != held["id"] for a in p["assignments"])
    assert new["id"] in {bid for r in p["routes"] for bid in r["bookings"]}
    # the console's spelling: commit=true
    r = plans(api, o.dispatcher, "", {"day": plan_day(), "options": FAST, "commit": True})
    assert r.status_code == 200, r.text
    assert booking(api, o, new["id"])["status"] == "assigned"
    assert booking(api, o, held["id"])["assignment"]["vehicle_id"] == o.van.id
    # re-planning cannot be committed when it may move assigned bookings
    r = plans(api, o.dispatcher, "", {"day": plan_day(), "preview": False,
                                      "options": {**FAST, "include_assigned": False}})
    assert r.status_code == 422


def test_insert_urgent_booking_with_and_without_preemption(api: Api, org: Org) -> None:  # noqa: F811
    o = org
    a = api.assigned(o, vehicle=o.car, driver=o.driver)
    b = api.assigned(o, vehicle=o.van, driver=o.driver2)
    urgent = api.book(o.staff_a, submit=True, purpose="emergency", urgent_tag="应急",
                      start_at=tomorrow(10, minute=30).isoformat(),
                      end_at=tomorrow(11, minute=30).isoformat())
    assert urgent["status"] == "approved"
    # both drivers are busy: the emergency bumps an ordinary booking (preview first)
    r = plans(api, o.dispatcher, "/insert", {"booking_id": urgent["id"]})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["inserted"] and not res["committed"], res
    [bump] = res["bumped"]
    assert bump["booking_id"] in (a["id"], b["id"]) and bump["moved_to_vehicle_id"] is None
    assert urgent["id"] in res["route"]["bookings"]
    r = plans(api, o.dispatcher, "/insert", {"booking_id": urgent["id"], "commit": True})
    assert r.status_code == 200 and r.json()["committed"], r.text
    u = booking(api, o, urgent["id"])
    assert u["status"] == "assigned" and u["assignment"]["vehicle_id"] == res["vehicle_id"]
    assert booking(api, o, bump["booking_id"])["status"] == "approved"
    # without pre-emption a second emergency at the same time does not fit
    again = api.book(o.staff_a, submit=True, purpose="emergency", urgent_tag="防汛",
                     start_at=tomorrow(10, minute=45).isoformat(),
                     end_at=tomorrow(11, minute=15).isoformat())
    r = plans(api, o.dispatcher, "/insert", {"booking_id": again["id"],
                                             "allow_preemption": False})
    assert r.status_code == 200, r.text
    assert not r.json()["inserted"] and r.json()["unserved"]["code"]


def test_insert_into_a_free_car(api: Api, org: Org) -> None:  # noqa: F811
    o = org
    api.assigned(o, vehicle=o.car, driver=o.driver)
    urgent = api.book(o.staff_a, submit=True, purpose="emergency", urgent_tag="应急",
                      start_at=tomorrow(15).isoformat(), end_at=tomorrow(16).isoformat())
    r = plans(api, o.dispatcher, "/insert", {"booking_id": urgent["id"], "commit": True})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["inserted"] and res["committed"] and res["bumped"] == []
    assert res["seconds"] < 5
    assert booking(api, o, urgent["id"])["status"] == "assigned"


def test_a_plan_failing_validation_is_refused_not_returned(
        api: Api, org: Org, monkeypatch: Any) -> None:  # noqa: F811
    from scheduler import service
    from scheduler.model import Plan

    o = org
    api.approved(o)
    monkeypatch.setattr(service, "solve", lambda problem, options: Plan(routes=[]))
    r = plans(api, o.dispatcher, "", {"day": plan_day(), "options": FAST, "preview": False})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "plan_invalid"
    assert body["violations"][0]["code"] == "booking_missing"


def test_insert_refuses_a_booking_that_is_not_approved(api: Api, org: Org) -> None:  # noqa: F811
    o = org
    held = api.assigned(o)
    r = plans(api, o.dispatcher, "/insert", {"booking_id": held["id"]})
    assert r.status_code == 409 and "assigned" in r.json()["detail"]


def test_stored_shifts_give_one_car_an_early_and_a_late_driver(
        api: Api, org: Org, db: Session) -> None:  # noqa: F811
    """Drivers' stored shifts (班次) reach the planner: with one car, an early driver
    (07:00–13:00) takes the morning booking and a late one (13:00–22:00) the evening one,
    on the same car after a handover — neither could do both."""
    o = org
    for d in (o.driver, o.driver2):
        d.status = DriverStatus.on_leave
    o.van.status = VehicleStatus.maintenance
    for v in db.scalars(select(Vehicle)):
        if v.id != o.car.id:
            v.status = VehicleStatus.maintenance
    early = make_driver(db, o.bureau, shift_start=time(7), shift_end=time(13),
                        max_driving_minutes=300)
    late = make_driver(db, o.bureau, shift_start=time(13), shift_end=time(22))
    db.commit()
    morning = api.approved(o, start_at=tomorrow(8).isoformat(), end_at=tomorrow(10).isoformat())
    evening = api.approved(o, start_at=tomorrow(17).isoformat(),
                           end_at=tomorrow(19).isoformat())
    p = preview(api, o)
    assert p["valid"] and p["unserved"] == [], p["unserved"]
    by_booking = {bid: r for r in p["routes"] for bid in r["bookings"]}
    assert by_booking[morning["id"]]["vehicle_id"] == o.car.id
    assert by_booking[evening["id"]]["vehicle_id"] == o.car.id
    assert by_booking[morning["id"]]["driver_id"] == early.id
    assert by_booking[evening["id"]]["driver_id"] == late.id
    assert p["vehicles_used"] == 1
    r = plans(api, o.dispatcher, "/commit", {"assignments": p["assignments"]})
    assert r.status_code == 200, r.text
    assert booking(api, o, evening["id"])["assignment"]["driver_id"] == late.id
