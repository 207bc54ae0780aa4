"""Kernel: departments, users, vehicles, drivers, terminals, bindings, audit log.

Revision ID: 0001_kernel
Revises:
Create Date: 2026-11-23
"""

import geoalchemy2
import sqlalchemy as sa
from alembic import op

from fleet.db import UTCDateTime

revision = "0001_kernel"
down_revision = None
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    op.create_table(
        "departments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("full_name", sa.String(120), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", _enum("role", "staff", "approver", "dispatcher", "supervisor", "admin"),
                  nullable=False),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("locale", sa.String(16), nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "vehicles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("plate", sa.String(16), nullable=False, unique=True),
        sa.Column("vin", sa.String(17), nullable=False, unique=True),
        sa.Column("category", _enum("vehicle_category", "confidential", "emergency",
                                    "law_enforcement", "special_technical", "general",
                                    "dedicated"), nullable=False),
        sa.Column("brand_model", sa.String(80), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("energy_type", _enum("energy_type", "petrol", "diesel", "hybrid",
                                       "plug_in_hybrid", "electric", "fuel_cell"), nullable=False),
        sa.Column("displacement_l", sa.Float(), nullable=False),
        sa.Column("purchase_price_fen", sa.BigInteger(), nullable=False),
        sa.Column("purchase_date", sa.Date()),
        sa.Column("odometer_km", sa.Float(), nullable=False),
        sa.Column("home_garage", geoalchemy2.Geometry("POINT", srid=4326, spatial_index=False)),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("status", _enum("vehicle_status", "in_service", "maintenance", "transferred",
                                  "disposed"), nullable=False),
        sa.Column("marked", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "drivers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("employee_no", sa.String(32), nullable=False, unique=True),
        sa.Column("licence_class", _enum("licence_class", "A1", "A2", "A3", "B1", "B2", "C1",
                                         "C2"), nullable=False),
        sa.Column("phone", sa.String(20), nullable=False),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("status", _enum("driver_status", "active", "on_leave", "retired"),
                  nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "terminals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("protocol", _enum("terminal_protocol", "nmea-mqtt", "jt808"), nullable=False),
        sa.Column("phone", sa.String(20), unique=True),
        sa.Column("imei", sa.String(20)),
        sa.Column("secret_hash", sa.String(255)),
        sa.Column("auth_code", sa.String(64)),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "terminal_bindings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("terminal_id", sa.String(40), sa.ForeignKey("terminals.id"), index=True,
                  nullable=False),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), index=True,
                  nullable=False),
        sa.Column("bound_at", UTCDateTime(), nullable=False),
        sa.Column("unbound_at", UTCDateTime()),
        sa.Column("bound_by", sa.Integer(), sa.ForeignKey("users.id")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False, index=True),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(40), nullable=False),
        sa.Column("entity_id", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_log_entity", "audit_log", ["entity", "entity_id"])


def downgrade() -> None:
    for table in ("audit_log", "terminal_bindings", "terminals", "drivers", "vehicles", "users",
                  "departments"):
        op.drop_table(table)
