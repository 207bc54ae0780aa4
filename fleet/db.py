"""Database: SQLAlchemy 2 engine and sessions for PostgreSQL+PostGIS and SQLite+SpatiaLite.

The caller owns the unit of work: service functions take a ``Session`` and never commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from fleet.settings import Settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SPATIALITE_LIBRARY = os.environ.get("SPATIALITE_LIBRARY_PATH", "mod_spatialite")


class Base(DeclarativeBase):
    """Declarative base of every ORM model (one MetaData, one naming convention)."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the backend.

    SQLite has no time zones; PostgreSQL returns aware values. This makes both the same.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    """Load SpatiaLite and set pragmas on every new SQLite connection.

    The standard library's sqlite3 on this platform cannot load extensions; pysqlite3 can.
    """
    dbapi_conn.enable_load_extension(True)
    dbapi_conn.load_extension(SPATIALITE_LIBRARY)
    dbapi_conn.enable_load_extension(False)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("SELECT count(*) FROM sqlite_master WHERE name='spatial_ref_sys'")
    if cur.fetchone()[0] == 0:
        cur.execute("SELECT InitSpatialMetadata(1, 'WGS84')")
    cur.close()


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """Create the engine for the configured backend (PostGIS or SpatiaLite)."""
    url = settings.effective_database_url
    if url.startswith("sqlite"):
        import pysqlite3.dbapi2 as sqlite_module  # extension loading enabled

        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(
            url.replace("sqlite://", "sqlite+pysqlite://", 1),
            module=sqlite_module,
            echo=settings.db_echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        # pysqlite's own transaction handling defers BEGIN; take it over so that
        # SAVEPOINT/rollback behave as on PostgreSQL (SQLAlchemy docs, "Serializable isolation").
        event.listen(engine, "connect", lambda c, _r: setattr(c, "isolation_level", None))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # The pool must hold as many connections as requests can be in flight (FastAPI runs
    # sync endpoints on a 40-thread pool): a smaller pool deadlocks under load, requests
    # holding connections while waiting for threads and threads waiting for connections.
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 40)
    engine = create_engine(url, echo=settings.db_echo, **kwargs)
    _ping_when_idle(engine, PING_IDLE_SECONDS)
    return engine


#: A pooled connection unused for longer than this is pinged before it is handed out.
PING_IDLE_SECONDS = 1.0


def _ping_when_idle(engine: Engine, idle_seconds: float) -> None:
    """Pessimistic disconnect handling for connections that sat idle, and only for those.

    ``pool_pre_ping`` pings on every checkout: one more round trip per API request (a tenth
    of a request's CPU, profiled under ``gongche bench api``). A connection checked in a
    moment ago is as good as a ping's answer; one that sat idle (across a database restart,
    say) is pinged and, when dead, replaced before anyone uses it. A restart under steady
    traffic still costs the request that meets the dead connection: SQLAlchemy then
    invalidates the whole pool, so every later checkout gets a fresh connection.
    """

    @event.listens_for(engine, "checkin")
    def _stamp(_dbapi_conn: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is None or time.monotonic() - last <= idle_seconds:
            return  # fresh from connect, or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
            dbapi_conn.rollback()
        except Exception as exc:
            raise DisconnectionError("idle connection failed its ping") from exc


def _sqlite_begin(conn: Any) -> None:
    """BEGIN, or BEGIN IMMEDIATE on a :func:`writing` engine.

    A deferred transaction that reads, then writes after another connection committed,
    fails at once with "database is locked" (busy_timeout cannot help a lock upgrade in WAL
    mode); an immediate one takes the write lock up front and waits its turn. Readers (health
    probes, reports) stay deferred so they never queue behind writers.
    """
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writing(engine: Engine) -> Engine:
    """The engine for units of work that write (API requests, writer, processor).

    On SQLite their transactions start with BEGIN IMMEDIATE; on PostgreSQL it is the same
    engine (MVCC and row locks need nothing of the kind).
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(sqlite_immediate=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Raise if the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
