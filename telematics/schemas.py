"""API schemas of telematics: live state, positions, trips, stops, events, mileage, reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel

LiveStatus = Literal["moving", "parked", "offline"]


class LiveVehicle(BaseModel):
    """A car on the live map (指挥): where it is and what it is doing."""

    vehicle_id: int
    plate: str
    department_id: int
    category: str
    terminal_id: str
    time: datetime
    lat: float
    lon: float
    speed_kmh: float
    course: float
    status: LiveStatus


class PositionRead(BaseModel):
    terminal_id: str
    vehicle_id: int | None
    time: datetime
    lat: float
    lon: float
    speed_kmh: float
    course: float
    altitude_m: float | None
    hdop: float | None
    satellites: int | None
    valid: bool


class TripRead(BaseModel):
    """A trip (行程) with distance (metres), durations and speeds."""

    id: int
    vehicle_id: int | None
    terminal_id: str
    start_time: datetime
    end_time: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    duration_s: float
    max_speed_kmh: float
    avg_speed_kmh: float
    odometer_m: float | None
    odometer_flag: bool
    closed: bool
    end_reason: str
    provisional: bool


class StopRead(BaseModel):
    """A stop (停车)."""

    id: int
    vehicle_id: int | None
    terminal_id: str
    start_time: datetime
    end_time: datetime
    lat: float
    lon: float
    duration_s: float
    reason: str
    closed: bool
    provisional: bool


class EventRead(BaseModel):
    id: int
    vehicle_id: int | None
    terminal_id: str
    type: str
    time: datetime
    lat: float | None
    lon: float | None
    value: float | None
    threshold: float | None
    fence_id: int | None
    detail: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventRead]
    total: int
    offset: int
    limit: int


class OdometerRead(BaseModel):
    computed_km: float
    odometer_km: float | None
    diff_km: float | None
    diff_pct: float | None
    flagged: bool


class MileageRead(BaseModel):
    """Mileage of one vehicle over a period, from stored positions and trips."""

    vehicle_id: int
    start: datetime
    end: datetime
    total_km: float
    trips_km: float
    gaps_km: float
    stored_trips_km: float
    trips: int
    per_day_km: dict[str, float]
    odometer: OdometerRead
    rejected: dict[str, int]


class RecomputeRead(BaseModel):
    trips: int
    stops: int


class ReportRow(BaseModel):
    """One line of the mileage report: a vehicle or department over one day or month."""

    group: str
    vehicle_id: int | None = None
    plate: str | None = None
    department_id: int | None = None
    period: str
    km: float
    trips: int
    driving_s: float
    parked_s: float
    events: dict[str, int]


class HolidayIn(BaseModel):
    name: str = ""
    workday: bool = False


class HolidayRead(HolidayIn):
    day: date
