"""Stream → positions: idempotent, acknowledged after commit, claims a dead writer's work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import Engine, func, select, text

from fleet.fix import Fix
from gateway.sink import LIVE_GEO, RedisSink, Routed, live_snapshot
from telematics.models import Position
from telematics.writer import StreamWriter, ensure_month_partitions, store_positions

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture
def clean_positions(engine: Engine) -> Iterator[Engine]:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM positions"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM positions"))


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def fixes(terminal: str, n: int, start: datetime = T0) -> list[Routed]:
    return [Routed(Fix(terminal, start + timedelta(seconds=i), 30.66 + i * 1e-4, 104.06,
                       speed_kmh=30.0, protocol="sim", extras={"seq": i}), 7) for i in range(n)]


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(Position.__table__)) or 0)


def test_store_is_idempotent(clean_positions: Engine) -> None:
    engine = clean_positions
    batch = fixes("T1", 50)
    assert store_positions(engine, batch) == 50
    assert store_positions(engine, batch[10:30] + fixes("T1", 5, T0 + timedelta(hours=1))) == 5
    assert count(engine) == 55
    with engine.connect() as conn:
        row = conn.execute(select(Position.__table__).where(Position.terminal_id == "T1")
                           .order_by(Position.time).limit(1)).mappings().one()
        x = conn.execute(text("SELECT ST_X(geom) FROM positions WHERE terminal_id='T1' "
                              "ORDER BY time LIMIT 1")).scalar()
    assert row["vehicle_id"] == 7 and row["extras"] == {"seq": 0}
    assert row["time"].replace(tzinfo=UTC) == T0 if row["time"].tzinfo is None \
        else row["time"] == T0
    assert round(float(x), 6) == 104.06


def test_stream_to_positions_exactly_once(clean_positions: Engine, rclient: redis.Redis) -> None:
    engine = clean_positions
    sink = RedisSink(rclient)
    sent = fixes("T1", 300) + fixes("T2", 200)
    sink.put(sent[:250])
    sink.put(sent[200:])  # an at-least-once replay overlapping the first put
    rclient.xadd("fixes", {"fix": "{not json", "vehicle_id": ""})  # garbage is skipped
    writer = StreamWriter(rclient, engine, batch=128, block_ms=50)
    writer.ensure_group()
    writer.drain()
    assert count(engine) == 500
    assert rclient.xpending("fixes", "writers")["pending"] == 0


def test_dead_writer_entries_are_claimed(clean_positions: Engine, rclient: redis.Redis) -> None:
    engine = clean_positions
    RedisSink(rclient).put(fixes("T9", 40))
    dead = StreamWriter(rclient, engine, consumer="dead", batch=40, block_ms=50)
    dead.ensure_group()
    assert len(dead._read()) == 40  # read, never stored nor acknowledged: the process died
    assert rclient.xpending("fixes", "writers")["pending"] == 40
    alive = StreamWriter(rclient, engine, consumer="alive", claim_idle_ms=0, block_ms=50)
    alive.drain()
    assert count(engine) == 40
    assert rclient.xpending("fixes", "writers")["pending"] == 0


def test_live_state_never_moves_backwards(rclient: redis.Redis) -> None:
    sink = RedisSink(rclient)
    pubsub = rclient.pubsub()
    pubsub.subscribe("live")
    pubsub.get_message(timeout=1)
    sink.put(fixes("T5", 3))
    late = Routed(Fix("T5", T0 - timedelta(minutes=5), 31.0, 105.0, protocol="sim"), 7)
    sink.put([late])
    snap = live_snapshot(rclient)
    assert snap["T5"]["time"] == (T0 + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    assert snap["T5"]["vehicle_id"] == 7
    published = []
    while (m := pubsub.get_message(timeout=0.5)) is not None:
        published.append(m)
    assert len(published) == 3  # the late fix published nothing
    pos = rclient.geopos(LIVE_GEO, "T5")[0]
    assert abs(pos[1] - (30.66 + 2e-4)) < 1e-5


def test_month_partitions_on_postgis(clean_positions: Engine) -> None:
    engine = clean_positions
    created = ensure_month_partitions(engine, datetime(2031, 5, 10, tzinfo=UTC))
    if engine.dialect.name != "postgresql":
        assert created == []
        return
    assert "positions_2031_05" in created
    store_positions(engine, fixes("TP", 3, datetime(2031, 5, 10, tzinfo=UTC)))
    with engine.connect() as conn:
        n = conn.scalar(text("SELECT count(*) FROM positions_2031_05"))
    assert n == 3
    with engine.begin() as conn:
        for name in created:
            conn.execute(text(f"DROP TABLE {name}"))
