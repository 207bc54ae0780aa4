"""The position writer: Redis stream ``fixes`` → ``positions``, exactly once in effect.

It reads through a consumer group in batches, inserts with ``ON CONFLICT DO NOTHING`` on the
(terminal, time) key, commits, and only then acknowledges (XACK): a crash between commit and
ack replays the batch, which the key makes harmless. Entries left pending by a dead writer
are claimed (XAUTOCLAIM) after ``claim_idle_ms``. Malformed entries are counted, logged and
acknowledged so they never block the stream.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from prometheus_client import Counter
from sqlalchemy import Engine, bindparam, func, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fleet.heap import freeze_startup_heap
from fleet.logging import get_logger
from gateway.sink import STREAM, Routed, decode_entry
from telematics.models import Position

log = get_logger(__name__)
GROUP = "writers"

WRITTEN = Counter("gongche_positions_written_total", "Positions inserted")
DUPLICATES = Counter("gongche_positions_duplicate_total", "Stream entries already stored")
BAD_ENTRIES = Counter("gongche_stream_bad_entries_total", "Malformed stream entries skipped")

OnStored = Callable[[Sequence[Routed]], None]


def _sqlite_insert() -> Any:
    geom = func.MakePoint(bindparam("b_lon"), bindparam("b_lat"), 4326)  # SpatiaLite
    return sqlite_insert(Position.__table__).values(geom=geom).on_conflict_do_nothing(
        index_elements=["terminal_id", "time"]).returning(Position.__table__.c.terminal_id)


def position_row(item: Routed, received_at: datetime) -> dict[str, Any]:
    f = item.fix
    return {
        "terminal_id": f.terminal_id, "time": f.time, "vehicle_id": item.vehicle_id,
        "lat": f.lat, "lon": f.lon, "speed_kmh": f.speed_kmh, "course": f.course,
        "altitude_m": f.altitude_m, "hdop": f.hdop, "satellites": f.satellites,
        "valid": f.valid, "protocol": f.protocol, "alarm": f.alarm, "status": f.status,
        "extras": f.extras, "received_at": received_at, "b_lon": f.lon, "b_lat": f.lat,
    }


COPY_COLUMNS = ("terminal_id", "time", "vehicle_id", "lat", "lon", "speed_kmh", "course",
                "altitude_m", "hdop", "satellites", "valid", "protocol", "alarm", "status",
                "extras", "received_at")
# The binary COPY's wire types, column by column (json travels as its text in binary COPY)
COPY_TYPES = ("text", "timestamptz", "int4", "float8", "float8", "float8", "float8",
              "float8", "float8", "int2", "bool", "text", "int8", "int8", "text", "timestamptz")
_PG_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS positions_in "
             "(LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_PG_COPY = f"COPY positions_in ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_PG_MERGE = (f"INSERT INTO positions ({', '.join(COPY_COLUMNS)}, geom) "
             f"SELECT {', '.join(COPY_COLUMNS)}, ST_SetSRID(ST_MakePoint(lon, lat), 4326) "
             "FROM positions_in ON CONFLICT (terminal_id, time) DO NOTHING")
_STAGED = "gongche_positions_in"  # key in the pooled connection's info: staging table made

_INT2, _INT4, _INT8 = 1 << 15, 1 << 31, 1 << 63


def _float(v: Any, nullable: bool = False) -> float | None:
    t = type(v)
    if t is float:
        return v  # type: ignore[no-any-return]
    if t is int:
        return float(v)  # OverflowError (an ArithmeticError) for what float8 cannot hold
    if v is None and nullable:
        return None
    raise ValueError(f"not a number: {v!r}")


def _int(v: Any, bound: int, nullable: bool = False) -> int | None:
    if type(v) is int and -bound <= v < bound:
        return v  # type: ignore[no-any-return]
    if v is None and nullable:
        return None
    raise ValueError(f"not an integer of the column's range: {v!r}")


def _text(v: Any, length: int) -> str:
    if type(v) is str and len(v) <= length:
        return v  # type: ignore[no-any-return]
    raise ValueError(f"not a text of at most {length} characters: {v!r}")


def copy_row(item: Routed) -> tuple[Any, ...]:
    """The COPY row of ``item`` (all columns but ``received_at``), checked against the
    column types; ``ValueError`` (or ``OverflowError``) for a value they cannot hold.

    The check matters for the binary COPY: its integer dumpers wrap an out-of-range value
    silently (40,000 satellites arrive as -25,536) where the text format had the server
    refuse the batch. The writer checks each stream entry this way and skips (counts, logs,
    acknowledges) one that fails, like any malformed entry, instead of a batch that the
    database refuses again on every retry.
    """
    f = item.fix
    extras = f.extras
    if type(extras) is not dict:
        raise ValueError(f"extras is not an object: {extras!r}")
    try:  # orjson writes NaN/Infinity as null: the json column refuses them
        extras_json = orjson.dumps(extras).decode()
    except TypeError:  # e.g. an integer beyond 64 bits
        extras_json = json.dumps(extras, ensure_ascii=False, allow_nan=False)
    t = f.time
    if not isinstance(t, datetime) or t.tzinfo is None:
        raise ValueError(f"not an aware datetime: {t!r}")
    if type(f.valid) is not bool:
        raise ValueError(f"valid is not a boolean: {f.valid!r}")
    return (_text(f.terminal_id, 40), t, _int(item.vehicle_id, _INT4, True), _float(f.lat),
            _float(f.lon), _float(f.speed_kmh), _float(f.course), _float(f.altitude_m, True),
            _float(f.hdop, True), _int(f.satellites, _INT2, True), f.valid,
            _text(f.protocol, 16), _int(f.alarm, _INT8), _int(f.status, _INT8), extras_json)


_PG_DIRECT = (f"COPY positions ({', '.join(COPY_COLUMNS)}, geom) FROM STDIN "
              "(FORMAT BINARY)")
_DIRECT_TYPES = (*COPY_TYPES, "bytea")  # geom: its EWKB, what geometry reads in binary COPY
# EWKB of POINT(lon lat) with SRID 4326: little endian, type 1 with the SRID flag, srid, x, y —
# what ST_SetSRID(ST_MakePoint(lon, lat), 4326) is (tests/pipeline/test_writer.py)
_ewkb_point = struct.Struct("<BIIdd").pack
_EWKB_POINT = 0x20000001


def _store_pg(engine: Engine, rows: Sequence[tuple[Any, ...]], now: datetime) -> int:
    """Store ``rows`` (:func:`copy_row`) in one transaction, idempotently.

    First a binary COPY straight into ``positions``: COPY is all or nothing, so a batch
    holding any row already stored (a replay after a crash, another writer's claim) fails
    as a whole with a unique violation, is rolled back, and is stored again through the
    staging table with ``ON CONFLICT DO NOTHING`` (:func:`_store_pg_merge`) — the same rows
    end up stored either way. Ordinary batches never conflict, and for them the staging
    table's INSERT … SELECT … ON CONFLICT into the partitioned table was most of the
    database's work: ~400 µs per batch plus ~10 µs per row, about half of it with COPY alone.
    """
    import psycopg

    if any(r[3] != r[3] and r[4] != r[4] for r in rows):  # NaN, NaN: EWKB can only say
        return _store_pg_merge(engine, rows, now)  # POINT EMPTY, ST_MakePoint keeps NaNs
    try:
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(_PG_DIRECT) as copy:
                copy.set_types(_DIRECT_TYPES)
                write, point = copy.write_row, _ewkb_point
                for row in rows:
                    write((*row, now, point(1, _EWKB_POINT, 4326, row[4], row[3])))
            return len(rows)
    except psycopg.errors.UniqueViolation:
        return _store_pg_merge(engine, rows, now)


def _store_pg_merge(engine: Engine, rows: Sequence[tuple[Any, ...]], now: datetime) -> int:
    """Binary COPY into a per-session staging table, then one INSERT … ON CONFLICT DO
    NOTHING, in one transaction; returns the rows actually inserted.

    A multi-row INSERT with 19 parameters per row made the driver spend most of its time
    splitting the SQL text (1,800 rows/s). COPY streams the rows; in binary with the types
    given, psycopg packs each value in C instead of formatting it as text (and the extras
    object is serialised by orjson, not the json module): ~11 → ~3 µs of writer CPU per row.
    The staging table is created once per database session, not checked every batch.
    """
    with engine.begin() as conn:
        pooled = conn.connection
        cursor = pooled.driver_connection.cursor()  # type: ignore[union-attr]
        staged = pooled.info.get(_STAGED, False)
        if not staged:
            cursor.execute(_PG_STAGE)
        with cursor.copy(_PG_COPY) as copy:
            copy.set_types(COPY_TYPES)
            write = copy.write_row
            for row in rows:
                write((*row, now))
        cursor.execute(_PG_MERGE)
        inserted = int(cursor.rowcount)
    # only once committed: a rolled-back transaction takes the CREATE with it
    pooled.info[_STAGED] = True
    return inserted


def store_positions(engine: Engine, items: Sequence[Routed]) -> int:
    """Insert positions idempotently in one transaction; returns rows actually inserted.

    On PostgreSQL every item must pass :func:`copy_row` (else ``ValueError``, nothing
    stored)."""
    if not items:
        return 0
    now = datetime.now(UTC)
    if engine.dialect.name == "postgresql":
        return _store_pg(engine, [copy_row(i) for i in items], now)
    rows = [position_row(i, now) for i in items]
    # RETURNING counts the rows really inserted (executemany rowcounts differ by driver).
    with engine.begin() as conn:
        return len(conn.execute(_sqlite_insert(), rows).all())


def ensure_month_partitions(engine: Engine, around: datetime | None = None,
                            months_ahead: int = 2) -> list[str]:
    """Create monthly partitions of ``positions`` (PostgreSQL only) from last month on.

    Rows for months without a partition land in ``positions_default`` and are never lost.
    """
    if engine.dialect.name != "postgresql":
        return []
    around = around or datetime.now(UTC)
    created = []
    year, month = around.year, around.month - 1
    for _ in range(months_ahead + 2):
        if month == 0:
            year, month = year - 1, 12
        start = datetime(year, month, 1, tzinfo=UTC)
        ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
        end = datetime(ny, nm, 1, tzinfo=UTC)
        name = f"positions_{year:04d}_{month:02d}"
        try:
            with engine.begin() as conn:
                exists = conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar()
                if exists is None:
                    conn.execute(text(
                        f"CREATE TABLE {name} PARTITION OF positions "
                        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"))
                    created.append(name)
        except Exception as exc:  # e.g. rows for that month already in the default partition
            log.warning("partition_not_created", partition=name, error=str(exc)[:200])
        year, month = ny, nm
    return created


@dataclass
class StreamWriter:
    """One writer process (or thread) of the consumer group ``writers``."""

    client: redis.Redis
    engine: Engine
    stream: str = STREAM
    group: str = GROUP
    consumer: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    batch: int = 1000
    block_ms: int = 500
    claim_idle_ms: int = 30_000
    on_stored: OnStored | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _next_claim: float = 0.0

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def step(self) -> int:
        """Claim abandoned entries, read one batch, store, ack. Returns entries handled."""
        entries = self._claim() if time.monotonic() >= self._next_claim else []
        if not entries:
            entries = self._read()
        if not entries:
            return 0
        good: list[Routed] = []
        rows: list[tuple[Any, ...]] = []
        pg = self.engine.dialect.name == "postgresql"
        for entry_id, fields in entries:
            try:
                item = decode_entry(fields)
                if pg:  # checked here, so one bad entry is skipped, not the batch refused
                    rows.append(copy_row(item))
            except (ValueError, KeyError, TypeError, OverflowError) as exc:
                BAD_ENTRIES.inc()
                log.warning("bad_stream_entry", entry=_s(entry_id), error=str(exc)[:200])
                continue
            good.append(item)
        if not pg:
            inserted = store_positions(self.engine, good)
        else:
            inserted = _store_pg(self.engine, rows, datetime.now(UTC)) if rows else 0
        WRITTEN.inc(inserted)
        DUPLICATES.inc(len(good) - inserted)
        if self.on_stored and good:
            self.on_stored(good)
        self.client.xack(self.stream, self.group, *[e for e, _ in entries])
        return len(entries)

    def _read(self) -> list[tuple[Any, dict[Any, Any]]]:
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"},
                                       count=self.batch, block=self.block_ms)
        if not reply:
            return []
        return [(eid, fields) for eid, fields in reply[0][1] if fields is not None]

    def _claim(self) -> list[tuple[Any, dict[Any, Any]]]:
        reply = self.client.xautoclaim(self.stream, self.group, self.consumer,
                                       min_idle_time=self.claim_idle_ms, start_id="0-0",
                                       count=self.batch)
        claimed = reply[1] if reply else []
        if not claimed:  # nothing abandoned: look again in a while, not before every read
            # (an entry must be idle claim_idle_ms to be claimed; a tenth of it is prompt)
            self._next_claim = time.monotonic() + min(1.0, self.claim_idle_ms / 10_000)
        return [(eid, fields) for eid, fields in claimed if fields is not None]

    def drain(self, idle_rounds: int = 1) -> int:
        """Process until the stream has nothing new (tests, shutdown flush)."""
        total, idle = 0, 0
        while idle < idle_rounds:
            n = self.step()
            total += n
            idle = idle + 1 if n == 0 else 0
        return total

    def run(self) -> None:
        """Loop until :meth:`stop`; flushes what was read before returning."""
        self.ensure_group()
        ensure_month_partitions(self.engine)
        freeze_startup_heap()  # see fleet.heap: full collections skip the imported modules
        log.info("writer_started", consumer=self.consumer, stream=self.stream)
        while not self._stop.is_set():
            try:
                self.step()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("writer_redis_unavailable", error=str(exc)[:200])
                self._stop.wait(1.0)
            except Exception as exc:  # database down: entries stay pending, retried later
                log.error("writer_step_failed", error=str(exc)[:300])
                self._stop.wait(1.0)
        log.info("writer_stopped", consumer=self.consumer)

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> threading.Event:
        """Set when the writer is asked to stop (companions stop with it)."""
        return self._stop


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
