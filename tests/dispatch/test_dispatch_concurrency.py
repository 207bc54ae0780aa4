"""Concurrent approvals and assignments cannot both win (PostGIS, two sessions, two threads).

Runs on a scratch database of its own: the sessions must really commit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dispatch import schemas, service
from dispatch.models import Assignment
from fleet import migrate
from fleet.db import make_engine
from fleet.errors import Conflict
from fleet.models import Role
from tests import factories as f
from tests.conftest import _postgis_settings
from tests.dispatch.conftest import booking_body, make_driver


@pytest.fixture(scope="module")
def pg_engine(pg_server: Any) -> Iterator[Engine]:
    engine = make_engine(_postgis_settings(pg_server, "gongche_dispatch_race"))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def world(pg_engine: Engine) -> dict[str, Any]:
    with Session(pg_engine, expire_on_commit=False) as db:
        dep = f.department(db)
        admin = f.user(db, Role.admin, dep)
        w: dict[str, Any] = {
            "staff": f.user(db, Role.staff, dep), "approver": f.user(db, Role.approver, dep),
            "d1": f.user(db, Role.dispatcher, dep), "d2": f.user(db, Role.dispatcher, dep),
            "car1": f.vehicle(db, admin, dep).id, "car2": f.vehicle(db, admin, dep).id,
            "drv1": make_driver(db, dep).id, "drv2": make_driver(db, dep).id,
        }
        db.commit()
    return w


def approved_booking(engine: Engine, w: dict[str, Any], **over: Any) -> int:
    with Session(engine, expire_on_commit=False) as db:
        b = service.create_booking(db, w["staff"], schemas.BookingCreate(
            **booking_body(submit=True, **over)))
        service.approve(db, w["approver"], b.id)
        service.approve(db, w["d1"], b.id)
        db.commit()
        return b.id


def race(engine: Engine, *calls: Callable[[Session], Any]) -> list[str]:
    """Run each call in its own session and thread, started together; commit after a pause
    so the transactions overlap."""
    barrier = threading.Barrier(len(calls))
    out: list[str] = [""] * len(calls)

    def run(i: int, call: Callable[[Session], Any]) -> None:
        with Session(engine, expire_on_commit=False) as db:
            barrier.wait()
            try:
                call(db)
                time.sleep(0.3)
                db.commit()
                out[i] = "ok"
            except Conflict as exc:
                db.rollback()
                out[i] = f"conflict: {exc.message}"

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return out


def test_concurrent_assignments_of_one_booking(pg_engine: Engine, world: dict[str, Any]) -> None:
    w = world
    bid = approved_booking(pg_engine, w)
    out = race(pg_engine,
               lambda db: service.assign(db, w["d1"], bid, w["car1"], w["drv1"]),
               lambda db: service.assign(db, w["d2"], bid, w["car2"], w["drv2"]))
    assert sorted(o[:8] for o in out) == ["conflict", "ok"], out
    with Session(pg_engine) as db:
        active = db.scalar(select(func.count()).select_from(Assignment).where(
            Assignment.booking_id == bid, Assignment.active.is_(True)))
        assert active == 1


def test_concurrent_double_assignment_of_one_car(pg_engine: Engine, world: dict[str, Any]
                                                 ) -> None:
    w = world
    b1, b2 = approved_booking(pg_engine, w), approved_booking(pg_engine, w)
    out = race(pg_engine,
               lambda db: service.assign(db, w["d1"], b1, w["car1"], w["drv1"]),
               lambda db: service.assign(db, w["d2"], b2, w["car1"], w["drv2"]))
    assert sorted(o[:8] for o in out) == ["conflict", "ok"], out
    loser = out[0] if out[0] != "ok" else out[1]
    assert "already assigned to booking" in loser


def test_concurrent_approvals_of_one_stage(pg_engine: Engine, world: dict[str, Any]) -> None:
    w = world
    with Session(pg_engine, expire_on_commit=False) as db:
        b = service.create_booking(db, w["staff"], schemas.BookingCreate(
            **booking_body(submit=True)))
        service.approve(db, w["approver"], b.id)
        db.commit()
        bid, version = b.id, b.version
    out = race(pg_engine,
               lambda db: service.approve(db, w["d1"], bid, "ok", expected_version=version),
               lambda db: service.approve(db, w["d2"], bid, "ok", expected_version=version))
    assert sorted(o[:8] for o in out) == ["conflict", "ok"], out
