"""Ledger core services: who may book, closed months, compensating corrections, listing.

Services take the session and the acting user and never commit (the caller owns the unit of
work). ``actor=None`` is the trusted operator at the command line (like the bootstrap admin).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from fleet import audit
from fleet.errors import Conflict, Forbidden, Invalid, NotFound
from fleet.models import Role, User, Vehicle
from fleet.scope import require_role, visible_departments
from ledger import chain
from ledger.models import EntryKind, LedgerEntry

LEDGER_WRITERS = (Role.admin,)
FINANCE_READERS = (Role.admin, Role.supervisor)


def actor_id(actor: User | None) -> int | None:
    return actor.id if actor is not None else None


def require_writer(actor: User | None, action: str) -> None:
    if actor is not None:
        require_role(actor, LEDGER_WRITERS, action)


def require_finance_reader(actor: User | None, action: str) -> None:
    if actor is not None:
        require_role(actor, FINANCE_READERS, action)


def scope_of(db: Session, actor: User | None) -> set[int] | None:
    return None if actor is None else visible_departments(db, actor)


def scoped(db: Session, actor: User | None, stmt: Select[Any], column: Any) -> Select[Any]:
    scope = scope_of(db, actor)
    return stmt if scope is None else stmt.where(column.in_(scope))


def vehicle_for(db: Session, actor: User | None, vehicle_id: int) -> Vehicle:
    v = db.get(Vehicle, vehicle_id)
    scope = scope_of(db, actor)
    if v is None or (scope is not None and v.department_id not in scope):
        raise NotFound(f"vehicle {vehicle_id} not found")
    return v


def parse_period(period: str) -> tuple[int, int]:
    try:
        year, month = (int(x) for x in period.split("-"))
        date(year, month, 1)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"month must be YYYY-MM, got {period!r}", field="month") from exc
    return year, month


def is_closed(db: Session, vehicle_id: int, period: str) -> bool:
    return bool(db.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.kind == EntryKind.closing, LedgerEntry.vehicle_id == vehicle_id,
        LedgerEntry.period == period)))


def ensure_open(db: Session, vehicle_id: int | None, occurred_on: date) -> None:
    """Refuse entries dated in a vehicle's closed month (月结后不得变更)."""
    if vehicle_id is None:
        return
    period = chain.period_of(occurred_on)
    if is_closed(db, vehicle_id, period):
        raise Conflict(f"month {period} of vehicle {vehicle_id} is closed: book the "
                       "correction in an open month", field="occurred_on")


def book(db: Session, actor: User | None, *, kind: EntryKind, occurred_on: date,
         vehicle_id: int | None = None, department_id: int | None = None,
         category: str | None = None, amount_fen: int = 0, distance_m: int = 0,
         reverses_id: int | None = None, reason: str = "",
         payload: dict[str, Any] | None = None) -> LedgerEntry:
    """Append one entry (closed-month check, audit trail) in the caller's transaction."""
    ensure_open(db, vehicle_id, occurred_on)
    if vehicle_id is not None and department_id is None:
        v = db.get(Vehicle, vehicle_id)
        department_id = v.department_id if v is not None else None
    entry = chain.append(db, kind=kind, occurred_on=occurred_on, actor_id=actor_id(actor),
                         vehicle_id=vehicle_id, department_id=department_id,
                         category=category, amount_fen=amount_fen, distance_m=distance_m,
                         reverses_id=reverses_id, reason=reason, payload=payload)
    audit.record(db, actor, "append", "ledger_entry", entry.id, reason=reason,
                 kind=kind, seq=entry.seq, amount_fen=amount_fen, category=category)
    return entry


def get_entry(db: Session, actor: User | None, entry_id: int) -> LedgerEntry:
    e = db.get(LedgerEntry, entry_id)
    scope = scope_of(db, actor)
    if e is None or (scope is not None and e.department_id not in scope):
        raise NotFound(f"ledger entry {entry_id} not found")
    return e


def correct_entry(db: Session, actor: User | None, entry_id: int, reason: str,
                  amount_fen: int | None = None, occurred_on: date | None = None
                  ) -> list[LedgerEntry]:
    """冲正: reverse an entry with a compensating one, optionally rebooking the right amount.

    The original stays untouched. The reversal is dated ``occurred_on`` (default: the
    original's date; when that month is closed, pass a date in an open month).
    """
    require_writer(actor, "correct ledger entries")
    if not reason.strip():
        raise Invalid("a correction needs a reason", field="reason")
    original = get_entry(db, actor, entry_id)
    if original.kind not in (EntryKind.cost, EntryKind.purchase, EntryKind.disposal):
        raise Invalid(f"{original.kind} entries cannot be corrected with amounts",
                      field="entry_id")
    already = db.scalar(select(func.count()).select_from(LedgerEntry).where(
        LedgerEntry.reverses_id == original.id))
    if already:
        raise Conflict(f"ledger entry {original.id} has already been reversed")
    day = occurred_on or original.occurred_on
    out = [book(db, actor, kind=EntryKind.correction, occurred_on=day,
                vehicle_id=original.vehicle_id, department_id=original.department_id,
                category=original.category, amount_fen=-original.amount_fen,
                reverses_id=original.id, reason=reason,
                payload={"reverses_seq": original.seq, "reverses_hash": original.hash})]
    if amount_fen is not None:
        out.append(book(db, actor, kind=original.kind, occurred_on=day,
                        vehicle_id=original.vehicle_id, department_id=original.department_id,
                        category=original.category, amount_fen=amount_fen, reason=reason,
                        payload={**original.payload, "replaces_id": original.id}))
    return out


def list_entries(db: Session, actor: User | None, *, period: str | None = None,
                 vehicle_id: int | None = None, department_id: int | None = None,
                 kind: EntryKind | None = None, offset: int = 0, limit: int = 100
                 ) -> tuple[list[LedgerEntry], int]:
    """Entries in the actor's scope (departments see their own; supervisors all)."""
    stmt = scoped(db, actor, select(LedgerEntry), LedgerEntry.department_id)
    if period:
        parse_period(period)
        stmt = stmt.where(LedgerEntry.period == period)
    if vehicle_id:
        stmt = stmt.where(LedgerEntry.vehicle_id == vehicle_id)
    if department_id:
        stmt = stmt.where(LedgerEntry.department_id == department_id)
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    total = db.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(db.scalars(stmt.order_by(LedgerEntry.chain, LedgerEntry.seq)
                           .offset(offset).limit(limit)))
    return rows, int(total)


def verify_chain(db: Session, actor: User | None) -> list[chain.VerifyResult]:
    if actor is not None and actor.role not in FINANCE_READERS:
        raise Forbidden("only supervisors and administrators verify the ledger")
    return chain.verify_all(db)
