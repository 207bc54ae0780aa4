"""API schemas (pydantic) of the ledger, kept apart from the ORM models."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fleet.models import EnergyType, VehicleCategory
from fleet.schemas import Point, Strict
from ledger.models import CostCategory, EntryKind, RequestKind, RequestStatus


class EntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    chain: str
    seq: int
    kind: EntryKind
    recorded_at: datetime
    occurred_on: date
    period: str
    vehicle_id: int | None
    department_id: int | None
    category: str | None
    amount_fen: int
    distance_m: int
    reverses_id: int | None
    actor_id: int | None
    reason: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class EntryPage(BaseModel):
    items: list[EntryRead]
    total: int


class VerifyRead(BaseModel):
    chain: str
    ok: bool
    checked: int
    broken_seq: int | None
    broken_id: int | None
    reason: str


class CostCreate(Strict):
    vehicle_id: int = Field(gt=0)
    category: CostCategory
    amount_fen: int = Field(gt=0)
    occurred_on: date
    note: str = Field(default="", max_length=500)
    reference: str = Field(default="", max_length=120)


class CorrectionCreate(Strict):
    reason: str = Field(min_length=1, max_length=500)
    amount_fen: int | None = Field(default=None, ge=0)
    occurred_on: date | None = None


class OdometerCreate(Strict):
    vehicle_id: int = Field(gt=0)
    read_at: datetime
    odometer_m: int = Field(ge=0)
    note: str = Field(default="", max_length=500)


class StationSet(Strict):
    name: str = Field(min_length=1, max_length=80)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class EtcChargeRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    import_id: int
    line_no: int
    plate: str
    card_no: str
    vehicle_id: int
    entry_station: str
    entry_time: datetime
    exit_station: str
    exit_time: datetime
    amount_fen: int
    ledger_entry_id: int | None
    match_status: str
    trip_start: datetime | None
    trip_end: datetime | None
    match_note: str


class ImportRead(BaseModel):
    import_id: int
    rows: int
    total_fen: int
    matched: int
    unbooked: int
    unmatched: int


class DayMileageRead(BaseModel):
    day: date
    total_m: float
    booked_m: float
    unbooked_m: float
    trips: int


class MonthMileageRead(BaseModel):
    vehicle_id: int
    period: str
    total_m: float
    booked_m: float
    unbooked_m: float
    trips: int
    days: list[DayMileageRead]
    terminal_m: float | None
    manual_m: float | None
    flags: list[str]
    closed: bool


class RollupRead(BaseModel):
    department_id: int | None
    by_category: dict[str, int]
    running_fen: int
    purchase_fen: int


class QuotaCreate(Strict):
    department_id: int = Field(gt=0)
    category: VehicleCategory
    approved: int = Field(ge=0)
    effective_from: date
    document: str = Field(default="", max_length=120)


class QuotaStatusRead(BaseModel):
    department_id: int
    category: VehicleCategory
    approved: int | None
    count: int
    over: int
    room: int


class RuleWrite(Strict):
    price_cap_fen: int | None = Field(default=None, ge=0)
    displacement_cap_l: float | None = Field(default=None, ge=0)
    prefer_new_energy: bool | None = None
    renewal_min_age_years: int | None = Field(default=None, ge=0)
    renewal_min_km: int | None = Field(default=None, ge=0)
    active: bool | None = None


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    category: VehicleCategory
    price_cap_fen: int | None
    displacement_cap_l: float | None
    prefer_new_energy: bool
    renewal_min_age_years: int | None
    renewal_min_km: int | None
    active: bool


class PurchaseCreate(Strict):
    department_id: int = Field(gt=0)
    kind: RequestKind
    category: VehicleCategory
    brand_model: str = Field(min_length=1, max_length=80)
    price_fen: int = Field(gt=0, description="price excluding tax, fen")
    displacement_l: float = Field(default=0.0, ge=0, le=10)
    energy_type: EnergyType
    seats: int = Field(default=5, ge=1, le=60)
    replaces_vehicle_id: int | None = Field(default=None, gt=0)
    justification: str = Field(default="", max_length=1000)


class PurchaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    department_id: int
    kind: RequestKind
    category: VehicleCategory
    brand_model: str
    price_fen: int
    displacement_l: float
    energy_type: EnergyType
    seats: int
    replaces_vehicle_id: int | None
    justification: str
    status: RequestStatus
    decision_ok: bool
    reasons: list[dict[str, Any]]
    vehicle_id: int | None


class StepRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    actor_id: int | None
    action: str
    from_status: str | None
    to_status: str
    note: str


class Note(Strict):
    note: str = Field(default="", max_length=1000)


class Delivery(Strict):
    plate: str
    vin: str
    delivered_on: date
    price_fen: int | None = Field(default=None, gt=0)
    home_garage: Point | None = None


class TransferCreate(Strict):
    to_department_id: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=500)
    on: date | None = None
    document: str = Field(default="", max_length=120)


class MarkingSet(Strict):
    marked: bool
    reason: str = Field(default="", max_length=500)


class RetireCreate(Strict):
    reason: str = Field(min_length=1, max_length=500)
    on: date | None = None


class DisposalCreate(Strict):
    proceeds_fen: int = Field(ge=0)
    sold_on: date
    auction_ref: str = Field(default="", max_length=120)
    buyer: str = Field(default="", max_length=120)
