"""API schemas (pydantic) for organisation and assets, kept apart from the ORM models."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fleet.models import (
    DriverStatus,
    EnergyType,
    LicenceClass,
    Role,
    TerminalProtocol,
    VehicleCategory,
    VehicleStatus,
)

T = TypeVar("T")

# 中国大陆号牌: province abbreviation, letter, 5 (fuel) or 6 (new energy) characters.
PLATE_RE = re.compile(r"^[\u4e00-\u9fa5][A-Z][A-Z0-9]{5,6}$")
VIN_RE = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")  # ISO 3779: no I, O, Q
PHONE_RE = re.compile(r"^\+?[0-9]{5,20}$")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class Point(BaseModel):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- departments -------------------------------------------------------------------------
class DepartmentCreate(Strict):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=120)
    parent_id: int | None = Field(default=None, gt=0)


class DepartmentUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    parent_id: int | None = Field(default=None, gt=0)


class DepartmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str
    parent_id: int | None
    active: bool


# --- users -------------------------------------------------------------------------------
class UserCreate(Strict):
    username: str = Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    full_name: str = Field(default="", max_length=120)
    password: str = Field(min_length=8, max_length=128)
    role: Role
    department_id: int = Field(gt=0)
    locale: str = Field(default="zh-CN", pattern=r"^(zh-CN|en)$")


class UserUpdate(Strict):
    full_name: str | None = Field(default=None, max_length=120)
    password: str | None = Field(default=None, min_length=8, max_length=128)
    role: Role | None = None
    department_id: int | None = Field(default=None, gt=0)
    locale: str | None = Field(default=None, pattern=r"^(zh-CN|en)$")


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    username: str
    full_name: str
    role: Role
    department_id: int
    active: bool
    locale: str


# --- vehicles ----------------------------------------------------------------------------
class VehicleBase(Strict):
    category: VehicleCategory
    brand_model: str = Field(default="", max_length=80)
    seats: int = Field(ge=1, le=60)
    energy_type: EnergyType
    displacement_l: float = Field(default=0.0, ge=0, le=10)
    purchase_price_fen: int = Field(default=0, ge=0)
    purchase_date: date | None = None
    odometer_km: float = Field(default=0.0, ge=0)
    home_garage: Point | None = None
    department_id: int = Field(gt=0)
    marked: bool = True


class VehicleCreate(VehicleBase):
    plate: str = Field(description="号牌, e.g. 川A12345 or 川AD12345 (new energy)")
    vin: str

    @field_validator("plate")
    @classmethod
    def _plate(cls, v: str) -> str:
        v = v.strip().upper().replace(" ", "").replace("·", "")
        if not PLATE_RE.match(v):
            raise ValueError("not a Chinese licence plate (e.g. 川A12345 or 川AD12345)")
        return v

    @field_validator("vin")
    @classmethod
    def _vin(cls, v: str) -> str:
        v = v.strip().upper()
        if not VIN_RE.match(v):
            raise ValueError("VIN must be 17 characters, digits and letters except I, O, Q")
        return v


class VehicleUpdate(Strict):
    category: VehicleCategory | None = None
    brand_model: str | None = Field(default=None, max_length=80)
    seats: int | None = Field(default=None, ge=1, le=60)
    odometer_km: float | None = Field(default=None, ge=0)
    home_garage: Point | None = None
    department_id: int | None = Field(default=None, gt=0)
    status: VehicleStatus | None = None
    marked: bool | None = None
    version: int | None = Field(default=None, description="optimistic lock: the version read")


class VehicleRead(BaseModel):
    id: int
    plate: str
    vin: str
    category: VehicleCategory
    brand_model: str
    seats: int
    energy_type: EnergyType
    displacement_l: float
    purchase_price_fen: int
    purchase_date: date | None
    odometer_km: float
    home_garage: Point | None
    department_id: int
    status: VehicleStatus
    marked: bool
    version: int
    terminal_id: str | None = None


# --- drivers -----------------------------------------------------------------------------
class DriverShift(Strict):
    """A driver's shift (班次), local times; both ends or neither (the whole service day)."""

    shift_start: time | None = Field(default=None, description="local time, e.g. 07:00")
    shift_end: time | None = Field(default=None, description="local time, after shift_start")
    max_driving_minutes: int | None = Field(default=None, ge=30, le=16 * 60,
                                            description="most driving in a day (default 480)")

    @model_validator(mode="after")
    def _shift_in_order(self) -> DriverShift:
        if (self.shift_start is None) != (self.shift_end is None):
            raise ValueError("give both shift_start and shift_end, or neither")
        if self.shift_start is not None and self.shift_end is not None \
                and self.shift_end <= self.shift_start:
            raise ValueError("shift_end must be after shift_start (a shift ends the day it "
                             "starts)")
        return self


class DriverCreate(DriverShift):
    name: str = Field(min_length=1, max_length=60)
    employee_no: str = Field(min_length=1, max_length=32)
    licence_class: LicenceClass
    phone: str = Field(pattern=PHONE_RE.pattern)
    department_id: int = Field(gt=0)


class DriverUpdate(DriverShift):
    """Changes; a shift is replaced whole (send both ends), ``max_driving_minutes`` alone."""

    name: str | None = Field(default=None, min_length=1, max_length=60)
    licence_class: LicenceClass | None = None
    phone: str | None = Field(default=None, pattern=PHONE_RE.pattern)
    department_id: int | None = Field(default=None, gt=0)
    status: DriverStatus | None = None


class DriverRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    employee_no: str
    licence_class: LicenceClass
    phone: str
    department_id: int
    status: DriverStatus
    shift_start: time | None = None
    shift_end: time | None = None
    max_driving_minutes: int | None = None


# --- terminals ---------------------------------------------------------------------------
class TerminalCreate(Strict):
    id: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    protocol: TerminalProtocol
    phone: str | None = Field(default=None, pattern=r"^[0-9]{1,20}$")
    imei: str | None = Field(default=None, pattern=r"^[0-9]{15}$")
    secret: str | None = Field(default=None, min_length=8, max_length=128,
                               description="MQTT password (nmea-mqtt); stored hashed")
    vehicle_id: int | None = Field(default=None, gt=0)


class TerminalUpdate(Strict):
    phone: str | None = Field(default=None, pattern=r"^[0-9]{1,20}$")
    imei: str | None = Field(default=None, pattern=r"^[0-9]{15}$")
    secret: str | None = Field(default=None, min_length=8, max_length=128)


class TerminalBind(Strict):
    vehicle_id: int | None = Field(description="vehicle to bind; null unbinds")


class TerminalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    protocol: TerminalProtocol
    phone: str | None
    imei: str | None
    vehicle_id: int | None
    active: bool


class BindingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    terminal_id: str
    vehicle_id: int
    bound_at: datetime
    unbound_at: datetime | None


class Retire(Strict):
    reason: str = Field(default="", max_length=500)


class TokenRead(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


# --- errors ------------------------------------------------------------------------------
class FieldError(BaseModel):
    """One offending field of a request (or of a row of an imported file)."""

    field: str = Field(description="dotted path of the field, e.g. destinations.0.lat")
    reason: str
    line: int | None = Field(None, description="line of the imported file, for file imports")


class ErrorResponse(BaseModel):
    """The body of every error answer (4xx): a code for programs, a message for people.

    ``error`` is one of unauthorized (401), forbidden (403), not_found (404), conflict (409),
    invalid or plan_invalid (422), too_many_requests (429), or the HTTP reason in snake case
    for errors of the HTTP layer itself (method_not_allowed, request_entity_too_large…).
    Some errors add context, e.g. ``field`` (the culprit of an ``invalid``), ``status`` and
    ``allowed`` (a booking's state and the actions it allows, with a ``conflict``).
    """

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="machine-readable code, e.g. invalid, not_found, conflict")
    detail: str = Field(description="what went wrong, in words a person can act on")
    field: str | None = Field(None, description="the field at fault (invalid requests)")
    errors: list[FieldError] | None = Field(
        None, description="every offending field (request validation, file imports)")
