"""Test fixtures: real PostgreSQL+PostGIS, Redis and Mosquitto on private ports, and the
embedded SpatiaLite backend; every database test runs on both backends.

Each database test runs inside a transaction that is rolled back afterwards (services and
API requests commit to savepoints), so tests share one migrated database per backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from fleet import migrate
from fleet.app import create_app
from fleet.db import make_engine
from fleet.settings import Settings
from tests.services import Mosquitto, Postgres, Redis

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("GONGCHE_MODE", "test")
os.environ.setdefault("GONGCHE_SECRET_KEY", SECRET)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Postgres]:
    server = Postgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = Redis().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mqtt_server() -> Iterator[Mosquitto]:
    server = Mosquitto().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: Redis) -> Iterator[str]:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


def _postgis_settings(pg: Postgres, dbname: str) -> Settings:
    admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {dbname}"))
        conn.execute(text(f"CREATE DATABASE {dbname}"))
    admin.dispose()
    return Settings(mode="test", secret_key=SECRET, database_url=pg.url(dbname))


def _spatialite_settings(tmp: Path) -> Settings:
    return Settings(mode="test", secret_key=SECRET, database_url=f"sqlite:///{tmp / 'test.db'}")


@pytest.fixture(scope="session", params=["postgis", "spatialite"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Settings, Engine]]:
    """A migrated database per backend, shared by the session: (settings, engine)."""
    if request.param == "postgis":
        pg: Postgres = request.getfixturevalue("pg_server")
        settings = _postgis_settings(pg, "gongche_test")
    else:
        settings = _spatialite_settings(tmp_path_factory.mktemp("spatialite"))
    engine = make_engine(settings)
    migrate.upgrade(engine)
    yield settings, engine
    engine.dispose()


@pytest.fixture
def settings(backend: tuple[Settings, Engine]) -> Settings:
    return backend[0]


@pytest.fixture
def engine(backend: tuple[Settings, Engine]) -> Engine:
    return backend[1]


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    conn = engine.connect()
    outer = conn.begin()
    yield conn
    outer.rollback()
    conn.close()


@pytest.fixture
def session_factory(connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(bind=connection, join_transaction_mode="create_savepoint",
                        expire_on_commit=False)


@pytest.fixture
def db(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    session = session_factory()
    yield session
    session.close()


@pytest.fixture
def app(settings: Settings, engine: Engine, session_factory: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    return create_app(settings, engine=engine, session_factory=session_factory)


@pytest.fixture
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as c:
        yield c
