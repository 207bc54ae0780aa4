"""Vehicle life cycle: transfer (移交), marking (标识化), retirement (报废) and disposal by
auction (拍卖处置) — each a ledger entry.

Retirement takes the car out of service for good through ``fleet.service.retire_vehicle``
(Vehicle.status = disposed, terminal unbound): from then on it can no longer be booked,
assigned, transferred or re-marked. Disposal then books the auction proceeds.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet import schemas as fleet_schemas
from fleet import service as fleet_service
from fleet.errors import Conflict, Invalid
from fleet.models import Department, Role, User, Vehicle, VehicleStatus
from fleet.scope import require_role
from ledger import service
from ledger.models import CostCategory, EntryKind, LedgerEntry


def _admin(actor: User, action: str) -> None:
    require_role(actor, [Role.admin], action)


def _live(db: Session, actor: User, vehicle_id: int) -> Vehicle:
    v = service.vehicle_for(db, actor, vehicle_id)
    if v.status == VehicleStatus.disposed:
        raise Conflict(f"vehicle {v.plate} is disposed (已处置): no further changes")
    return v


def transfer(db: Session, actor: User, vehicle_id: int, to_department_id: int, reason: str,
             on: date | None = None, document: str = "") -> LedgerEntry:
    """移交: move a car to another department (e.g. after 机构改革)."""
    _admin(actor, "transfer vehicles")
    v = _live(db, actor, vehicle_id)
    target = db.get(Department, to_department_id)
    if target is None or not target.active:
        raise Invalid(f"unknown department {to_department_id}", field="to_department_id")
    if target.id == v.department_id:
        raise Conflict(f"vehicle {v.plate} already belongs to department {target.id}")
    from_dep = v.department_id
    fleet_service.update_vehicle(db, actor, v.id,
                                 fleet_schemas.VehicleUpdate(department_id=target.id))
    return service.book(db, actor, kind=EntryKind.transfer, occurred_on=on or date.today(),
                        vehicle_id=v.id, department_id=target.id, reason=reason,
                        payload={"from_department_id": from_dep,
                                 "to_department_id": target.id, "document": document,
                                 "plate": v.plate})


def set_marking(db: Session, actor: User, vehicle_id: int, marked: bool, reason: str = "",
                on: date | None = None) -> LedgerEntry:
    """标识化: record that a car now carries (or no longer carries) the official marks."""
    _admin(actor, "change vehicle marking")
    v = _live(db, actor, vehicle_id)
    if v.marked == marked:
        raise Conflict(f"vehicle {v.plate} is already {'marked' if marked else 'unmarked'}")
    fleet_service.update_vehicle(db, actor, v.id, fleet_schemas.VehicleUpdate(marked=marked))
    return service.book(db, actor, kind=EntryKind.marking, occurred_on=on or date.today(),
                        vehicle_id=v.id, reason=reason,
                        payload={"marked": marked, "plate": v.plate})


def retire(db: Session, actor: User, vehicle_id: int, reason: str, on: date | None = None
           ) -> LedgerEntry:
    """报废/退出: take the car out of service for good (status disposed, terminal unbound)."""
    _admin(actor, "retire vehicles")
    if not reason.strip():
        raise Invalid("retirement needs a reason", field="reason")
    v = _live(db, actor, vehicle_id)
    entry = service.book(db, actor, kind=EntryKind.retirement, occurred_on=on or date.today(),
                         vehicle_id=v.id, reason=reason,
                         payload={"plate": v.plate, "odometer_km": v.odometer_km})
    fleet_service.retire_vehicle(db, actor, v.id, reason)
    return entry


def dispose_by_auction(db: Session, actor: User, vehicle_id: int, proceeds_fen: int,
                       sold_on: date, auction_ref: str = "", buyer: str = "",
                       reason: str = "集中拍卖") -> LedgerEntry:
    """拍卖处置: book the proceeds of a retired car's auction (retiring it first if needed)."""
    _admin(actor, "dispose of vehicles")
    if proceeds_fen < 0:
        raise Invalid("proceeds must be >= 0", field="proceeds_fen")
    v = service.vehicle_for(db, actor, vehicle_id)
    done = db.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.vehicle_id == v.id, LedgerEntry.kind == EntryKind.disposal))
    if done:
        raise Conflict(f"vehicle {v.plate} has already been disposed of")
    if v.status != VehicleStatus.disposed:
        retire(db, actor, v.id, f"{reason}: retired for disposal", on=sold_on)
    return service.book(db, actor, kind=EntryKind.disposal, occurred_on=sold_on,
                        vehicle_id=v.id, category=CostCategory.disposal_proceeds,
                        amount_fen=proceeds_fen, reason=reason,
                        payload={"plate": v.plate, "auction_ref": auction_ref,
                                 "buyer": buyer})


def history(db: Session, actor: User | None, vehicle_id: int) -> list[LedgerEntry]:
    service.vehicle_for(db, actor, vehicle_id)
    kinds = (EntryKind.transfer, EntryKind.marking, EntryKind.retirement, EntryKind.disposal,
             EntryKind.purchase)
    return list(db.scalars(select(LedgerEntry).where(
        LedgerEntry.vehicle_id == vehicle_id, LedgerEntry.kind.in_(kinds))
        .order_by(LedgerEntry.seq)))
