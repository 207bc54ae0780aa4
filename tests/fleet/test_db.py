"""The database layer on both backends: migrations, spatial columns, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from geoalchemy2.shape import to_shape
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from fleet import migrate
from fleet.db import Base, make_engine
from fleet.models import AuditEntry, Vehicle
from fleet.settings import Settings
from tests import factories as f
from tests.conftest import _postgis_settings


def test_migrations_reach_head_and_match_models(engine: Engine) -> None:
    assert migrate.current(engine) is not None
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = [d for d in compare_metadata(ctx, Base.metadata)
                if not _is_spatial_noise(d)]
    assert diff == [], f"models and migrations disagree: {diff}"


def _is_spatial_noise(d: object) -> bool:
    """Tables the spatial extensions own, and the monthly partitions of ``positions``."""
    text_d = str(d)
    if "Table('positions_" in text_d or "table=<positions_" in text_d:
        return True
    spatial = ("spatial_ref_sys", "geometry_columns", "spatialite", "idx_", "sql_statements_log",
               "SpatialIndex", "ElementaryGeometries", "KNN", "data_licenses", "views_geometry",
               "virts_geometry", "geom_cols", "vector_layers", "sqlite_sequence", "topology",
               "spatial_ref_sys_aux", "alembic_version", "layer_statistics", "ISO_metadata",
               "rl2map", "SE_", "wms_", "raster_", "networks", "tmp_")
    return any(s in text_d for s in spatial)


def test_spatial_point_round_trip(db: Session) -> None:
    dep = f.department(db)
    admin = f.user(db, "admin", dep)  # type: ignore[arg-type]
    v = f.vehicle(db, admin, dep, home_garage={"lat": 30.5, "lon": 104.1})
    db.flush()
    db.expire_all()
    stored = db.get(Vehicle, v.id)
    assert stored is not None
    pt = to_shape(stored.home_garage)
    assert (round(pt.y, 6), round(pt.x, 6)) == (30.5, 104.1)
    # the database itself understands the geometry (PostGIS / SpatiaLite functions)
    x = db.scalar(select(text("ST_X(home_garage)")).select_from(Vehicle).where(Vehicle.id == v.id))
    assert round(float(x), 6) == 104.1


def test_times_are_utc_aware_on_both_backends(db: Session) -> None:
    beijing = timezone(timedelta(hours=8))
    entry = AuditEntry(action="t", entity="t", entity_id="1", reason="", detail={},
                       at=datetime(2026, 1, 1, 8, 0, tzinfo=beijing))
    db.add(entry)
    db.flush()
    db.expire_all()
    got = db.get(AuditEntry, entry.id)
    assert got is not None
    assert got.at == datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert got.at.tzinfo is not None


def test_downgrade_and_upgrade_again(
    request: pytest.FixtureRequest, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """The whole history applies in both directions, on a scratch database of each backend."""
    if settings.is_sqlite:
        scratch = f"sqlite:///{tmp_path / 'scratch.db'}"
    else:
        pg = request.getfixturevalue("pg_server")
        scratch = _postgis_settings(pg, "gongche_scratch").database_url
    e = make_engine(settings.model_copy(update={"database_url": scratch}))
    migrate.upgrade(e)
    migrate.downgrade(e, "base")
    assert migrate.current(e) is None
    migrate.upgrade(e)
    assert migrate.current(e) == migrate.current(engine)
    e.dispose()
