"""Telematics: geofences, trips, stops, events and the holiday calendar.

Revision ID: 0005_telematics
Revises: 0002_positions
Create Date: 2026-11-24
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op

from fleet.db import UTCDateTime

revision = "0005_telematics"
down_revision = "0002_positions"
branch_labels = None
depends_on = None


def _vehicle_fk() -> sa.Column:
    return sa.Column("vehicle_id", sa.Integer(),
                     sa.ForeignKey("vehicles.id", ondelete="SET NULL"))


def upgrade() -> None:
    op.create_table(
        "geofences",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("geom", geoalchemy2.Geometry("GEOMETRY", srid=4326, spatial_index=False),
                  nullable=False),
        sa.Column("radius_m", sa.Float()),
        sa.Column("speed_limit_kmh", sa.Float()),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "trips",
        sa.Column("id", sa.Integer(), primary_key=True),
        _vehicle_fk(),
        sa.Column("terminal_id", sa.String(40), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=False),
        sa.Column("start_lat", sa.Float(), nullable=False),
        sa.Column("start_lon", sa.Float(), nullable=False),
        sa.Column("end_lat", sa.Float(), nullable=False),
        sa.Column("end_lon", sa.Float(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("max_speed_kmh", sa.Float(), nullable=False),
        sa.Column("avg_speed_kmh", sa.Float(), nullable=False),
        sa.Column("odometer_m", sa.Float()),
        sa.Column("odometer_flag", sa.Boolean(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("end_reason", sa.String(8), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_trips_terminal_start", "trips", ["terminal_id", "start_time"])
    op.create_index("ix_trips_vehicle_start", "trips", ["vehicle_id", "start_time"])
    op.create_table(
        "stops",
        sa.Column("id", sa.Integer(), primary_key=True),
        _vehicle_fk(),
        sa.Column("terminal_id", sa.String(40), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=False),
        sa.Column("end_time", UTCDateTime(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("raw_start", UTCDateTime()),
        sa.Column("confirm_time", UTCDateTime()),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("provisional", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_stops_terminal_start", "stops", ["terminal_id", "start_time"])
    op.create_index("ix_stops_vehicle_start", "stops", ["vehicle_id", "start_time"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        _vehicle_fk(),
        sa.Column("terminal_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("lat", sa.Float()),
        sa.Column("lon", sa.Float()),
        sa.Column("value", sa.Float()),
        sa.Column("threshold", sa.Float()),
        sa.Column("fence_id", sa.Integer()),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("terminal_id", "type", "time", "key", name="uq_events_natural"),
    )
    op.create_index("ix_events_vehicle_time", "events", ["vehicle_id", "time"])
    op.create_index("ix_events_type_time", "events", ["type", "time"])
    op.create_table(
        "holidays",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("workday", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    for table in ("holidays", "events", "stops", "trips", "geofences"):
        op.drop_table(table)
