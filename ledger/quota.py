"""Quota (编制核定): approved vehicles per department and category, with history.

A re-approval (e.g. after 机构改革) is a new row with its ``effective_from``; rows are never
edited, so the quota on any past date can be answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.errors import Conflict, Invalid
from fleet.models import Department, User, Vehicle, VehicleCategory, VehicleStatus
from ledger import service
from ledger.models import EntryKind, Quota

COUNTED = (VehicleStatus.in_service, VehicleStatus.maintenance)


def set_quota(db: Session, actor: User | None, department_id: int, category: VehicleCategory,
              approved: int, effective_from: date, document: str = "") -> Quota:
    """Approve a quota from a date on (编制核定); books a ledger entry too."""
    service.require_writer(actor, "approve quotas")
    if approved < 0:
        raise Invalid("approved count must be >= 0", field="approved")
    if db.get(Department, department_id) is None:
        raise Invalid(f"unknown department {department_id}", field="department_id")
    if db.scalar(select(Quota.id).where(Quota.department_id == department_id,
                                        Quota.category == category,
                                        Quota.effective_from == effective_from)):
        raise Conflict(f"a quota for department {department_id} / {category} already takes "
                       f"effect on {effective_from}")
    q = Quota(department_id=department_id, category=category, approved=approved,
              effective_from=effective_from, document=document,
              actor_id=service.actor_id(actor))
    db.add(q)
    db.flush()
    service.book(db, actor, kind=EntryKind.quota, occurred_on=effective_from,
                 department_id=department_id, reason=document or "编制核定",
                 payload={"category": str(category), "approved": approved})
    return q


def quota_on(db: Session, department_id: int, category: VehicleCategory, on: date
             ) -> int | None:
    """The approved number in force on ``on`` (None: no quota ever approved)."""
    return db.scalar(select(Quota.approved).where(
        Quota.department_id == department_id, Quota.category == category,
        Quota.effective_from <= on).order_by(Quota.effective_from.desc()).limit(1))


def vehicle_count(db: Session, department_id: int, category: VehicleCategory) -> int:
    return int(db.scalar(select(func.count()).select_from(Vehicle).where(
        Vehicle.department_id == department_id, Vehicle.category == category,
        Vehicle.status.in_(COUNTED))) or 0)


def quota_history(db: Session, actor: User | None, department_id: int) -> list[Quota]:
    scope = service.scope_of(db, actor)
    if scope is not None and department_id not in scope:
        return []
    return list(db.scalars(select(Quota).where(Quota.department_id == department_id)
                           .order_by(Quota.category, Quota.effective_from)))


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    department_id: int
    category: VehicleCategory
    approved: int | None
    count: int

    @property
    def over(self) -> int:
        return max(0, self.count - (self.approved or 0))

    @property
    def room(self) -> int:
        return max(0, (self.approved or 0) - self.count)


def quota_status(db: Session, actor: User | None, on: date) -> list[QuotaStatus]:
    """Current count vs quota for every (department, category) with either (scoped)."""
    pairs: set[tuple[int, VehicleCategory]] = set()
    pairs.update(db.execute(select(Quota.department_id, Quota.category)
                            .where(Quota.effective_from <= on).distinct()).tuples())
    pairs.update(db.execute(select(Vehicle.department_id, Vehicle.category)
                            .where(Vehicle.status.in_(COUNTED)).distinct()).tuples())
    scope = service.scope_of(db, actor)
    out = []
    for dep, cat in sorted(pairs, key=lambda p: (p[0], str(p[1]))):
        if scope is not None and dep not in scope:
            continue
        out.append(QuotaStatus(dep, VehicleCategory(cat), quota_on(db, dep, cat, on),
                               vehicle_count(db, dep, cat)))
    return out


def over_quota(db: Session, actor: User | None, on: date) -> list[QuotaStatus]:
    """超编: departments holding more cars than approved (no quota counts as zero)."""
    return [s for s in quota_status(db, actor, on) if s.over > 0]
