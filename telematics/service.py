"""Telematics service functions: live state and stored positions, scoped like everything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.errors import Invalid
from fleet.models import User, Vehicle
from fleet.scope import visible_departments
from fleet.service import get_vehicle
from gateway.sink import live_snapshot
from telematics.models import Position
from telematics.schemas import LiveStatus, LiveVehicle, PositionRead

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
