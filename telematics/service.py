"""Telematics service functions: live state and stored positions, scoped like everything."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.errors import Invalid, NotFound
from fleet.models import Role, User, Vehicle
from fleet.scope import require_role, visible_departments
from fleet.service import Paged, get_vehicle, paginate
from gateway.sink import live_snapshot
from telematics.events import EVENT_TYPES
from telematics.mileage import compute_mileage, daily_mileage, odometer_km_delta
from telematics.models import Event as EventRow
from telematics.models import Holiday, Position
from telematics.models import Stop as StopRow
from telematics.models import Trip as TripRow
from telematics.processing import load_fixes, recompute
from telematics.schemas import (
    LiveStatus,
    LiveVehicle,
    MileageRead,
    OdometerRead,
    PositionRead,
    RecomputeRead,
)
from telematics.segment import SegmentParams

OFFLINE_AFTER = timedelta(minutes=10)
MOVING_KMH = 3.0
MAX_POSITIONS = 100_000


def live_status(fix_time: datetime, speed_kmh: float, now: datetime) -> LiveStatus:
    if now - fix_time > OFFLINE_AFTER:
        return "offline"
    return "moving" if speed_kmh >= MOVING_KMH else "parked"


def visible_vehicles(db: Session, actor: User) -> dict[int, Vehicle]:
    stmt = select(Vehicle)
    scope = visible_departments(db, actor)
    if scope is not None:
        stmt = stmt.where(Vehicle.department_id.in_(scope))
    return {v.id: v for v in db.scalars(stmt)}


def live_vehicles(db: Session, actor: User, client: redis.Redis,
                  now: datetime | None = None) -> list[LiveVehicle]:
    """The live picture (指挥): newest fix of every car the actor may see."""
    now = now or datetime.now(UTC)
    vehicles = visible_vehicles(db, actor)
    out = []
    for terminal_id, fix in live_snapshot(client).items():
        vehicle = vehicles.get(fix.get("vehicle_id") or -1)
        if vehicle is None:
            continue
        out.append(live_row(terminal_id, fix, vehicle, now))
    return sorted(out, key=lambda r: r.vehicle_id)


def live_row(terminal_id: str, fix: dict[str, Any], vehicle: Vehicle,
             now: datetime) -> LiveVehicle:
    t = datetime.fromisoformat(str(fix["time"]).replace("Z", "+00:00"))
    speed = float(fix.get("speed_kmh") or 0.0)
    return LiveVehicle(vehicle_id=vehicle.id, plate=vehicle.plate,
                       department_id=vehicle.department_id, category=str(vehicle.category),
                       terminal_id=terminal_id, time=t, lat=float(fix["lat"]),
                       lon=float(fix["lon"]), speed_kmh=speed,
                       course=float(fix.get("course") or 0.0),
                       status=live_status(t, speed, now))


def vehicle_positions(db: Session, actor: User, vehicle_id: int, start: datetime,
                      end: datetime, limit: int = MAX_POSITIONS) -> list[PositionRead]:
    """Stored positions of one car in [start, end), oldest first (scope-checked)."""
    get_vehicle(db, actor, vehicle_id)
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    if end - start > timedelta(days=31):
        raise Invalid("at most 31 days per request", field="to")
    stmt = (select(Position).where(Position.vehicle_id == vehicle_id, Position.time >= start,
                                   Position.time < end).order_by(Position.time).limit(limit))
    return [PositionRead(terminal_id=p.terminal_id, vehicle_id=p.vehicle_id, time=p.time,
                         lat=p.lat, lon=p.lon, speed_kmh=p.speed_kmh, course=p.course,
                         altitude_m=p.altitude_m, hdop=p.hdop, satellites=p.satellites,
                         valid=p.valid) for p in db.scalars(stmt)]


# --------------------------------------------------------------------------- issue 5 reads

MAX_PERIOD = timedelta(days=31)
WRITERS = (Role.admin, Role.dispatcher)


def check_period(start: datetime, end: datetime, max_period: timedelta = MAX_PERIOD) -> None:
    if end <= start:
        raise Invalid("'to' must be after 'from'", field="to")
    if end - start > max_period:
        raise Invalid(f"at most {max_period.days} days per request", field="to")


def list_trips(db: Session, actor: User, vehicle_id: int, start: datetime,
               end: datetime) -> list[TripRow]:
    """Stored trips of a car overlapping [start, end), oldest first."""
    get_vehicle(db, actor, vehicle_id)
    check_period(start, end, timedelta(days=366))
    stmt = (select(TripRow).where(TripRow.vehicle_id == vehicle_id, TripRow.start_time < end,
                                  TripRow.end_time >= start).order_by(TripRow.start_time))
    return list(db.scalars(stmt))


def list_stops(db: Session, actor: User, vehicle_id: int, start: datetime,
               end: datetime) -> list[StopRow]:
    """Stored stops of a car overlapping [start, end), oldest first."""
    get_vehicle(db, actor, vehicle_id)
    check_period(start, end, timedelta(days=366))
    stmt = (select(StopRow).where(StopRow.vehicle_id == vehicle_id, StopRow.start_time < end,
                                  StopRow.end_time >= start).order_by(StopRow.start_time))
    return list(db.scalars(stmt))


def list_events(db: Session, actor: User, vehicle_id: int | None = None,
                type_: str | None = None, start: datetime | None = None,
                end: datetime | None = None, offset: int = 0, limit: int = 100) -> Paged:
    """Events of the cars the actor may see, newest first."""
    stmt = select(EventRow)
    if vehicle_id is not None:
        get_vehicle(db, actor, vehicle_id)
        stmt = stmt.where(EventRow.vehicle_id == vehicle_id)
    else:
        scope = visible_departments(db, actor)
        if scope is not None:
            stmt = stmt.where(EventRow.vehicle_id.in_(
                select(Vehicle.id).where(Vehicle.department_id.in_(scope))))
    if type_:
        if type_ not in EVENT_TYPES:
            raise Invalid(f"unknown event type {type_!r} (one of {', '.join(EVENT_TYPES)})",
                          field="type")
        stmt = stmt.where(EventRow.type == type_)
    if start is not None:
        stmt = stmt.where(EventRow.time >= start)
    if end is not None:
        stmt = stmt.where(EventRow.time < end)
    return paginate(db, stmt.order_by(EventRow.time.desc(), EventRow.id.desc()), offset, limit)


def vehicle_mileage(db: Session, actor: User, vehicle_id: int, start: datetime,
                    end: datetime) -> MileageRead:
    """Mileage per day and in total from stored positions, checked against the odometer."""
    get_vehicle(db, actor, vehicle_id)
    check_period(start, end)
    stmt = (select(Position.terminal_id).where(Position.vehicle_id == vehicle_id,
                                               Position.time >= start, Position.time < end)
            .distinct())
    total = trips_m = gaps_m = 0.0
    per_day: dict[str, float] = {}
    rejected: Counter[str] = Counter()
    odo_km: float | None = None
    for terminal in sorted(db.scalars(stmt)):
        fixes = load_fixes(db, terminal, start, end - timedelta(microseconds=1))
        m = compute_mileage(fixes, prevalidated=True)
        total += m.total_m
        trips_m += m.trips_m
        gaps_m += m.gaps_m
        rejected.update(m.rejected)
        for day, metres in daily_mileage(m).items():
            per_day[day.isoformat()] = per_day.get(day.isoformat(), 0.0) + metres / 1000.0
        delta = odometer_km_delta(fixes)
        if delta is not None:
            odo_km = (odo_km or 0.0) + delta
    chk = _odo_check(total, odo_km)
    stored = db.execute(select(func.count(TripRow.id), func.sum(TripRow.distance_m)).where(
        TripRow.vehicle_id == vehicle_id, TripRow.start_time >= start,
        TripRow.start_time < end)).one()
    return MileageRead(vehicle_id=vehicle_id, start=start, end=end,
                       total_km=round(total / 1000.0, 3), trips_km=round(trips_m / 1000.0, 3),
                       gaps_km=round(gaps_m / 1000.0, 3),
                       stored_trips_km=round(float(stored[1] or 0.0) / 1000.0, 3),
                       trips=int(stored[0] or 0),
                       per_day_km={k: round(v, 3) for k, v in sorted(per_day.items())},
                       odometer=chk, rejected=dict(rejected))


def _odo_check(total_m: float, odo_km: float | None, tolerance_pct: float = 5.0,
               tolerance_km: float = 1.0) -> OdometerRead:
    computed = total_m / 1000.0
    if odo_km is None:
        return OdometerRead(computed_km=round(computed, 3), odometer_km=None, diff_km=None,
                            diff_pct=None, flagged=False)
    diff = odo_km - computed
    pct = 100.0 * diff / max(abs(computed), 1e-9)
    return OdometerRead(computed_km=round(computed, 3), odometer_km=round(odo_km, 3),
                        diff_km=round(diff, 3), diff_pct=round(pct, 2),
                        flagged=abs(diff) > tolerance_km and abs(pct) > tolerance_pct)


def recompute_vehicle(db: Session, actor: User, vehicle_id: int, start: datetime,
                      end: datetime, params: SegmentParams | None = None) -> RecomputeRead:
    """Recompute the stored trips and stops of a car for a period (admin, dispatcher)."""
    require_role(actor, WRITERS, "recompute trips")
    get_vehicle(db, actor, vehicle_id)
    check_period(start, end, timedelta(days=366))
    trips, stops = recompute(db, vehicle_id, start, end, params)
    return RecomputeRead(trips=trips, stops=stops)


def list_holidays(db: Session, actor: User, year: int | None = None) -> list[Holiday]:
    stmt = select(Holiday).order_by(Holiday.day)
    if year is not None:
        stmt = stmt.where(Holiday.day >= date(year, 1, 1), Holiday.day <= date(year, 12, 31))
    return list(db.scalars(stmt))


def put_holiday(db: Session, actor: User, day: date, name: str, workday: bool) -> Holiday:
    """Mark a day off (节假日) or a weekend working day (调休, ``workday=True``)."""
    require_role(actor, (Role.admin,), "edit the holiday calendar")
    row = db.get(Holiday, day) or Holiday(day=day)
    row.name, row.workday = name, workday
    db.add(row)
    db.flush()
    return row


def delete_holiday(db: Session, actor: User, day: date) -> None:
    require_role(actor, (Role.admin,), "edit the holiday calendar")
    row = db.get(Holiday, day)
    if row is None:
        raise NotFound(f"no calendar entry for {day}")
    db.delete(row)
    db.flush()
