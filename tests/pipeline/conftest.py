"""Pipeline tests run several processes' worth of code against committed data."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fleet.models import Department, Terminal, TerminalProtocol, Vehicle
from tests import factories as f

TABLES = ["events", "trips", "stops", "positions", "terminal_bindings", "terminals",
          "audit_log", "vehicles", "drivers", "users", "departments"]


def wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in TABLES:
            conn.execute(text(f"DELETE FROM {table}"))


@dataclass
class Fleet:
    vehicles: list[int]
    nmea: list[str]  # terminal ids speaking NMEA over MQTT
    jt808: dict[str, str]  # terminal id -> SIM phone
    unbound: str


@pytest.fixture
def fleet(engine: Engine) -> Iterator[Fleet]:
    """Committed: one department, 4 cars, 2 NMEA terminals, 2 JT/T 808, 1 unbound."""
    wipe(engine)
    with Session(engine) as db:
        dep = Department(code="pipe", name="管道测试")
        db.add(dep)
        db.flush()
        admin = f.user(db, "admin", dep)  # type: ignore[arg-type]
        cars = [f.vehicle(db, admin, dep) for _ in range(4)]
        terms = [
            Terminal(id="N1", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=cars[0].id),
            Terminal(id="N2", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=cars[1].id),
            Terminal(id="J1", protocol=TerminalProtocol.jt808, phone="013800000001",
                     vehicle_id=cars[2].id),
            Terminal(id="J2", protocol=TerminalProtocol.jt808, phone="13800000002",
                     vehicle_id=cars[3].id),
            Terminal(id="U1", protocol=TerminalProtocol.nmea_mqtt),
        ]
        db.add_all(terms)
        db.commit()
        ids = [c.id for c in cars]
    yield Fleet(ids, ["N1", "N2"], {"J1": "13800000001", "J2": "13800000002"}, "U1")
    wipe(engine)


__all__ = ["Fleet", "Vehicle"]
