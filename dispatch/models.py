"""Dispatch ORM models: bookings (用车申请), service-scope rules (保障范围), approvals (审批),
assignments (派车), trip matches (行程匹配) and private-use suspicions (公车私用疑点).

Points are stored as WGS-84 lat/lon floats (portable to both backends, nothing spatial is
queried in SQL here).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet.db import Base, UTCDateTime, utcnow
from fleet.models import TimestampMixin, VehicleCategory, _enum


class Purpose(enum.StrEnum):
    """用车事由 — the purpose categories of the service scope (保障范围)."""

    research = "research"  # 调研
    reception = "reception"  # 公务接待
    major_event = "major_event"  # 重大活动
    law_enforcement = "law_enforcement"  # 执法执勤
    emergency = "emergency"  # 紧急会议和应急保障
    other = "other"  # 其他


PURPOSE_ZH = {
    Purpose.research: "调研",
    Purpose.reception: "公务接待",
    Purpose.major_event: "重大活动",
    Purpose.law_enforcement: "执法执勤",
    Purpose.emergency: "紧急会议和应急保障",
    Purpose.other: "其他",
}


class BookingStatus(enum.StrEnum):
    draft = "draft"  # 草稿
    submitted = "submitted"  # 已提交 (待审批)
    approved = "approved"  # 已批准
    assigned = "assigned"  # 已派车
    in_progress = "in_progress"  # 执行中
    completed = "completed"  # 已完成
    rejected = "rejected"  # 已驳回
    cancelled = "cancelled"  # 已取消


class ScopeOutcome(enum.StrEnum):
    in_scope = "in_scope"  # 符合保障范围
    needs_approval = "needs_approval"  # 需上级审批
    refused = "refused"  # 不予保障


class ApprovalStage(enum.StrEnum):
    department = "department"  # 单位审批
    extra = "extra"  # 上级加签 (out-of-scope extras)
    dispatch = "dispatch"  # 调度审核
    post_review = "post_review"  # 紧急任务事后审核
    done = "done"


class Decision(enum.StrEnum):
    approved = "approved"
    rejected = "rejected"


class RuleKind(enum.StrEnum):
    max_distance = "max_distance"  # 出市/远距离: params {km, centre_lat, centre_lon}
    night_hours = "night_hours"  # 夜间用车: params {start_hour, end_hour, tz}
    reserved_category = "reserved_category"  # 专用车型: {vehicle_categories, department_codes}
    reserved_purpose = "reserved_purpose"  # 专属事由: {purposes, department_codes}
    purpose = "purpose"  # 事由本身: params {purposes}
    weekend = "weekend"  # 节假日/周末: params {weekdays: [5, 6], tz}


class AssignmentSource(enum.StrEnum):
    manual = "manual"
    scheduler = "scheduler"


class SuspicionKind(enum.StrEnum):
    no_booking = "no_booking"  # 无单出车
    route_deviation = "route_deviation"  # 偏离申请路线/目的地


class SuspicionStatus(enum.StrEnum):
    open = "open"
    cleared = "cleared"
    confirmed = "confirmed"


class Booking(TimestampMixin, Base):
    """A request for a car (用车申请)."""

    __tablename__ = "bookings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True,
                                               nullable=False)
    purpose: Mapped[Purpose] = mapped_column(_enum(Purpose, "booking_purpose"), nullable=False)
    urgent_tag: Mapped[str | None] = mapped_column(String(20))  # 防汛, 应急, … (skip ahead)
    passengers: Mapped[int] = mapped_column(Integer, nullable=False)
    pickup_address: Mapped[str] = mapped_column(String(200), nullable=False)
    pickup_lat: Mapped[float] = mapped_column(Float, nullable=False)
    pickup_lon: Mapped[float] = mapped_column(Float, nullable=False)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, nullable=False)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    return_trip: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    vehicle_category: Mapped[VehicleCategory | None] = mapped_column(
        _enum(VehicleCategory, "vehicle_category"))
    notes: Mapped[str] = mapped_column(Text, default="", nullable=False)
    status: Mapped[BookingStatus] = mapped_column(
        _enum(BookingStatus, "booking_status"), default=BookingStatus.draft, nullable=False,
        index=True)
    stage: Mapped[ApprovalStage | None] = mapped_column(_enum(ApprovalStage, "approval_stage"))
    scope_outcome: Mapped[ScopeOutcome | None] = mapped_column(
        _enum(ScopeOutcome, "scope_outcome"))
    scope_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list,
                                                                 nullable=False)
    review_pending: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    distance_m: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    stops: Mapped[list[BookingStop]] = relationship(
        order_by="BookingStop.seq", cascade="all, delete-orphan", lazy="selectin")
    __mapper_args__ = {"version_id_col": version}


class BookingStop(Base):
    """A destination of a booking (目的地), in visiting order."""

    __tablename__ = "booking_stops"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True,
                                            nullable=False)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    address: Mapped[str] = mapped_column(String(200), nullable=False)
    lat: Mapped[float] = mapped_column(Float, nullable=False)
    lon: Mapped[float] = mapped_column(Float, nullable=False)


class ScopeRule(TimestampMixin, Base):
    """A service-scope rule (保障范围审核规则): data, edited by admins."""

    __tablename__ = "scope_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    kind: Mapped[RuleKind] = mapped_column(_enum(RuleKind, "scope_rule_kind"), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
    outcome: Mapped[ScopeOutcome] = mapped_column(_enum(ScopeOutcome, "scope_outcome"),
                                                  nullable=False)
    message: Mapped[str] = mapped_column(String(200), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)


class Approval(Base):
    """One decision in the approval chain (审批记录): who, when, why."""

    __tablename__ = "booking_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True,
                                            nullable=False)
    stage: Mapped[ApprovalStage] = mapped_column(_enum(ApprovalStage, "approval_stage"),
                                                 nullable=False)
    decision: Mapped[Decision] = mapped_column(_enum(Decision, "approval_decision"),
                                               nullable=False)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)


class Assignment(Base):
    """A car and a driver assigned to a booking (派车单) for its window."""

    __tablename__ = "booking_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True,
                                            nullable=False)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), nullable=False)
    driver_id: Mapped[int] = mapped_column(ForeignKey("drivers.id"), nullable=False)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    source: Mapped[AssignmentSource] = mapped_column(
        _enum(AssignmentSource, "assignment_source"), nullable=False)
    assigned_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_booking_assignments_vehicle", "vehicle_id", "start_at"),
        Index("ix_booking_assignments_driver", "driver_id", "start_at"),
    )


class TripMatch(Base):
    """A telematics trip and the booking it served (or none): 行程与申请的匹配."""

    __tablename__ = "trip_matches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), nullable=False)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    start_lat: Mapped[float] = mapped_column(Float, nullable=False)
    start_lon: Mapped[float] = mapped_column(Float, nullable=False)
    end_lat: Mapped[float] = mapped_column(Float, nullable=False)
    end_lon: Mapped[float] = mapped_column(Float, nullable=False)
    distance_m: Mapped[float] = mapped_column(Float, nullable=False)
    closed: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    verdict: Mapped[str] = mapped_column(String(20), nullable=False)  # served/deviation/…
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    __table_args__ = (UniqueConstraint("vehicle_id", "start_at",
                                       name="uq_trip_matches_vehicle_start"),)


class Suspicion(TimestampMixin, Base):
    """A private-use suspicion (公车私用疑点) with its evidence bundle (证据)."""

    __tablename__ = "private_use_suspicions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True,
                                            nullable=False)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True,
                                               nullable=False)
    trip_match_id: Mapped[int] = mapped_column(ForeignKey("trip_matches.id"), unique=True,
                                               nullable=False)
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    kind: Mapped[SuspicionKind] = mapped_column(_enum(SuspicionKind, "suspicion_kind"),
                                                nullable=False)
    severity: Mapped[str] = mapped_column(String(10), nullable=False)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True, nullable=False)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    status: Mapped[SuspicionStatus] = mapped_column(
        _enum(SuspicionStatus, "suspicion_status"), default=SuspicionStatus.open,
        nullable=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)
