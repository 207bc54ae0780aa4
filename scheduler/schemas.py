"""API schemas of the day planner (``/api/plans``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field


class PlanOptions(BaseModel):
    time_limit: float = Field(default=10.0, gt=0, le=60, description="solver time limit, seconds")
    include_assigned: bool = Field(
        default=True,
        description="bookings already assigned or under way that day stay on their car as "
                    "frozen legs (false: re-plan them too — preview only)")


class PlanRequest(BaseModel):
    day: date = Field(description="the day to plan (Asia/Shanghai)")
    options: PlanOptions = Field(default_factory=lambda: PlanOptions())
    preview: bool = Field(default=True, description="false: commit the plan's assignments at once")
    #: The console's spelling: ``commit=true`` is ``preview=false`` (wins when given).
    commit: bool | None = None
    reason: str = ""

    @property
    def is_preview(self) -> bool:
        return not self.commit if self.commit is not None else self.preview


class StopOut(BaseModel):
    kind: Literal["start", "pickup", "delivery", "end"]
    booking_id: int | None
    address: str
    lat: float
    lon: float
    arrival: datetime
    start: datetime
    departure: datetime


class RouteOut(BaseModel):
    vehicle_id: int
    plate: str
    category: str
    driver_id: int | None
    driver_name: str | None
    bookings: list[int]
    #: bookings that were already assigned / under way (kept as they are)
    frozen: list[int]
    stops: list[StopOut]
    km: float
    empty_km: float


class UnservedOut(BaseModel):
    booking_id: int
    code: str
    reason: str
    reason_zh: str


class AssignmentItem(BaseModel):
    booking_id: int
    vehicle_id: int
    driver_id: int
    #: booking version read when planning; a booking changed since is refused (409)
    version: int | None = None
    #: the booking's window (informative)
    start_at: datetime | None = None
    end_at: datetime | None = None


class PlanOut(BaseModel):
    day: date
    status: Literal["preview", "committed"]
    valid: bool
    bookings: int
    served: int
    vehicles_used: int
    vehicles_available: int
    drivers_available: int
    km: float
    empty_km: float
    routes: list[RouteOut]
    unserved: list[UnservedOut]
    #: what ``POST /api/plans/commit`` takes (new assignments only, frozen legs excluded)
    assignments: list[AssignmentItem]
    solve_seconds: float
    engines: str
    log: list[str]


class CommitRequest(BaseModel):
    assignments: list[AssignmentItem] = Field(min_length=1)
    reason: str = ""


class CommitOut(BaseModel):
    committed: list[AssignmentItem]


class InsertRequest(BaseModel):
    booking_id: int
    commit: bool = False
    allow_preemption: bool = True
    reason: str = ""


class BumpOut(BaseModel):
    booking_id: int
    moved_to_vehicle_id: int | None
    moved_to_plate: str | None
    moved_to_driver_id: int | None


class InsertOut(BaseModel):
    booking_id: int
    inserted: bool
    committed: bool
    vehicle_id: int | None = None
    plate: str | None = None
    driver_id: int | None = None
    driver_name: str | None = None
    added_km: float = 0.0
    route: RouteOut | None = None
    bumped: list[BumpOut] = []
    unserved: UnservedOut | None = None
    seconds: float
