"""A process killed (SIGKILL) mid-write leaves no half booking, half import or broken chain.

A child process writes bookings (dispatch), ETC imports (ledger.etc) and ledger entries
(ledger.chain) in a loop, one committed unit of work each; it is killed at random moments,
restarted and killed again; then the database must be consistent.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.orm import Session

from fleet import migrate
from fleet.db import make_engine
from fleet.models import Department, Role
from fleet.settings import Settings
from tests import factories as f
from tests.conftest import REPO, SECRET
from tests.services import Postgres

KILLS = 2


@pytest.fixture(scope="module")
def crash_db(pg_server: Postgres) -> Iterator[tuple[str, Engine, int, str]]:
    admin = create_engine(pg_server.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gongche_crash"))
        conn.execute(text("CREATE DATABASE gongche_crash"))
    url = pg_server.url("gongche_crash")
    engine = make_engine(Settings(mode="test", secret_key=SECRET, database_url=url))
    migrate.upgrade(engine)
    with Session(engine) as db:
        dep = f.department(db, name="崩溃测试局")
        user = f.user(db, Role.admin, dep)
        car = f.vehicle(db, user, dep)
        db.commit()
        ids = user.id, car.plate
    yield url, engine, ids[0], ids[1]
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS gongche_crash WITH (FORCE)"))
    admin.dispose()


def _kill_in_a_loop(url: str, kind: str, admin_id: int, plate: str) -> int:
    """Start the writer, kill it after a random number of units (and mid-unit), KILLS times."""
    rng = random.Random(kind)
    committed = 0
    for k in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.crash_worker", url, kind, str(admin_id),
             plate, str(100_000 * (k + 1))],
            cwd=REPO, env={**os.environ, "GONGCHE_LOG_LEVEL": "WARNING"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        want = rng.randint(3, 12)
        deadline = time.monotonic() + 60
        seen = 0
        while seen < want and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line.startswith(b"ok ")
        time.sleep(rng.uniform(0.0, 0.05))  # somewhere inside the next unit of work
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        assert seen >= want, f"{kind} writer made no progress: {err[-1500:]}"
        committed += seen
    return committed


def test_bookings_never_half_written(crash_db: tuple[str, Engine, int, str]) -> None:
    from dispatch.models import Booking, BookingStop

    url, engine, admin_id, plate = crash_db
    committed = _kill_in_a_loop(url, "bookings", admin_id, plate)
    with Session(engine) as db:
        rows = db.execute(select(Booking.id, Booking.notes, func.count(BookingStop.id))
                          .outerjoin(BookingStop, BookingStop.booking_id == Booking.id)
                          .group_by(Booking.id, Booking.notes)).all()
    assert len(rows) >= committed
    bad = [(bid, notes, n) for bid, notes, n in rows if notes != f"stops={n}"]
    assert not bad, f"bookings without all their stops: {bad[:5]}"


def test_etc_imports_all_or_nothing(crash_db: tuple[str, Engine, int, str]) -> None:
    from ledger.models import EtcCharge, EtcImport, LedgerEntry

    url, engine, admin_id, plate = crash_db
    committed = _kill_in_a_loop(url, "etc", admin_id, plate)
    with Session(engine) as db:
        imports = db.execute(select(EtcImport.id, EtcImport.rows, EtcImport.total_fen)).all()
        charges = {i: (n, s) for i, n, s in db.execute(
            select(EtcCharge.import_id, func.count(), func.sum(EtcCharge.amount_fen))
            .group_by(EtcCharge.import_id)).all()}
        orphans = db.scalar(select(func.count()).select_from(EtcCharge)
                            .where(EtcCharge.import_id.not_in(select(EtcImport.id))))
        tolls = db.scalar(select(func.count()).select_from(LedgerEntry)
                          .where(LedgerEntry.category == "toll"))
    assert len(imports) >= committed
    bad = [(i, n, s, charges.get(i)) for i, n, s in imports if charges.get(i) != (n, s)]
    assert not bad, f"half imports: {bad[:5]}"
    assert orphans == 0
    assert tolls == sum(n for _, n, _ in imports)  # one ledger entry per charge, no more


def test_ledger_chain_intact_after_kills(crash_db: tuple[str, Engine, int, str]) -> None:
    from ledger import chain

    url, engine, admin_id, plate = crash_db
    _kill_in_a_loop(url, "chain", admin_id, plate)
    with Session(engine) as db:
        results = chain.verify_all(db)
    assert results and all(r.ok for r in results), [r.describe() for r in results]
    assert sum(r.checked for r in results) > 0


def test_department_table_intact(crash_db: tuple[str, Engine, int, str]) -> None:
    _, engine, _, _ = crash_db
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(Department)) >= 1
