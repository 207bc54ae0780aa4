"""Ledger fixtures: an organisation with an admin, and simulated expressway trips."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session

from fleet.fix import Fix
from fleet.models import Department, Role, User
from simulators.noise import NoiseConfig, observe
from simulators.tracks import Track, simulate_route, start_time, synthetic_highway
from telematics.models import Position
from tests import factories as f


@dataclass
class Org:
    bureau: Department
    a: Department
    b: Department
    admin: User
    supervisor: User
    staff_a: User
    staff_b: User


@pytest.fixture
def org(db: Session) -> Org:
    bureau = f.department(db, name="机关事务局")
    a = f.department(db, bureau, "部门A")
    b = f.department(db, bureau, "部门B")
    return Org(bureau, a, b, f.user(db, Role.admin, bureau), f.user(db, Role.supervisor, bureau),
               f.user(db, Role.staff, a), f.user(db, Role.staff, b))


HIGHWAY = synthetic_highway(length_m=20_000.0, seed=3)


@lru_cache
def highway_track() -> Track:
    return simulate_route(HIGHWAY, start_time("2024-05-06", 9), terminal_id="SIM-ETC",
                          seed=5, dwell_before_s=400, dwell_after_s=400)


@lru_cache
def highway_fixes() -> tuple[Fix, ...]:
    fixes = observe(highway_track(), NoiseConfig(seed=5, dropout=0.0, duplicate=0.0))
    unique = {fx.time: fx for fx in fixes}
    return tuple(unique[t] for t in sorted(unique))


def store_fixes(db: Session, vehicle_id: int, fixes: tuple[Fix, ...]) -> None:
    now = datetime.now(UTC)
    rows = [{"terminal_id": fx.terminal_id, "time": fx.time, "vehicle_id": vehicle_id,
             "lat": fx.lat, "lon": fx.lon, "geom": None, "speed_kmh": fx.speed_kmh,
             "course": fx.course, "altitude_m": fx.altitude_m, "hdop": fx.hdop,
             "satellites": fx.satellites, "valid": fx.valid, "protocol": fx.protocol,
             "alarm": fx.alarm, "status": fx.status, "extras": fx.extras, "received_at": now}
            for fx in fixes]
    db.execute(insert(Position), rows)
    db.flush()


@pytest.fixture
def app(settings, engine, session_factory, monkeypatch):  # type: ignore[no-untyped-def]
    """The application with the kernel's and the ledger's routers only, so ledger tests do
    not depend on sibling domains being mid-change."""
    import fleet.app as fleet_app
    import ledger.api

    monkeypatch.setattr(fleet_app, "domain_routers", lambda: [ledger.api.router])
    return fleet_app.create_app(settings, engine=engine, session_factory=session_factory)
