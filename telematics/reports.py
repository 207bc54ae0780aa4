"""Mileage reports (里程报表): per vehicle or department, per day or month (Asia/Shanghai).

Built from stored trips, stops and events (never from raw positions), so a year's report is
a few thousand rows of work, not millions (Traccar's "slow reports" complaint).  A trip or
stop that crosses a day/month boundary is split at the boundary, with distance pro rata.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.errors import Invalid
from fleet.models import Department, User, Vehicle
from fleet.scope import visible_departments
from telematics.mileage import CST
from telematics.models import Event, Stop, Trip
from telematics.schemas import ReportRow
from telematics.service import check_period

Group = Literal["vehicle", "department"]
Period = Literal["day", "month"]


def _bucket_start(t: datetime, period: Period) -> datetime:
    local = t.astimezone(CST)
    if period == "month":
        return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _next_bucket(b: datetime, period: Period) -> datetime:
    if period == "month":
        return (b.replace(day=28) + timedelta(days=4)).replace(day=1)
    return b + timedelta(days=1)


def _label(b: datetime, period: Period) -> str:
    return b.strftime("%Y-%m") if period == "month" else b.strftime("%Y-%m-%d")


def split(t0: datetime, t1: datetime, period: Period) -> Iterator[tuple[str, float]]:
    """(bucket label, seconds) of the interval [t0, t1] per local day or month."""
    b = _bucket_start(t0, period)
    cur = t0
    while True:
        nb = _next_bucket(b, period)
        seg_end = min(t1, nb)
        if seg_end > cur or (t0 == t1 and cur == t0):
            yield _label(b, period), max(0.0, (seg_end - cur).total_seconds())
        if t1 <= nb:
            return
        cur, b = nb, nb


def mileage_report(db: Session, actor: User, group: Group, period: Period, start: datetime,
                   end: datetime) -> list[ReportRow]:
    """Kilometres, trips, driving and parked time and events by type, per group and period."""
    if group not in ("vehicle", "department"):
        raise Invalid("group must be 'vehicle' or 'department'", field="group")
    if period not in ("day", "month"):
        raise Invalid("period must be 'day' or 'month'", field="period")
    check_period(start, end, timedelta(days=366))
    stmt = select(Vehicle)
    scope = visible_departments(db, actor)
    if scope is not None:
        stmt = stmt.where(Vehicle.department_id.in_(scope))
    vehicles = {v.id: v for v in db.scalars(stmt)}
    if not vehicles:
        return []
    ids = list(vehicles)
    departments = {d.id: d for d in db.scalars(select(Department))}

    def key(vehicle_id: int | None) -> int | None:
        if vehicle_id is None or vehicle_id not in vehicles:
            return None
        return vehicle_id if group == "vehicle" else vehicles[vehicle_id].department_id

    acc: dict[tuple[int, str], dict[str, object]] = defaultdict(
        lambda: {"km": 0.0, "trips": 0, "driving_s": 0.0, "parked_s": 0.0,
                 "events": defaultdict(int)})
    trips = db.scalars(select(Trip).where(Trip.vehicle_id.in_(ids), Trip.start_time < end,
                                          Trip.end_time >= start))
    for t in trips:
        k = key(t.vehicle_id)
        if k is None:
            continue
        a, b = max(t.start_time, start), min(t.end_time, end)
        total = max((t.end_time - t.start_time).total_seconds(), 1e-9)
        for label, secs in split(a, b, period):
            row = acc[(k, label)]
            row["km"] = float(row["km"]) + t.distance_m / 1000.0 * (
                secs / total if t.end_time > t.start_time else 1.0)  # type: ignore[arg-type]
            row["driving_s"] = float(row["driving_s"]) + secs  # type: ignore[arg-type]
        if start <= t.start_time < end:
            row = acc[(k, _label(_bucket_start(t.start_time, period), period))]
            row["trips"] = int(row["trips"]) + 1  # type: ignore[call-overload]
    stops = db.scalars(select(Stop).where(Stop.vehicle_id.in_(ids), Stop.start_time < end,
                                          Stop.end_time >= start))
    for s in stops:
        k = key(s.vehicle_id)
        if k is None:
            continue
        for label, secs in split(max(s.start_time, start), min(s.end_time, end), period):
            row = acc[(k, label)]
            row["parked_s"] = float(row["parked_s"]) + secs  # type: ignore[arg-type]
    events = db.execute(select(Event.vehicle_id, Event.type, Event.time).where(
        Event.vehicle_id.in_(ids), Event.time >= start, Event.time < end))
    for vehicle_id, kind, when in events:
        k = key(vehicle_id)
        if k is None:
            continue
        counts = acc[(k, _label(_bucket_start(when, period), period))]["events"]
        counts[kind] += 1  # type: ignore[index]
    out = []
    for (k, label), row in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if group == "vehicle":
            v = vehicles[k]
            name, vid, plate, dep = v.plate, v.id, v.plate, v.department_id
        else:
            d = departments.get(k)
            name, vid, plate, dep = (d.name if d else str(k)), None, None, k
        out.append(ReportRow(group=name, vehicle_id=vid, plate=plate, department_id=dep,
                             period=label, km=round(float(row["km"]), 3),  # type: ignore[arg-type]
                             trips=int(row["trips"]),  # type: ignore[call-overload]
                             driving_s=round(float(row["driving_s"]), 1),  # type: ignore[arg-type]
                             parked_s=round(float(row["parked_s"]), 1),  # type: ignore[arg-type]
                             events=dict(sorted(row["events"].items()))))  # type: ignore[attr-defined]
    return out
