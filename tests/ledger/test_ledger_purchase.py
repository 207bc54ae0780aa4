"""Quota (编制), purchase control (控购) rules accepted and refused, workflow, life cycle."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.orm import Session

from fleet.errors import Conflict, Forbidden
from fleet.models import EnergyType, VehicleCategory, VehicleStatus
from ledger import chain, lifecycle, purchase, quota
from ledger.models import EntryKind, RequestKind, RequestStatus
from tests import factories as f
from tests.ledger.conftest import Org

TODAY = date(2026, 6, 1)
G = VehicleCategory.general


def _req(org: Org, **over: object) -> purchase.RequestData:
    base: dict[str, object] = dict(department_id=org.a.id, kind=RequestKind.purchase,
                                   category=G, brand_model="比亚迪 秦PLUS",
                                   price_fen=15_000_000, displacement_l=0.0,
                                   energy_type=EnergyType.electric)
    base.update(over)
    return purchase.RequestData(**base)  # type: ignore[arg-type]


def _reasons(d: purchase.Decision) -> dict[str, bool]:
    return {r.rule: r.ok for r in d.reasons}


@pytest.fixture
def quota_a(db: Session, org: Org) -> None:
    quota.set_quota(db, org.admin, org.a.id, G, 2, date(2026, 1, 1), "编办〔2026〕1号")


def test_quota_history_and_over_quota(db: Session, org: Org) -> None:
    quota.set_quota(db, org.admin, org.a.id, G, 3, date(2025, 1, 1))
    quota.set_quota(db, org.admin, org.a.id, G, 1, date(2026, 3, 1), "机构改革")
    for _ in range(2):
        f.vehicle(db, org.admin, org.a, category="general")
    assert quota.quota_on(db, org.a.id, G, date(2026, 2, 28)) == 3
    assert quota.quota_on(db, org.a.id, G, date(2026, 3, 1)) == 1
    assert quota.quota_on(db, org.a.id, G, date(2024, 12, 31)) is None
    assert [s for s in quota.over_quota(db, org.admin, date(2026, 2, 1))
            if s.department_id == org.a.id] == []
    over = [s for s in quota.over_quota(db, org.supervisor, date(2026, 3, 2))
            if s.department_id == org.a.id]
    assert [(s.approved, s.count, s.over) for s in over] == [(1, 2, 1)]
    assert all(s.department_id in {org.b.id} or s.department_id not in {org.a.id}
               for s in quota.quota_status(db, org.staff_b, TODAY))
    with pytest.raises(Conflict):
        quota.set_quota(db, org.admin, org.a.id, G, 5, date(2026, 3, 1))


def test_price_cap(db: Session, org: Org, quota_a: None) -> None:
    assert purchase.evaluate(db, _req(org, price_fen=18_000_000), TODAY).ok
    d = purchase.evaluate(db, _req(org, price_fen=18_000_001), TODAY)
    assert not d.ok and _reasons(d)["price_cap"] is False
    assert "exceeds" in next(r.message for r in d.reasons if r.rule == "price_cap")


def test_displacement_cap(db: Session, org: Org, quota_a: None) -> None:
    ok = _req(org, energy_type=EnergyType.petrol, displacement_l=1.8, justification="山区")
    assert purchase.evaluate(db, ok, TODAY).ok
    bad = _req(org, energy_type=EnergyType.petrol, displacement_l=2.0, justification="山区")
    assert _reasons(purchase.evaluate(db, bad, TODAY)) == {
        "price_cap": True, "displacement_cap": False, "new_energy": True, "quota": True}


def test_caps_are_configuration(db: Session, org: Org, quota_a: None) -> None:
    purchase.upsert_rule(db, org.admin, G, price_cap_fen=20_000_000)
    assert purchase.evaluate(db, _req(org, price_fen=19_000_000), TODAY).ok
    with pytest.raises(Forbidden):
        purchase.upsert_rule(db, org.supervisor, G, price_cap_fen=1)
    purchase.delete_rule(db, org.admin, G)
    d = purchase.evaluate(db, _req(org), TODAY)
    assert not d.ok and _reasons(d) == {"rule": False}


def test_new_energy_preference(db: Session, org: Org, quota_a: None) -> None:
    petrol = _req(org, energy_type=EnergyType.petrol, displacement_l=1.5)
    assert _reasons(purchase.evaluate(db, petrol, TODAY))["new_energy"] is False
    petrol.justification = "高寒地区续航不足"
    assert purchase.evaluate(db, petrol, TODAY).ok
    assert purchase.evaluate(db, _req(org, energy_type=EnergyType.plug_in_hybrid,
                                      displacement_l=1.5), TODAY).ok


def test_quota_room(db: Session, org: Org, quota_a: None) -> None:
    f.vehicle(db, org.admin, org.a, category="general")
    assert purchase.evaluate(db, _req(org), TODAY).ok  # 1 held, quota 2
    f.vehicle(db, org.admin, org.a, category="general")
    d = purchase.evaluate(db, _req(org), TODAY)
    assert _reasons(d)["quota"] is False  # 2 held, quota 2
    d = purchase.evaluate(db, _req(org, department_id=org.b.id), TODAY)
    assert _reasons(d)["quota"] is False and "no approved quota" in d.reasons[-1].message


def test_renewal_by_age_or_mileage(db: Session, org: Org, quota_a: None) -> None:
    old = f.vehicle(db, org.admin, org.a, category="general", purchase_date="2017-05-01")
    young = f.vehicle(db, org.admin, org.a, category="general", purchase_date="2022-01-01")
    worn = f.vehicle(db, org.admin, org.b, category="general", purchase_date="2022-01-01",
                     odometer_km=260_000)
    by_age = _req(org, kind=RequestKind.renewal, replaces_vehicle_id=old.id)
    assert purchase.evaluate(db, by_age, TODAY).ok  # full quota, but one is replaced
    d = purchase.evaluate(db, _req(org, kind=RequestKind.renewal,
                                   replaces_vehicle_id=young.id), TODAY)
    assert _reasons(d)["renewal"] is False
    quota.set_quota(db, org.admin, org.b.id, G, 1, date(2026, 1, 1))
    d = purchase.evaluate(db, _req(org, department_id=org.b.id, kind=RequestKind.renewal,
                                   replaces_vehicle_id=worn.id), TODAY)
    assert d.ok, d.reasons
    d = purchase.evaluate(db, _req(org, kind=RequestKind.renewal,
                                   replaces_vehicle_id=worn.id), TODAY)
    assert _reasons(d)["renewal"] is False  # not a car of the requesting department


def test_workflow_registers_vehicle_and_retires_replaced(db: Session, org: Org,
                                                         quota_a: None) -> None:
    old = f.vehicle(db, org.admin, org.a, category="general", purchase_date="2017-05-01")
    req = purchase.submit(db, org.staff_a, _req(org, kind=RequestKind.renewal,
                                                 replaces_vehicle_id=old.id), TODAY)
    assert req.status == RequestStatus.submitted and req.decision_ok
    with pytest.raises(Forbidden):
        purchase.submit(db, org.staff_b, _req(org), TODAY)  # not their department
    with pytest.raises(Forbidden):
        purchase.approve(db, org.staff_a, req.id, today=TODAY)
    assert purchase.list_requests(db, org.staff_b) == []
    purchase.approve(db, org.admin, req.id, "同意", today=TODAY)
    v = purchase.deliver(db, org.admin, req.id, plate="川A D12345", vin="LFV00000000000099",
                         delivered_on=date(2026, 6, 20))
    assert v.department_id == org.a.id and v.purchase_price_fen == 15_000_000
    assert req.status == RequestStatus.delivered and req.vehicle_id == v.id
    assert old.status == VehicleStatus.disposed
    actions = [s.action for s in purchase.steps(db, org.supervisor, req.id)]
    assert actions == ["submit", "approve", "deliver"]
    kinds = [e.kind for e in lifecycle.history(db, None, v.id)]
    assert kinds == [EntryKind.purchase]
    assert chain.verify(db).ok


def test_refused_request_cannot_be_approved(db: Session, org: Org, quota_a: None) -> None:
    req = purchase.submit(db, org.staff_a, _req(org, price_fen=30_000_000), TODAY)
    assert not req.decision_ok
    with pytest.raises(Conflict, match="breaks the rules"):
        purchase.approve(db, org.admin, req.id, today=TODAY)
    purchase.refuse(db, org.admin, req.id, "超标准")
    assert req.status == RequestStatus.refused
    assert [s.action for s in purchase.steps(db, org.admin, req.id)] == [
        "submit", "approve_refused", "refuse"]


def test_transfer_marking_and_disposal(db: Session, org: Org) -> None:
    v = f.vehicle(db, org.admin, org.a, category="general")
    lifecycle.transfer(db, org.admin, v.id, org.b.id, "机构改革", document="编办〔2026〕2号")
    assert v.department_id == org.b.id
    lifecycle.set_marking(db, org.admin, v.id, False, "标识脱落")
    assert v.marked is False
    with pytest.raises(Forbidden):
        lifecycle.retire(db, org.supervisor, v.id, "x")
    e = lifecycle.dispose_by_auction(db, org.admin, v.id, 3_250_000, date(2026, 7, 1),
                                     auction_ref="拍卖〔2026〕8号")
    assert e.amount_fen == 3_250_000 and e.category == "disposal_proceeds"
    assert v.status == VehicleStatus.disposed
    kinds = [x.kind for x in lifecycle.history(db, org.supervisor, v.id)]
    assert kinds == [EntryKind.transfer, EntryKind.marking, EntryKind.retirement,
                     EntryKind.disposal]
    for act in (lambda: lifecycle.transfer(db, org.admin, v.id, org.a.id, "back"),
                lambda: lifecycle.set_marking(db, org.admin, v.id, True),
                lambda: lifecycle.dispose_by_auction(db, org.admin, v.id, 1, date(2026, 7, 2))):
        with pytest.raises(Conflict):
            act()
    # a disposed vehicle counts against no quota
    assert quota.vehicle_count(db, org.b.id, G) == 0
