"""Alembic environment: one migration history for PostgreSQL+PostGIS and SQLite+SpatiaLite."""

from __future__ import annotations

from alembic import context
from geoalchemy2 import alembic_helpers

import dispatch.models  # noqa: F401  (register every domain's tables on Base.metadata)
import ledger.models  # noqa: F401
import telematics.models  # noqa: F401
from fleet import models  # noqa: F401
from fleet.db import Base, make_engine
from fleet.settings import get_settings

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = make_engine(get_settings())
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
        include_object=alembic_helpers.include_object,
        process_revision_directives=alembic_helpers.writer,
        render_item=alembic_helpers.render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
