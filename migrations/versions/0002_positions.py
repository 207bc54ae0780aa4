"""Positions: one row per (terminal, time); monthly range partitions on PostgreSQL.

Revision ID: 0002_positions
Revises: 0001_kernel
Create Date: 2026-11-23
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op

from fleet.db import UTCDateTime

revision = "0002_positions"
down_revision = "0001_kernel"
branch_labels = None
depends_on = None

PG_POSITIONS = """
CREATE TABLE positions (
    terminal_id varchar(40) NOT NULL,
    time timestamptz NOT NULL,
    vehicle_id integer,
    lat double precision NOT NULL,
    lon double precision NOT NULL,
    geom geometry(POINT, 4326),
    speed_kmh double precision NOT NULL,
    course double precision NOT NULL,
    altitude_m double precision,
    hdop double precision,
    satellites smallint,
    valid boolean NOT NULL,
    protocol varchar(16) NOT NULL,
    alarm bigint NOT NULL,
    status bigint NOT NULL,
    extras json NOT NULL,
    received_at timestamptz NOT NULL,
    CONSTRAINT pk_positions PRIMARY KEY (terminal_id, time)
) PARTITION BY RANGE (time)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_POSITIONS)
        # Rows outside every monthly partition (very old resends) land here, never fail.
        op.execute("CREATE TABLE positions_default PARTITION OF positions DEFAULT")
        op.create_index("ix_positions_vehicle_time", "positions", ["vehicle_id", "time"])
        return
    op.create_table(
        "positions",
        sa.Column("terminal_id", sa.String(40), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("vehicle_id", sa.Integer()),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("geom", geoalchemy2.Geometry("POINT", srid=4326, spatial_index=False)),
        sa.Column("speed_kmh", sa.Float(), nullable=False),
        sa.Column("course", sa.Float(), nullable=False),
        sa.Column("altitude_m", sa.Float()),
        sa.Column("hdop", sa.Float()),
        sa.Column("satellites", sa.SmallInteger()),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("alarm", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.BigInteger(), nullable=False),
        sa.Column("extras", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", "time", name="pk_positions"),
    )
    op.create_index("ix_positions_vehicle_time", "positions", ["vehicle_id", "time"])


def downgrade() -> None:
    op.drop_table("positions")
