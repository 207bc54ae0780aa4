"""Running costs (运行维护费) per vehicle and roll-ups per department and month."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.errors import Conflict, Invalid
from fleet.models import User, VehicleStatus
from ledger import service
from ledger.models import RUNNING_CATEGORIES, CostCategory, EntryKind, LedgerEntry


def record_cost(db: Session, actor: User | None, vehicle_id: int, category: CostCategory,
                amount_fen: int, occurred_on: date, note: str = "", reference: str = ""
                ) -> LedgerEntry:
    """Book one running cost (fuel, charging, maintenance, insurance, toll, parking, other)."""
    service.require_writer(actor, "book costs")
    if category not in RUNNING_CATEGORIES:
        raise Invalid(f"'{category}' is not a running-cost category", field="category")
    if amount_fen <= 0:
        raise Invalid("amount must be positive (corrections reverse an entry)",
                      field="amount_fen")
    v = service.vehicle_for(db, actor, vehicle_id)
    if v.status == VehicleStatus.disposed and v.updated_at.date() < occurred_on:
        raise Conflict(f"vehicle {v.id} is disposed: no costs after its disposal")
    return service.book(db, actor, kind=EntryKind.cost, occurred_on=occurred_on,
                        vehicle_id=v.id, department_id=v.department_id, category=category,
                        amount_fen=amount_fen, reason=note,
                        payload={"reference": reference} if reference else {})


@dataclass(slots=True)
class RollupRow:
    department_id: int | None
    by_category: dict[str, int] = field(default_factory=dict)

    @property
    def running_fen(self) -> int:
        return sum(v for k, v in self.by_category.items() if k in RUNNING_CATEGORIES)

    @property
    def purchase_fen(self) -> int:
        return self.by_category.get(CostCategory.purchase, 0)


def ledger_sums(db: Session, actor: User | None, period: str,
                group_by_vehicle: bool = False) -> dict[tuple[int | None, str], int]:
    """Σ amount_fen per (department or vehicle, category) over a month, corrections included."""
    service.parse_period(period)
    key = LedgerEntry.vehicle_id if group_by_vehicle else LedgerEntry.department_id
    stmt = (select(key, LedgerEntry.category, func.sum(LedgerEntry.amount_fen))
            .where(LedgerEntry.period == period, LedgerEntry.category.is_not(None))
            .group_by(key, LedgerEntry.category))
    stmt = service.scoped(db, actor, stmt, LedgerEntry.department_id)
    return {(k, str(c)): int(s) for k, c, s in db.execute(stmt)}


def rollup(db: Session, actor: User | None, period: str) -> list[RollupRow]:
    """运行维护费 per department for a month (supervisors read, departments see their own)."""
    rows: dict[int | None, RollupRow] = {}
    for (dep, cat), amount in ledger_sums(db, actor, period).items():
        rows.setdefault(dep, RollupRow(dep)).by_category[cat] = amount
    return [rows[k] for k in sorted(rows, key=lambda d: (d is None, d or 0))]


def vehicle_costs(db: Session, actor: User | None, vehicle_id: int, period: str
                  ) -> dict[str, int]:
    service.vehicle_for(db, actor, vehicle_id)
    return {c: s for (v, c), s in ledger_sums(db, actor, period, True).items()
            if v == vehicle_id}
