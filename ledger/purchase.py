"""Purchase control (控购): rules as data, decisions with reasons, approval workflow.

Rules (``ledger_purchase_rules``) are configuration: seeded defaults, changed by admins
through the API. A request is evaluated against price cap (excl. tax), displacement cap,
new-energy preference, renewal eligibility (age or mileage) and quota room; every reason is
kept with the request, and every workflow step is recorded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet import audit
from fleet import schemas as fleet_schemas
from fleet import service as fleet_service
from fleet.errors import Conflict, Forbidden, Invalid, NotFound
from fleet.models import EnergyType, Role, User, Vehicle, VehicleCategory, VehicleStatus
from fleet.scope import require_role
from ledger import lifecycle, quota, service
from ledger.models import (
    CostCategory,
    EntryKind,
    OdometerReading,
    PurchaseRequest,
    PurchaseRule,
    PurchaseStep,
    RequestKind,
    RequestStatus,
)

NEW_ENERGY = (EnergyType.electric, EnergyType.plug_in_hybrid, EnergyType.fuel_cell)
FILERS = (Role.staff, Role.approver, Role.admin)


@dataclass(frozen=True, slots=True)
class Reason:
    rule: str
    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class Decision:
    ok: bool
    reasons: list[Reason]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.reasons]


@dataclass(slots=True)
class RequestData:
    department_id: int
    kind: RequestKind
    category: VehicleCategory
    brand_model: str
    price_fen: int
    displacement_l: float
    energy_type: EnergyType
    seats: int = 5
    replaces_vehicle_id: int | None = None
    justification: str = ""


# --------------------------------------------------------------------------- rules CRUD


def list_rules(db: Session) -> list[PurchaseRule]:
    return list(db.scalars(select(PurchaseRule).order_by(PurchaseRule.id)))


def rule_for(db: Session, category: VehicleCategory) -> PurchaseRule | None:
    return db.scalar(select(PurchaseRule).where(PurchaseRule.category == category,
                                                PurchaseRule.active.is_(True)))


def upsert_rule(db: Session, actor: User | None, category: VehicleCategory,
                **fields: Any) -> PurchaseRule:
    """Create or change the rule of a category (admins only)."""
    if actor is not None:
        require_role(actor, [Role.admin], "change purchase rules")
    allowed = {"price_cap_fen", "displacement_cap_l", "prefer_new_energy",
               "renewal_min_age_years", "renewal_min_km", "active"}
    unknown = set(fields) - allowed
    if unknown:
        raise Invalid(f"unknown rule fields: {sorted(unknown)}", field=sorted(unknown)[0])
    rule = db.scalar(select(PurchaseRule).where(PurchaseRule.category == category))
    if rule is None:
        rule = PurchaseRule(category=category, prefer_new_energy=True, active=True)
        db.add(rule)
    for k, v in fields.items():
        setattr(rule, k, v)
    db.flush()
    audit.record(db, actor, "upsert", "purchase_rule", rule.id, category=category, **fields)
    return rule


def delete_rule(db: Session, actor: User | None, category: VehicleCategory) -> None:
    if actor is not None:
        require_role(actor, [Role.admin], "delete purchase rules")
    rule = db.scalar(select(PurchaseRule).where(PurchaseRule.category == category))
    if rule is None:
        raise NotFound(f"no purchase rule for {category}")
    db.delete(rule)
    db.flush()
    audit.record(db, actor, "delete", "purchase_rule", rule.id, category=category)


# --------------------------------------------------------------------------- decision


def _vehicle_km(db: Session, v: Vehicle) -> float:
    manual = db.scalar(select(func.max(OdometerReading.odometer_m)).where(
        OdometerReading.vehicle_id == v.id))
    return max(v.odometer_km, (manual or 0) / 1000.0)


def _age_years(purchased: date | None, today: date) -> float | None:
    if purchased is None:
        return None
    return (today - purchased).days / 365.2425


def evaluate(db: Session, data: RequestData, today: date | None = None,
             exclude_request: int | None = None) -> Decision:
    """Check a request against the rules; every rule gives a reason, refused or passed."""
    today = today or date.today()
    reasons: list[Reason] = []
    rule = rule_for(db, data.category)
    if rule is None:
        return Decision(False, [Reason("rule", False,
                                       f"no purchase rule configured for {data.category}")])
    if rule.price_cap_fen is not None:
        ok = data.price_fen <= rule.price_cap_fen
        reasons.append(Reason("price_cap", ok,
                              f"price excl. tax {data.price_fen / 1_000_000:.2f} 万元 "
                              f"{'within' if ok else 'exceeds'} the cap "
                              f"{rule.price_cap_fen / 1_000_000:.2f} 万元"))
    if rule.displacement_cap_l is not None and data.energy_type not in (
            EnergyType.electric, EnergyType.fuel_cell):
        ok = data.displacement_l <= rule.displacement_cap_l + 1e-9
        reasons.append(Reason("displacement_cap", ok,
                              f"displacement {data.displacement_l:.1f} L "
                              f"{'within' if ok else 'exceeds'} the cap "
                              f"{rule.displacement_cap_l:.1f} L"))
    if rule.prefer_new_energy:
        if data.energy_type in NEW_ENERGY:
            reasons.append(Reason("new_energy", True, "new-energy vehicle (preferred)"))
        elif data.justification.strip():
            reasons.append(Reason("new_energy", True,
                                  "not new-energy; justification given: "
                                  f"{data.justification.strip()[:200]}"))
        else:
            reasons.append(Reason("new_energy", False, "new-energy vehicles are preferred: "
                                  "a conventional car needs a justification"))
    replaced: Vehicle | None = None
    if data.kind == RequestKind.renewal:
        replaced = db.get(Vehicle, data.replaces_vehicle_id) if data.replaces_vehicle_id \
            else None
        if replaced is None or replaced.department_id != data.department_id:
            reasons.append(Reason("renewal", False,
                                  "a renewal must name a vehicle of the department to replace"))
        elif replaced.status == VehicleStatus.disposed:
            reasons.append(Reason("renewal", False, f"vehicle {replaced.plate} is disposed"))
        else:
            age = _age_years(replaced.purchase_date, today)
            km = _vehicle_km(db, replaced)
            age_ok = (rule.renewal_min_age_years is not None and age is not None
                      and age >= rule.renewal_min_age_years)
            km_ok = rule.renewal_min_km is not None and km >= rule.renewal_min_km
            age_txt = "unknown age" if age is None else f"{age:.1f} years"
            need = (f"≥ {rule.renewal_min_age_years} years or ≥ {rule.renewal_min_km:,} km"
                    if rule.renewal_min_km is not None else
                    f"≥ {rule.renewal_min_age_years} years")
            reasons.append(Reason("renewal", age_ok or km_ok,
                                  f"{replaced.plate}: {age_txt}, {km:,.0f} km — "
                                  f"{'eligible' if age_ok or km_ok else 'not eligible'} "
                                  f"({need})"))
    approved = quota.quota_on(db, data.department_id, data.category, today)
    if approved is None:
        reasons.append(Reason("quota", False,
                              f"no approved quota for {data.category} in this department"))
    else:
        count = quota.vehicle_count(db, data.department_id, data.category)
        pending_stmt = select(func.count()).select_from(PurchaseRequest).where(
            PurchaseRequest.department_id == data.department_id,
            PurchaseRequest.category == data.category,
            PurchaseRequest.kind == RequestKind.purchase,
            PurchaseRequest.status == RequestStatus.approved)
        if exclude_request is not None:
            pending_stmt = pending_stmt.where(PurchaseRequest.id != exclude_request)
        pending = int(db.scalar(pending_stmt) or 0)
        freed = 1 if (replaced is not None and replaced.category == data.category
                      and replaced.status in quota.COUNTED) else 0
        after = count + pending - freed + 1
        ok = after <= approved
        reasons.append(Reason("quota", ok,
                              f"quota {approved}, held {count}, approved pending {pending}"
                              f"{', replacing one' if freed else ''}: "
                              f"{'room left' if ok else 'no room (超编)'}"))
    return Decision(all(r.ok for r in reasons), reasons)


# --------------------------------------------------------------------------- workflow


def _step(db: Session, actor: User | None, req: PurchaseRequest, action: str,
          from_status: str | None, note: str = "", **detail: Any) -> None:
    db.add(PurchaseStep(request_id=req.id, actor_id=service.actor_id(actor), action=action,
                        from_status=from_status, to_status=str(req.status), note=note,
                        detail=detail))
    audit.record(db, actor, action, "purchase_request", req.id, reason=note,
                 status=str(req.status), **detail)


def submit(db: Session, actor: User, data: RequestData, today: date | None = None
           ) -> PurchaseRequest:
    """A department files a purchase or renewal request; it is evaluated at once."""
    require_role(actor, FILERS, "file purchase requests")
    scope = service.scope_of(db, actor)
    if scope is not None and data.department_id not in scope:
        raise Forbidden("you can file requests only for your own department")
    if data.kind == RequestKind.renewal and data.replaces_vehicle_id is None:
        raise Invalid("a renewal names the vehicle it replaces", field="replaces_vehicle_id")
    if data.price_fen <= 0:
        raise Invalid("price must be positive", field="price_fen")
    decision = evaluate(db, data, today)
    req = PurchaseRequest(
        department_id=data.department_id, kind=data.kind, category=data.category,
        brand_model=data.brand_model, price_fen=data.price_fen,
        displacement_l=data.displacement_l, energy_type=data.energy_type, seats=data.seats,
        replaces_vehicle_id=data.replaces_vehicle_id, justification=data.justification,
        status=RequestStatus.submitted, decision_ok=decision.ok, reasons=decision.as_json(),
        requested_by=actor.id)
    db.add(req)
    db.flush()
    _step(db, actor, req, "submit", None, decision_ok=decision.ok)
    return req


def get_request(db: Session, actor: User | None, request_id: int) -> PurchaseRequest:
    req = db.get(PurchaseRequest, request_id)
    scope = service.scope_of(db, actor)
    if req is None or (scope is not None and req.department_id not in scope):
        raise NotFound(f"purchase request {request_id} not found")
    return req


def list_requests(db: Session, actor: User | None, status: RequestStatus | None = None
                  ) -> list[PurchaseRequest]:
    stmt = service.scoped(db, actor, select(PurchaseRequest), PurchaseRequest.department_id)
    if status:
        stmt = stmt.where(PurchaseRequest.status == status)
    return list(db.scalars(stmt.order_by(PurchaseRequest.id)))


def steps(db: Session, actor: User | None, request_id: int) -> list[PurchaseStep]:
    get_request(db, actor, request_id)
    return list(db.scalars(select(PurchaseStep).where(PurchaseStep.request_id == request_id)
                           .order_by(PurchaseStep.id)))


def _data(req: PurchaseRequest) -> RequestData:
    return RequestData(req.department_id, req.kind, req.category, req.brand_model,
                       req.price_fen, req.displacement_l, req.energy_type, req.seats,
                       req.replaces_vehicle_id, req.justification)


def _expect(req: PurchaseRequest, *states: RequestStatus) -> None:
    if req.status not in states:
        raise Conflict(f"purchase request {req.id} is {req.status}: expected "
                       f"{' or '.join(str(s) for s in states)}")


def approve(db: Session, actor: User, request_id: int, note: str = "",
            today: date | None = None) -> PurchaseRequest:
    """Approve (admins): the rules are checked again now; a refused decision cannot pass."""
    require_role(actor, [Role.admin], "approve purchase requests")
    req = get_request(db, actor, request_id)
    _expect(req, RequestStatus.submitted)
    decision = evaluate(db, _data(req), today, exclude_request=req.id)
    req.decision_ok, req.reasons = decision.ok, decision.as_json()
    if not decision.ok:
        failed = "; ".join(r.message for r in decision.reasons if not r.ok)
        _step(db, actor, req, "approve_refused", str(req.status), failed)
        db.flush()
        raise Conflict(f"purchase request {req.id} breaks the rules: {failed}",
                       reasons=decision.as_json())
    req.status = RequestStatus.approved
    _step(db, actor, req, "approve", RequestStatus.submitted, note)
    db.flush()
    return req


def refuse(db: Session, actor: User, request_id: int, note: str) -> PurchaseRequest:
    require_role(actor, [Role.admin], "refuse purchase requests")
    if not note.strip():
        raise Invalid("a refusal needs a reason", field="note")
    req = get_request(db, actor, request_id)
    _expect(req, RequestStatus.submitted, RequestStatus.approved)
    before = str(req.status)
    req.status = RequestStatus.refused
    _step(db, actor, req, "refuse", before, note)
    db.flush()
    return req


def withdraw(db: Session, actor: User, request_id: int, note: str = "") -> PurchaseRequest:
    require_role(actor, FILERS, "withdraw purchase requests")
    req = get_request(db, actor, request_id)
    _expect(req, RequestStatus.submitted)
    req.status = RequestStatus.withdrawn
    _step(db, actor, req, "withdraw", RequestStatus.submitted, note)
    db.flush()
    return req


def deliver(db: Session, actor: User, request_id: int, *, plate: str, vin: str,
            delivered_on: date, price_fen: int | None = None,
            home_garage: fleet_schemas.Point | None = None) -> Vehicle:
    """The approved car arrived: register it (fleet.service.create_vehicle), book the
    purchase, and retire the replaced car of a renewal."""
    require_role(actor, [Role.admin], "register delivered purchases")
    req = get_request(db, actor, request_id)
    _expect(req, RequestStatus.approved)
    price = req.price_fen if price_fen is None else price_fen
    if price > req.price_fen:
        raise Invalid("the delivered price exceeds the approved price", field="price_fen")
    v = fleet_service.create_vehicle(db, actor, fleet_schemas.VehicleCreate(
        plate=plate, vin=vin, category=req.category, brand_model=req.brand_model,
        seats=req.seats, energy_type=req.energy_type, displacement_l=req.displacement_l,
        purchase_price_fen=price, purchase_date=delivered_on, department_id=req.department_id,
        home_garage=home_garage))
    service.book(db, actor, kind=EntryKind.purchase, occurred_on=delivered_on,
                 vehicle_id=v.id, department_id=req.department_id,
                 category=CostCategory.purchase, amount_fen=price,
                 reason=f"购置 {req.brand_model}",
                 payload={"request_id": req.id, "plate": v.plate, "kind": str(req.kind)})
    req.vehicle_id = v.id
    req.status = RequestStatus.delivered
    _step(db, actor, req, "deliver", RequestStatus.approved, vehicle_id=v.id, plate=v.plate)
    if req.kind == RequestKind.renewal and req.replaces_vehicle_id is not None:
        old = db.get(Vehicle, req.replaces_vehicle_id)
        if old is not None and old.status != VehicleStatus.disposed:
            lifecycle.retire(db, actor, old.id, f"更新: replaced by {v.plate}",
                             on=delivered_on)
    db.flush()
    return v
