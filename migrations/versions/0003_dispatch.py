"""Dispatch: bookings, destinations, scope rules (seeded), approvals, assignments, trip
matches and private-use suspicions.

Revision ID: 0003_dispatch
Revises: 0002_positions
Create Date: 2026-11-24
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from fleet.db import UTCDateTime

revision = "0003_dispatch"
down_revision = "0002_positions"
branch_labels = None
depends_on = None

CATEGORIES = ("confidential", "emergency", "law_enforcement", "special_technical", "general",
              "dedicated")
OUTCOMES = ("in_scope", "needs_approval", "refused")
STAGES = ("department", "extra", "dispatch", "post_review", "done")

# Sensible defaults (保障范围): every deployment edits them through the rules API.
CENTRE = {"centre_lat": 30.66, "centre_lon": 104.06}
DEFAULT_RULES = [
    ("出市用车(>50公里)", "max_distance", {"km": 50, **CENTRE}, "needs_approval",
     "目的地距市中心超过50公里(出市用车),需上级审批"),
    ("远途用车(>300公里)", "max_distance", {"km": 300, **CENTRE}, "refused",
     "目的地距市中心超过300公里,不在平台保障范围内,请按差旅规定办理"),
    ("夜间用车", "night_hours", {"start_hour": 22, "end_hour": 6, "tz": "Asia/Shanghai"},
     "needs_approval", "夜间(22:00-06:00)用车,需上级审批"),
    ("执法执勤车辆专用", "reserved_category",
     {"vehicle_categories": ["law_enforcement"], "department_codes": ["market.enforce"]},
     "refused", "执法执勤车辆仅保障执法执勤单位"),
    ("其他事由", "purpose", {"purposes": ["other"]}, "needs_approval",
     "事由不属于调研、公务接待、重大活动、执法执勤、紧急会议和应急保障,需上级审批"),
]


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=32)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "bookings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("requester_id", sa.Integer(), sa.ForeignKey("users.id"), index=True,
                  nullable=False),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("purpose", _enum("booking_purpose", "research", "reception", "major_event",
                                   "law_enforcement", "emergency", "other"), nullable=False),
        sa.Column("urgent_tag", sa.String(20)),
        sa.Column("passengers", sa.Integer(), nullable=False),
        sa.Column("pickup_address", sa.String(200), nullable=False),
        sa.Column("pickup_lat", sa.Float(), nullable=False),
        sa.Column("pickup_lon", sa.Float(), nullable=False),
        sa.Column("start_at", UTCDateTime(), index=True, nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("return_trip", sa.Boolean(), nullable=False),
        sa.Column("vehicle_category", _enum("vehicle_category", *CATEGORIES)),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("status", _enum("booking_status", "draft", "submitted", "approved",
                                  "assigned", "in_progress", "completed", "rejected",
                                  "cancelled"), index=True, nullable=False),
        sa.Column("stage", _enum("approval_stage", *STAGES)),
        sa.Column("scope_outcome", _enum("scope_outcome", *OUTCOMES)),
        sa.Column("scope_reasons", sa.JSON(), nullable=False),
        sa.Column("review_pending", sa.Boolean(), nullable=False),
        sa.Column("submitted_at", UTCDateTime()),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("completed_at", UTCDateTime()),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "booking_stops",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("booking_id", sa.Integer(), sa.ForeignKey("bookings.id"), index=True,
                  nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(200), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
    )
    rules = op.create_table(
        "scope_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("kind", _enum("scope_rule_kind", "max_distance", "night_hours",
                                "reserved_category", "reserved_purpose", "purpose", "weekend"),
                  nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("outcome", _enum("scope_outcome", *OUTCOMES), nullable=False),
        sa.Column("message", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        *_timestamps(),
    )
    op.create_table(
        "booking_approvals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("booking_id", sa.Integer(), sa.ForeignKey("bookings.id"), index=True,
                  nullable=False),
        sa.Column("stage", _enum("approval_stage", *STAGES), nullable=False),
        sa.Column("decision", _enum("approval_decision", "approved", "rejected"),
                  nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_table(
        "booking_assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("booking_id", sa.Integer(), sa.ForeignKey("bookings.id"), index=True,
                  nullable=False),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), nullable=False),
        sa.Column("driver_id", sa.Integer(), sa.ForeignKey("drivers.id"), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("source", _enum("assignment_source", "manual", "scheduler"), nullable=False),
        sa.Column("assigned_by", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime()),
    )
    op.create_index("ix_booking_assignments_vehicle", "booking_assignments",
                    ["vehicle_id", "start_at"])
    op.create_index("ix_booking_assignments_driver", "booking_assignments",
                    ["driver_id", "start_at"])
    op.create_table(
        "trip_matches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), nullable=False),
        sa.Column("booking_id", sa.Integer(), sa.ForeignKey("bookings.id"), index=True),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("start_lat", sa.Float(), nullable=False),
        sa.Column("start_lon", sa.Float(), nullable=False),
        sa.Column("end_lat", sa.Float(), nullable=False),
        sa.Column("end_lon", sa.Float(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("matched_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("vehicle_id", "start_at", name="uq_trip_matches_vehicle_start"),
    )
    op.create_table(
        "private_use_suspicions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("vehicle_id", sa.Integer(), sa.ForeignKey("vehicles.id"), index=True,
                  nullable=False),
        sa.Column("department_id", sa.Integer(), sa.ForeignKey("departments.id"), index=True,
                  nullable=False),
        sa.Column("trip_match_id", sa.Integer(), sa.ForeignKey("trip_matches.id"), unique=True,
                  nullable=False),
        sa.Column("booking_id", sa.Integer(), sa.ForeignKey("bookings.id")),
        sa.Column("kind", _enum("suspicion_kind", "no_booking", "route_deviation"),
                  nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("start_at", UTCDateTime(), index=True, nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("status", _enum("suspicion_status", "open", "cleared", "confirmed"),
                  nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        *_timestamps(),
    )
    now = datetime.now(UTC)
    op.bulk_insert(rules, [
        {"name": name, "kind": kind, "params": params, "outcome": outcome, "message": message,
         "active": True, "created_at": now, "updated_at": now}
        for name, kind, params, outcome, message in DEFAULT_RULES
    ])


def downgrade() -> None:
    for table in ("private_use_suspicions", "trip_matches", "booking_assignments",
                  "booking_approvals", "scope_rules", "booking_stops", "bookings"):
        op.drop_table(table)
