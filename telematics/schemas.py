"""API schemas of telematics: live state and positions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
