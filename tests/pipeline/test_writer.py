"""Stream → positions: idempotent, acknowledged after commit, claims a dead writer's work."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, func, select, text

from fleet.fix import Fix
from gateway.sink import (
    LIVE_GEO,
    LIVE_LAST,
    RedisSink,
    Routed,
    encode_entry,
    fix_json,
    live_json,
    live_snapshot,
)
from telematics.models import Position
from telematics.writer import StreamWriter, copy_row, ensure_month_partitions, store_positions

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


def test_sink_entries_and_live_documents(rclient: redis.Redis) -> None:
    """One script call per batch writes each fix's stream entry (exactly what encode_entry
    gives) and its live document: the stream JSON with vehicle_id added, i.e. the object
    fix.to_json() | {"vehicle_id": …}; an invalid fix is streamed but never live."""
    stream = "test:sink:entries"
    rclient.delete(stream)
    sink = RedisSink(rclient, stream=stream)
    pubsub = rclient.pubsub()
    pubsub.subscribe("live")
    pubsub.get_message(timeout=1)
    items = [Routed(Fix("SK1", T0, 30.5, 104.1, speed_kmh=12.5, hdop=0.9, satellites=11,
                        protocol="nmea-mqtt", extras={"sentences": ["GNRMC", "GNGGA"]}), 3),
             Routed(Fix("SK2", T0, 31.5, 105.1, protocol="sim", extras={"说明": "车"}), None),
             Routed(Fix("SK3", T0, 32.5, 106.1, valid=False, protocol="sim"), 4),
             Routed(Fix("SK4", T0, float("nan"), 104.1, valid=False, protocol="sim"),
                    3)]  # NaN: the encoder's own text, as before
    sink.put(items)
    entries = rclient.xrange(stream)
    assert [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries] \
        == [encode_entry(i) for i in items]
    snap = live_snapshot(rclient)
    assert snap["SK2"] == items[1].fix.to_json() | {"vehicle_id": None}
    assert "SK3" not in snap and "SK4" not in snap
    published = []
    while (m := pubsub.get_message(timeout=0.5)) is not None:
        published.append(m["data"].decode())
    assert published == [live_json(fix_json(i.fix), i.vehicle_id) for i in items[:2]]
    assert json.loads(published[0]) == items[0].fix.to_json() | {"vehicle_id": 3}
    assert rclient.hget(LIVE_LAST, "SK1").decode() == published[0]
    rclient.delete(stream)


def test_sink_reloads_a_lost_script_and_takes_fixes_the_geo_index_cannot_hold(
        rclient: redis.Redis) -> None:
    stream = "test:sink:errors"
    rclient.delete(stream)
    sink = RedisSink(rclient, stream=stream, maxlen=None)
    rclient.script_flush()  # a Redis restart: the script is gone, the call repeated once
    sink.put(fixes("SE1", 300))  # two script calls (SINK_BATCH fixes each at most)
    assert rclient.xlen(stream) == 300
    assert live_snapshot(rclient)["SE1"]["time"] == fixes("SE1", 300)[-1].fix.to_json()["time"]
    # GEO refuses latitudes beyond ±85.05°: no error (raising stalled the gateway on the
    # same batch for ever); the fix is stored and is the terminal's last, the terminal is
    # out of the GEO index (not left at an older place), and it is counted
    before = REGISTRY.get_sample_value("gongche_gateway_live_geo_skipped_total") or 0.0
    sink.put([Routed(Fix("SE2", T0, 30.0, 104.0, protocol="sim"), 7)])
    assert rclient.geopos(LIVE_GEO, "SE2")[0] is not None
    polar = [Routed(Fix("SE2", T0 + timedelta(seconds=1), 89.0, 104.0, protocol="sim"), 7),
             Routed(Fix("SE3", T0, 30.0, 104.0, protocol="sim"), 7)]
    sink.put(polar)
    assert rclient.xlen(stream) == 303
    live = live_snapshot(rclient)
    assert live["SE2"]["lat"] == 89.0 and "SE3" in live
    assert rclient.geopos(LIVE_GEO, "SE2")[0] is None
    assert rclient.geopos(LIVE_GEO, "SE3")[0] is not None
    after = REGISTRY.get_sample_value("gongche_gateway_live_geo_skipped_total")
    assert after == before + 1
    with pytest.raises(ValueError):
        RedisSink(rclient, maxlen=-1)
    rclient.delete(stream)


def test_sink_trims_the_stream(rclient: redis.Redis) -> None:
    stream = "test:sink:trim"
    rclient.delete(stream)
    RedisSink(rclient, stream=stream, maxlen=0).put(fixes("ST1", 20))
    assert rclient.xlen(stream) < 20  # MAXLEN ~ trims whole nodes
    rclient.delete(stream)


def test_binary_copy_stores_every_value_type(clean_positions: Engine) -> None:
    engine = clean_positions
    odd = Fix("T\tab\\é", T0, 30, -104, speed_kmh=0, course=359.9, altitude_m=None, hdop=None,
              satellites=None, valid=False, protocol="jt808", alarm=2**40, status=-1,
              extras={"说明": "车\n", "n": [1, 2.5, None, True], "big": 2**70})
    assert store_positions(engine, [Routed(odd, None), *fixes("TB", 2)]) == 3
    with engine.connect() as conn:
        row = conn.execute(select(Position.__table__).where(
            Position.terminal_id == odd.terminal_id)).mappings().one()
    assert (row["lat"], row["lon"], row["speed_kmh"], row["course"]) == (30.0, -104.0, 0.0, 359.9)
    assert row["altitude_m"] is row["hdop"] is row["satellites"] is row["vehicle_id"] is None
    assert (row["valid"], row["protocol"], row["alarm"], row["status"]) \
        == (False, "jt808", 2**40, -1)
    assert row["extras"] == odd.extras


@pytest.mark.parametrize("change", [{"satellites": 40_000}, {"alarm": 2**63}, {"hdop": "1.0"},
                                    {"valid": 1}, {"terminal_id": "T" * 41}, {"speed_kmh": True},
                                    {"extras": []}])
def test_copy_row_refuses_what_the_columns_cannot_hold(change: dict[str, object]) -> None:
    """The binary COPY would wrap out-of-range integers silently: refused before it."""
    fix = fixes("TR", 1)[0].fix
    for k, v in change.items():
        setattr(fix, k, v)
    with pytest.raises(ValueError):
        copy_row(Routed(fix, 7))
    with pytest.raises(ValueError):
        copy_row(Routed(fixes("TR", 1)[0].fix, 2**31))


def test_writer_skips_an_entry_the_columns_cannot_hold(clean_positions: Engine,
                                                       rclient: redis.Redis) -> None:
    engine = clean_positions
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any integer in a SMALLINT column")
    good = fixes("TS", 3)
    bad = Routed(Fix("TS", T0 + timedelta(minutes=1), 30.0, 104.0, satellites=40_000,
                     protocol="sim"), 7)
    rclient.delete("fixes")
    RedisSink(rclient).put([good[0], bad, *good[1:]])
    writer = StreamWriter(rclient, engine, batch=100, block_ms=50)
    writer.ensure_group()
    writer.drain()
    assert count(engine) == 3
    assert rclient.xpending("fixes", "writers")["pending"] == 0


def test_staging_table_survives_a_rolled_back_first_batch(
        clean_positions: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch holding a stored row takes the staging table; that table is created once per
    session and remembered only once committed."""
    import psycopg

    import telematics.writer as writer_module

    if clean_positions.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's staging table")
    engine = create_engine(clean_positions.url, pool_size=1, max_overflow=0)
    assert store_positions(engine, fixes("TT", 2)) == 2  # COPY straight into positions
    monkeypatch.setattr(writer_module, "_PG_MERGE", "SELECT no_such_column FROM positions_in")
    with pytest.raises(psycopg.Error):
        store_positions(engine, fixes("TT", 3))  # a conflict: the merge, which fails here
    monkeypatch.undo()
    assert store_positions(engine, fixes("TT", 3)) == 1
    assert store_positions(engine, fixes("TT", 4)) == 1
    assert count(engine) == 4
    engine.dispose()


def test_geometry_is_the_point_of_lon_lat(clean_positions: Engine) -> None:
    engine = clean_positions
    if engine.dialect.name != "postgresql":
        pytest.skip("the EWKB written by the PostgreSQL COPY")
    items = [Routed(Fix("TG", T0 + timedelta(seconds=i), lat, lon, protocol="sim"), 1)
             for i, (lat, lon) in enumerate([(30.66, 104.06), (-33.9, 151.2), (0.0, -0.0),
                                             (89.999999, -179.999999), (1e-9, 180.0)])]
    assert store_positions(engine, items) == 5
    nan = float("nan")  # POINT(NaN NaN), which EWKB cannot write, and POINT(NaN 1)
    assert store_positions(engine, [Routed(Fix("TG", T0 + timedelta(hours=1), lat, lon,
                                               protocol="sim"), 1)
                                    for lat, lon in [(nan, nan)]]) == 1
    assert store_positions(engine, [Routed(Fix("TG", T0 + timedelta(hours=2), nan, 1.0,
                                               protocol="sim"), 1)]) == 1
    with engine.connect() as conn:
        same = conn.execute(text(
            "SELECT bool_and(ST_AsEWKT(geom) = ST_AsEWKT(ST_SetSRID(ST_MakePoint(lon, lat), "
            "4326))), bool_and(ST_SRID(geom) = 4326) FROM positions")).one()
    assert same == (True, True)
