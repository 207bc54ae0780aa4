"""The state machine, approval chain, assignment checks, audit trail and statistics."""

from __future__ import annotations

import csv
import io

from openpyxl import load_workbook
from sqlalchemy.orm import Session

from fleet.models import DriverStatus, LicenceClass, VehicleStatus
from tests import factories as f
from tests.dispatch.conftest import Api, Org, make_driver, tomorrow


def test_happy_path_every_forward_transition(api: Api, org: Org) -> None:
    b = api.book(org.staff_a)
    bid = b["id"]
    r = api.post(org.staff_a, f"/bookings/{bid}/submit")
    assert r.json()["status"] == "submitted" and r.json()["stage"] == "department"
    r = api.post(org.approver_a, f"/bookings/{bid}/approve", {"reason": "同意调研"})
    assert r.json()["status"] == "submitted" and r.json()["stage"] == "dispatch"
    r = api.post(org.dispatcher, f"/bookings/{bid}/approve", {"reason": "有车"})
    assert r.json()["status"] == "approved" and r.json()["allowed"] == ["assign", "cancel"]
    r = api.post(org.dispatcher, f"/bookings/{bid}/assign",
                 {"vehicle_id": org.car.id, "driver_id": org.driver.id})
    assert r.json()["status"] == "assigned"
    assert r.json()["assignment"]["vehicle_id"] == org.car.id
    r = api.post(org.dispatcher, f"/bookings/{bid}/start")
    assert r.json()["status"] == "in_progress" and r.json()["started_at"]
    r = api.post(org.dispatcher, f"/bookings/{bid}/complete", {"distance_m": 12345})
    assert r.json()["status"] == "completed" and r.json()["distance_m"] == 12345
    assert r.json()["allowed"] == []
    approvals = api.get(org.staff_a, f"/bookings/{bid}/approvals").json()
    assert [(a["stage"], a["decision"], a["actor_id"], a["reason"]) for a in approvals] == [
        ("department", "approved", org.approver_a.id, "同意调研"),
        ("dispatch", "approved", org.dispatcher.id, "有车")]
    assert all(a["at"] for a in approvals)
    trail = api.get(org.staff_a, f"/bookings/{bid}/history").json()
    assert [e["action"] for e in trail] == ["create", "submit", "approve", "approve", "assign",
                                            "start", "complete"]
    assert trail[2]["actor_id"] == org.approver_a.id and trail[2]["reason"] == "同意调研"


def test_illegal_transitions_answer_409_with_allowed(api: Api, org: Org) -> None:
    draft = api.book(org.staff_a)
    r = api.post(org.dispatcher, f"/bookings/{draft['id']}/assign",
                 {"vehicle_id": org.car.id, "driver_id": org.driver.id})
    assert r.status_code == 409
    assert r.json()["allowed"] == ["update", "submit", "cancel"] and r.json()["status"] == "draft"
    assert api.post(org.approver_a, f"/bookings/{draft['id']}/approve", {}).status_code == 409
    assert api.post(org.dispatcher, f"/bookings/{draft['id']}/start").status_code == 409
    done = api.assigned(org)
    assert api.post(org.staff_a, f"/bookings/{done['id']}/submit").status_code == 409
    r = api.patch(org.staff_a, f"/bookings/{done['id']}", {"passengers": 1})
    assert r.status_code == 409 and "unassign" in r.json()["allowed"]
    r = api.post(org.dispatcher, f"/bookings/{done['id']}/complete", {})
    assert r.status_code == 409 and r.json()["allowed"] == ["start", "unassign", "cancel"]
    api.post(org.dispatcher, f"/bookings/{done['id']}/start")
    r = api.post(org.staff_a, f"/bookings/{done['id']}/cancel", {"reason": "不去了"})
    assert r.status_code == 409 and r.json()["allowed"] == ["complete"]
    api.post(org.dispatcher, f"/bookings/{done['id']}/complete", {})
    r = api.post(org.dispatcher, f"/bookings/{done['id']}/start")
    assert r.status_code == 409 and r.json()["allowed"] == [] and "final" in r.json()["detail"]
    # optimistic version: a stale version is refused
    b = api.book(org.staff_a)
    r = api.post(org.staff_a, f"/bookings/{b['id']}/submit", {"version": b["version"] + 5})
    assert r.status_code == 409 and "changed by someone else" in r.json()["detail"]


def test_reject_cancel_unassign(api: Api, org: Org) -> None:
    b = api.book(org.staff_a, submit=True)
    r = api.post(org.approver_a, f"/bookings/{b['id']}/reject", {"reason": "非公务"})
    assert r.json()["status"] == "rejected"
    assert api.post(org.approver_a, f"/bookings/{b['id']}/reject",
                    {"reason": "x"}).status_code == 409
    assert api.post(org.approver_a, f"/bookings/{b['id']}/reject", {}).status_code == 422
    # dispatch can reject at its stage too
    b = api.book(org.staff_a, submit=True)
    api.post(org.approver_a, f"/bookings/{b['id']}/approve", {})
    r = api.post(org.dispatcher, f"/bookings/{b['id']}/reject", {"reason": "无车"})
    assert r.json()["status"] == "rejected"
    # cancel from draft, submitted, approved, assigned (the assignment is released)
    for make in (lambda: api.book(org.staff_a), lambda: api.book(org.staff_a, submit=True),
                 lambda: api.approved(org), lambda: api.assigned(org)):
        b = make()
        r = api.post(org.staff_a, f"/bookings/{b['id']}/cancel", {"reason": "会议取消"})
        assert r.json()["status"] == "cancelled" and r.json()["assignment"] is None
    # unassign returns to approved and frees the car for another booking
    b = api.assigned(org)
    r = api.post(org.dispatcher, f"/bookings/{b['id']}/unassign", {"reason": "换车"})
    assert r.json()["status"] == "approved" and r.json()["assignment"] is None
    api.assigned(org)  # same car, same window: free again


def test_extra_approval_for_out_of_scope(api: Api, org: Org) -> None:
    b = api.book(org.staff_a, submit=True, start_at=tomorrow(21).isoformat(),
                 end_at=tomorrow(23).isoformat())
    assert b["scope_outcome"] == "needs_approval"
    api.post(org.approver_a, f"/bookings/{b['id']}/approve", {"reason": "部门同意"})
    got = api.get(org.staff_a, f"/bookings/{b['id']}").json()
    assert got["stage"] == "extra" and got["status"] == "submitted"
    r = api.post(org.approver_a, f"/bookings/{b['id']}/approve", {})
    assert r.status_code == 403 and "夜间" in r.json()["detail"]  # the reason is shown
    assert api.post(org.dispatcher, f"/bookings/{b['id']}/approve", {}).status_code == 403
    r = api.post(org.approver_bureau, f"/bookings/{b['id']}/approve", {"reason": "局领导同意"})
    assert r.json()["stage"] == "dispatch"
    r = api.post(org.dispatcher, f"/bookings/{b['id']}/approve", {})
    assert r.json()["status"] == "approved"
    stages = [a["stage"] for a in api.get(org.staff_a, f"/bookings/{b['id']}/approvals").json()]
    assert stages == ["department", "extra", "dispatch"]


def test_emergency_skips_ahead_and_is_reviewed_afterwards(api: Api, org: Org) -> None:
    b = api.book(org.staff_a, submit=True, purpose="emergency", urgent_tag="防汛")
    assert b["status"] == "approved" and b["review_pending"] and "review" in b["allowed"]
    r = api.post(org.dispatcher, f"/bookings/{b['id']}/assign",
                 {"vehicle_id": org.car.id, "driver_id": org.driver.id})
    assert r.json()["status"] == "assigned"
    assert api.post(org.dispatcher, f"/bookings/{b['id']}/review",
                    {"decision": "approved", "reason": "x"}).status_code == 403
    r = api.post(org.approver_a, f"/bookings/{b['id']}/review",
                 {"decision": "approved", "reason": "防汛抢险属实"})
    assert r.status_code == 200 and not r.json()["review_pending"]
    assert api.post(org.approver_a, f"/bookings/{b['id']}/review",
                    {"decision": "approved", "reason": "again"}).status_code == 409
    # a rejected after-the-fact review withdraws a booking not yet under way
    b2 = api.book(org.staff_a, submit=True, urgent_tag="应急")
    r = api.post(org.approver_a, f"/bookings/{b2['id']}/review",
                 {"decision": "rejected", "reason": "不属于应急"})
    assert r.json()["status"] == "rejected"
    stages = api.get(org.staff_a, f"/bookings/{b2['id']}/approvals").json()
    assert [(a["stage"], a["decision"]) for a in stages] == [("post_review", "rejected")]


def test_assignment_checks_answer_409(api: Api, org: Org, db: Session) -> None:
    first = api.assigned(org)
    b = api.approved(org, start_at=tomorrow(11).isoformat(), end_at=tomorrow(13).isoformat())
    path = f"/bookings/{b['id']}/assign"

    def try_assign(vehicle_id: int, driver_id: int) -> dict[str, object]:
        r = api.post(org.dispatcher, path, {"vehicle_id": vehicle_id, "driver_id": driver_id})
        assert r.status_code == 409, r.text
        return r.json()  # type: ignore[no-any-return]

    clash = try_assign(org.car.id, org.driver2.id)
    assert clash["conflicting_booking"] == first["id"] and clash["field"] == "vehicle_id"
    assert f"booking {first['id']}" in clash["detail"]
    clash = try_assign(org.van.id, org.driver.id)
    assert clash["conflicting_booking"] == first["id"] and clash["field"] == "driver_id"
    big = api.approved(org, passengers=6, start_at=tomorrow(14).isoformat(),
                       end_at=tomorrow(15).isoformat())
    r = api.post(org.dispatcher, f"/bookings/{big['id']}/assign",
                 {"vehicle_id": org.car.id, "driver_id": org.driver2.id})
    assert r.status_code == 409 and "passenger seats" in r.json()["detail"]
    org.van.status = VehicleStatus.maintenance
    bus = f.vehicle(db, org.admin, org.bureau, seats=22)
    c2 = make_driver(db, org.bureau, LicenceClass.C2)
    leave = make_driver(db, org.bureau, status=DriverStatus.on_leave)
    db.commit()
    assert "maintenance" in try_assign(org.van.id, org.driver2.id)["detail"]
    d = try_assign(bus.id, c2.id)
    assert d["field"] == "driver_id" and "needs A1" in d["detail"]
    assert "on_leave" in try_assign(bus.id, leave.id)["problems"][0]  # type: ignore[index]
    # back-to-back windows do not overlap: 12:00-14:00 after 10:00-12:00
    ok = api.approved(org, start_at=tomorrow(12).isoformat(), end_at=tomorrow(14).isoformat())
    r = api.post(org.dispatcher, f"/bookings/{ok['id']}/assign",
                 {"vehicle_id": org.car.id, "driver_id": org.driver.id})
    assert r.status_code == 200, r.text


def test_category_mismatch_and_scheduler_source(api: Api, org: Org, db: Session) -> None:
    from dispatch import service
    from dispatch.models import AssignmentSource

    b = api.approved(org, vehicle_category="general", passengers=1)
    enforce_car = f.vehicle(db, org.admin, org.enforce, category="law_enforcement")
    db.commit()
    problems = service.check_assignment(db, b["id"], enforce_car.id, org.driver.id)
    assert [p.field for p in problems] == ["vehicle_id"] and "asks for general" in \
        problems[0].message
    a = service.assign(db, org.dispatcher, b["id"], org.car.id, org.driver.id,
                       source=AssignmentSource.scheduler, reason="调度优化")
    db.commit()
    assert a.source == AssignmentSource.scheduler
    got = api.get(org.dispatcher, f"/bookings/{b['id']}").json()
    assert got["status"] == "assigned" and got["assignment"]["source"] == "scheduler"


def test_audit_export_and_statistics(api: Api, org: Org) -> None:
    done = api.assigned(org)
    api.post(org.dispatcher, f"/bookings/{done['id']}/start")
    api.post(org.dispatcher, f"/bookings/{done['id']}/complete", {"distance_m": 25_000})
    api.book(org.staff_b, submit=True, purpose="reception")
    api.book(org.staff_a, submit=True, destinations=[
        {"address": "西安", "lat": 34.34, "lon": 108.94}])  # refused by scope
    api.book(org.staff_a)  # a draft is not a request yet
    # audit trail: JSON, CSV and Excel
    trail = api.get(org.supervisor, "/audit", params={"booking_id": done["id"]}).json()
    assert [e["action"] for e in trail][-2:] == ["start", "complete"]
    r = api.get(org.supervisor, "/audit", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:4] == ["id", "at", "actor_id", "action"] and len(rows) > 8
    r = api.get(org.supervisor, "/audit", params={"format": "xlsx"})
    ws = load_workbook(io.BytesIO(r.content)).active
    assert ws.title == "操作日志" and ws.max_row == len(rows)
    # statistics
    period = {"from": tomorrow(0).isoformat(), "to": tomorrow(0, days=2).isoformat()}
    s = api.get(org.supervisor, "/stats", params=period).json()
    t = s["total"]
    assert (t["received"], t["in_scope"], t["refused"], t["cars_sent"], t["completed"]) == \
        (3, 2, 1, 1, 1)
    assert t["km"] == 25.0
    by_purpose = {r["key"]: r for r in s["by_purpose"]}
    assert by_purpose["reception"]["label"] == "公务接待" and by_purpose["research"][
        "received"] == 2
    by_dep = {r["key"]: r["received"] for r in s["by_department"]}
    assert by_dep == {str(org.a.id): 2, str(org.b.id): 1}
    assert len(s["by_month"]) == 1 and s["by_month"][0]["cars_sent"] == 1
    # approvers see their own department's numbers only; staff none
    assert api.get(org.approver_b, "/stats", params=period).json()["total"]["received"] == 1
    assert api.get(org.staff_a, "/stats", params=period).status_code == 403
    r = api.get(org.supervisor, "/stats", params={**period, "format": "xlsx"})
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["汇总", "按事由", "按单位", "按月份"]
    summary = {row[0]: row[1] for row in wb["汇总"].iter_rows(values_only=True)}
    assert summary["符合保障范围"] == 2 and summary["派出车次"] == 1
