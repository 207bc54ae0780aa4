"""API schemas (pydantic) for bookings, scope rules, approvals, assignments, suspicions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dispatch.models import (
    ApprovalStage,
    AssignmentSource,
    BookingStatus,
    Decision,
    Purpose,
    RuleKind,
    ScopeOutcome,
    SuspicionKind,
    SuspicionStatus,
)
from fleet.models import VehicleCategory
from fleet.schemas import Page, Strict

__all__ = ["Page"]

#: Urgent tasks (防汛, 环保, 扶贫, 信访, 应急…) that may skip ahead of approval (事后审核).
URGENT_TAGS = ("防汛", "抗旱", "环保", "扶贫", "信访", "应急", "抢险", "救灾", "疫情防控")


class Place(Strict):
    """An address with its WGS-84 point."""

    address: str = Field(min_length=1, max_length=200)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class BookingBase(Strict):
    purpose: Purpose
    urgent_tag: str | None = Field(default=None, description=f"one of {', '.join(URGENT_TAGS)}")
    passengers: int = Field(ge=1, le=60)
    pickup: Place
    destinations: list[Place] = Field(min_length=1, max_length=10)
    start_at: datetime
    end_at: datetime
    return_trip: bool = True
    vehicle_category: VehicleCategory | None = None
    notes: str = Field(default="", max_length=2000)

    @field_validator("urgent_tag")
    @classmethod
    def _urgent(cls, v: str | None) -> str | None:
        if v is not None and v not in URGENT_TAGS:
            raise ValueError(f"unknown urgent task; use one of {', '.join(URGENT_TAGS)}")
        return v

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("time must carry a time zone (e.g. 2026-05-06T09:00:00+08:00)")
        return v


class BookingCreate(BookingBase):
    department_id: int | None = Field(default=None, gt=0,
                                      description="defaults to the requester's department")
    submit: bool = Field(default=False, description="submit at once instead of saving a draft")


class BookingUpdate(Strict):
    purpose: Purpose | None = None
    urgent_tag: str | None = None
    passengers: int | None = Field(default=None, ge=1, le=60)
    pickup: Place | None = None
    destinations: list[Place] | None = Field(default=None, min_length=1, max_length=10)
    start_at: datetime | None = None
    end_at: datetime | None = None
    return_trip: bool | None = None
    vehicle_category: VehicleCategory | None = None
    notes: str | None = Field(default=None, max_length=2000)
    version: int | None = None


class RuleHit(BaseModel):
    rule_id: int | None
    name: str
    outcome: ScopeOutcome
    message: str


class Evaluation(BaseModel):
    """The scope check (保障范围审核) of a booking or a draft."""

    outcome: ScopeOutcome
    reasons: list[RuleHit]


class ApprovalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    stage: ApprovalStage
    decision: Decision
    actor_id: int | None
    at: datetime
    reason: str


class AssignmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    booking_id: int
    vehicle_id: int
    driver_id: int
    start_at: datetime
    end_at: datetime
    active: bool
    source: AssignmentSource
    assigned_by: int | None
    assigned_at: datetime


class BookingRead(BaseModel):
    id: int
    requester_id: int
    department_id: int
    purpose: Purpose
    urgent_tag: str | None
    passengers: int
    pickup: Place
    destinations: list[Place]
    start_at: datetime
    end_at: datetime
    return_trip: bool
    vehicle_category: VehicleCategory | None
    notes: str
    status: BookingStatus
    stage: ApprovalStage | None
    scope_outcome: ScopeOutcome | None
    scope_reasons: list[dict[str, Any]]
    review_pending: bool
    submitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    distance_m: float
    version: int
    allowed: list[str] = Field(description="actions allowed next from this status")
    assignment: AssignmentRead | None = None


class Decide(Strict):
    reason: str = Field(default="", max_length=1000)
    version: int | None = Field(default=None, description="optimistic lock: the version read")


class Reason(Strict):
    reason: str = Field(min_length=1, max_length=1000)
    version: int | None = None


class Review(Strict):
    decision: Decision
    reason: str = Field(min_length=1, max_length=1000)


class AssignIn(Strict):
    vehicle_id: int = Field(gt=0)
    driver_id: int = Field(gt=0)
    reason: str = Field(default="", max_length=1000)
    version: int | None = None


class CompleteIn(Strict):
    distance_m: float | None = Field(default=None, ge=0)
    reason: str = Field(default="", max_length=1000)


class RuleBase(Strict):
    name: str = Field(min_length=1, max_length=80)
    kind: RuleKind
    params: dict[str, Any] = Field(default_factory=dict)
    outcome: ScopeOutcome
    message: str = Field(min_length=1, max_length=200)
    active: bool = True


class RuleCreate(RuleBase):
    pass


class RuleUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    params: dict[str, Any] | None = None
    outcome: ScopeOutcome | None = None
    message: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    kind: RuleKind
    params: dict[str, Any]
    outcome: ScopeOutcome
    message: str
    active: bool


class SuspicionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    vehicle_id: int
    department_id: int
    booking_id: int | None
    kind: SuspicionKind
    severity: str
    start_at: datetime
    end_at: datetime
    status: SuspicionStatus
    evidence: dict[str, Any]


class MatchRead(BaseModel):
    trip_start: datetime
    trip_end: datetime
    distance_m: float
    booking_id: int | None
    verdict: str
    suspicion_id: int | None


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor_id: int | None
    action: str
    entity: str
    entity_id: str
    reason: str
    detail: dict[str, Any]
