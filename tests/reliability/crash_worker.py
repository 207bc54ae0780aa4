"""A process that writes in a loop until it is killed (tests/reliability/test_rel_crash.py).

    python -m tests.reliability.crash_worker DATABASE_URL KIND ADMIN_ID PLATE START

KIND: ``bookings`` (dispatch.service.create_booking, 1–6 stops each), ``etc``
(ledger.etc.import_statement, 2–8 rows each), ``chain`` (ledger.chain.append, 1–5 entries per
transaction). Each committed unit prints one line, so the parent can kill mid-way.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import sessionmaker

from fleet.db import make_engine, unit_of_work
from fleet.models import User
from fleet.settings import Settings

CST_OFFSET = timedelta(hours=8)


def main() -> None:
    url, kind, admin_id, plate, start = sys.argv[1:6]
    engine = make_engine(Settings(mode="test", secret_key="x" * 40, database_url=url))
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    rng = random.Random(int(start))
    i = int(start)
    while True:
        i += 1
        with unit_of_work(factory) as db:
            actor = db.get(User, int(admin_id))
            if kind == "bookings":
                _booking(db, actor, rng, i)
            elif kind == "etc":
                _etc(db, actor, rng, i, plate)
            else:
                _chain(db, actor, rng, i)
        print(f"ok {i}", flush=True)


def _booking(db, actor, rng, i):  # type: ignore[no-untyped-def]
    from dispatch import schemas, service

    k = rng.randint(1, 6)
    day = (datetime.now(UTC) + timedelta(days=2 + i % 20)).date()
    start = datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)  # 10:00 Beijing
    data = schemas.BookingCreate(
        purpose="research", passengers=2,
        pickup={"address": "市政府", "lat": 30.66, "lon": 104.06},
        destinations=[{"address": f"站{j}", "lat": 30.6 + j * 0.001, "lon": 104.07}
                      for j in range(k)],
        start_at=start, end_at=start + timedelta(hours=2), return_trip=True,
        notes=f"stops={k}", department_id=actor.department_id)
    service.create_booking(db, actor, data)


def _etc(db, actor, rng, i, plate):  # type: ignore[no-untyped-def]
    from ledger import etc

    k = rng.randint(2, 8)
    t0 = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(hours=i)
    lines = ["车牌号,ETC卡号,入口站,入口时间,出口站,出口时间,金额(元)"]
    for j in range(k):
        a = (t0 + timedelta(minutes=5 * j) + CST_OFFSET).strftime("%Y-%m-%d %H:%M:%S")
        b = (t0 + timedelta(minutes=5 * j + 3) + CST_OFFSET).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{plate},K{i:06d},成都东站,{a},龙泉站,{b},{j + 1}.50")
    etc.import_statement(db, actor, f"crash-{i}.csv", ("\n".join(lines) + "\n").encode(),
                         match=False)


def _chain(db, actor, rng, i):  # type: ignore[no-untyped-def]
    from ledger import chain
    from ledger.models import EntryKind

    for j in range(rng.randint(1, 5)):
        chain.append(db, kind=EntryKind.cost, occurred_on=date(2024, 4, 1), actor_id=actor.id,
                     category="fuel", amount_fen=100 * i + j, reason=f"crash test {i}.{j}",
                     payload={"i": i, "j": j, "text": "燃油费 ' OR 1=1 --"})


if __name__ == "__main__":
    main()
