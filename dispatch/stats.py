"""Statistics as bureaus report them (统计), the audit trail export and suspicions.

* received (收到用车申请), in scope (符合保障范围申请用车 N 次), cars sent (派出车次),
  completed, kilometres driven for bookings (行驶里程) — by purpose, department and month
  (months in Asia/Shanghai), exported to Excel.
* the dispatch audit trail (booking, approval, assignment, rule and suspicion changes) as
  JSON, CSV or Excel for supervisors.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import (
    PURPOSE_ZH,
    Assignment,
    Booking,
    BookingStatus,
    ScopeOutcome,
    Suspicion,
    SuspicionStatus,
)
from fleet import audit
from fleet.errors import Invalid, NotFound
from fleet.models import AuditEntry, Department, Role, User
from fleet.scope import check_visible, require_role, visible_departments

READERS = (Role.supervisor, Role.admin, Role.dispatcher, Role.approver)
AUDIT_READERS = (Role.supervisor, Role.admin, Role.dispatcher)
DISPATCH_ENTITIES = ("booking", "scope_rule", "suspicion")
SENT = (BookingStatus.assigned, BookingStatus.in_progress, BookingStatus.completed)
COUNTERS = ("received", "in_scope", "refused", "rejected", "cancelled", "cars_sent",
            "completed")
HEADERS_ZH = {"key": "项目", "label": "名称", "received": "收到申请", "in_scope": "符合保障范围",
              "refused": "不予保障", "rejected": "驳回", "cancelled": "取消",
              "cars_sent": "派出车次", "completed": "完成", "km": "行驶里程(公里)"}


def _row(key: str, label: str) -> dict[str, Any]:
    return {"key": key, "label": label, **dict.fromkeys(COUNTERS, 0), "km": 0.0}


def booking_stats(db: Session, actor: User, start: datetime, end: datetime,
                  tz: str = "Asia/Shanghai") -> dict[str, Any]:
    """Counts of submitted bookings whose window starts in [start, end), in the actor's scope."""
    require_role(actor, READERS, "read booking statistics")
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    zone = ZoneInfo(tz)
    stmt = select(Booking).where(Booking.submitted_at.is_not(None), Booking.start_at >= start,
                                 Booking.start_at < end)
    scope = visible_departments(db, actor)
    if scope is not None:
        stmt = stmt.where(Booking.department_id.in_(scope))
    bookings = list(db.scalars(stmt))
    assigned = set(db.scalars(select(Assignment.booking_id).where(
        Assignment.active.is_(True), Assignment.booking_id.in_([b.id for b in bookings]))))
    names = {i: n for i, n in db.execute(select(Department.id, Department.name))}
    total = _row("total", "合计")
    groups: dict[str, dict[str, dict[str, Any]]] = {"by_purpose": {}, "by_department": {},
                                                    "by_month": {}}
    for b in bookings:
        month = b.start_at.astimezone(zone).strftime("%Y-%m")
        keys = {"by_purpose": (str(b.purpose), PURPOSE_ZH[b.purpose]),
                "by_department": (str(b.department_id), names.get(b.department_id, "")),
                "by_month": (month, month)}
        rows = [total] + [groups[g].setdefault(k, _row(k, label)) for g, (k, label)
                          in keys.items()]
        for r in rows:
            r["received"] += 1
            if b.scope_outcome == ScopeOutcome.refused:
                r["refused"] += 1
            else:
                r["in_scope"] += 1
            if b.status == BookingStatus.rejected:
                r["rejected"] += 1
            if b.status == BookingStatus.cancelled:
                r["cancelled"] += 1
            if b.status in SENT and b.id in assigned:
                r["cars_sent"] += 1
            if b.status == BookingStatus.completed:
                r["completed"] += 1
            if b.status in (BookingStatus.in_progress, BookingStatus.completed):
                r["km"] = round(r["km"] + b.distance_m / 1000.0, 3)
    return {"from": start, "to": end, "tz": tz, "total": total,
            **{g: sorted(rows.values(), key=lambda r: r["key"]) for g, rows in groups.items()}}


def stats_xlsx(stats: dict[str, Any]) -> bytes:
    """The statistics as an Excel workbook (汇总 / 按事由 / 按单位 / 按月份)."""
    wb = Workbook()
    ws = wb.active
    ws.title = "汇总"
    ws.append(["统计区间", f"{stats['from'].isoformat()} — {stats['to'].isoformat()}"])
    for key in (*COUNTERS, "km"):
        ws.append([HEADERS_ZH[key], stats["total"][key]])
    cols = ["key", "label", *COUNTERS, "km"]
    for group, title in (("by_purpose", "按事由"), ("by_department", "按单位"),
                         ("by_month", "按月份")):
        sheet = wb.create_sheet(title)
        sheet.append([HEADERS_ZH[c] for c in cols])
        for row in stats[group]:
            sheet.append([row[c] for c in cols])
    return _save(wb)


def _save(wb: Workbook) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


# --- audit trail -------------------------------------------------------------------------
def audit_entries(db: Session, actor: User, *, booking_id: int | None = None,
                  entity: str | None = None, start: datetime | None = None,
                  end: datetime | None = None, limit: int = 10_000) -> list[AuditEntry]:
    """The dispatch audit trail (append-only), for supervisors, dispatchers and admins."""
    require_role(actor, AUDIT_READERS, "read the audit trail")
    if entity is not None and entity not in DISPATCH_ENTITIES:
        raise Invalid(f"entity must be one of {', '.join(DISPATCH_ENTITIES)}", field="entity")
    stmt = select(AuditEntry).where(AuditEntry.entity.in_([entity] if entity
                                                          else DISPATCH_ENTITIES))
    if booking_id is not None:
        stmt = stmt.where(AuditEntry.entity == "booking",
                          AuditEntry.entity_id == str(booking_id))
    if start is not None:
        stmt = stmt.where(AuditEntry.at >= start)
    if end is not None:
        stmt = stmt.where(AuditEntry.at < end)
    return list(db.scalars(stmt.order_by(AuditEntry.id).limit(limit)))


AUDIT_COLUMNS = ("id", "at", "actor_id", "action", "entity", "entity_id", "reason", "detail")


def _audit_rows(entries: Iterable[AuditEntry]) -> Iterable[list[Any]]:
    import json

    for e in entries:
        yield [e.id, e.at.isoformat(), e.actor_id, e.action, e.entity, e.entity_id, e.reason,
               json.dumps(e.detail, ensure_ascii=False, sort_keys=True)]


def audit_csv(entries: Iterable[AuditEntry]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(AUDIT_COLUMNS)
    w.writerows(_audit_rows(entries))
    return buf.getvalue()


def audit_xlsx(entries: Iterable[AuditEntry]) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "操作日志"
    ws.append(list(AUDIT_COLUMNS))
    for row in _audit_rows(entries):
        ws.append(row)
    return _save(wb)


# --- suspicions (公车私用疑点) -------------------------------------------------------------
def list_suspicions(db: Session, actor: User, *, status: SuspicionStatus | None = None,
                    vehicle_id: int | None = None, start: datetime | None = None,
                    end: datetime | None = None) -> list[Suspicion]:
    require_role(actor, READERS, "read private-use suspicions")
    stmt = select(Suspicion).order_by(Suspicion.start_at)
    scope = visible_departments(db, actor)
    if scope is not None:
        stmt = stmt.where(Suspicion.department_id.in_(scope))
    if status:
        stmt = stmt.where(Suspicion.status == status)
    if vehicle_id:
        stmt = stmt.where(Suspicion.vehicle_id == vehicle_id)
    if start:
        stmt = stmt.where(Suspicion.start_at >= start)
    if end:
        stmt = stmt.where(Suspicion.start_at < end)
    return list(db.scalars(stmt))


def get_suspicion(db: Session, actor: User, suspicion_id: int) -> Suspicion:
    require_role(actor, READERS, "read private-use suspicions")
    s = db.get(Suspicion, suspicion_id)
    if s is None:
        raise NotFound(f"suspicion {suspicion_id} not found")
    check_visible(db, actor, s.department_id, "suspicion", suspicion_id)
    return s


def resolve_suspicion(db: Session, actor: User, suspicion_id: int, status: SuspicionStatus,
                      reason: str) -> Suspicion:
    """Close a suspicion as cleared (合理) or confirmed (属实) — admins, with a reason."""
    require_role(actor, [Role.admin], "resolve suspicions")
    s = get_suspicion(db, actor, suspicion_id)
    previous = s.status
    s.status = status
    audit.record(db, actor, "resolve", "suspicion", s.id, reason=reason, status=status,
                 previous=previous)
    db.flush()
    return s
