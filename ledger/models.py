"""Ledger storage (台账): the hash-chained entries, ETC charges, odometer readings, quotas
(编制核定), purchase-control rules and requests (控购).

Only ``ledger_entries`` is append-only (database triggers refuse UPDATE and DELETE); the other
tables are operational records whose money effects are booked as ledger entries.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleet.db import Base, UTCDateTime, utcnow
from fleet.models import EnergyType, VehicleCategory, _enum


class EntryKind(enum.StrEnum):
    """What a ledger entry records."""

    cost = "cost"  # 运行维护费 (fuel, maintenance, insurance, tolls, parking …)
    purchase = "purchase"  # 购置费
    correction = "correction"  # 冲正: a compensating entry
    closing = "closing"  # 月结
    transfer = "transfer"  # 移交
    marking = "marking"  # 标识化
    retirement = "retirement"  # 报废/退出
    disposal = "disposal"  # 处置 (拍卖)
    quota = "quota"  # 编制核定
    genesis = "genesis"


class CostCategory(enum.StrEnum):
    """Cost categories of 运行维护费 plus purchase and disposal proceeds."""

    fuel = "fuel"  # 燃油费
    charging = "charging"  # 充电费
    maintenance = "maintenance"  # 维修保养费
    insurance = "insurance"  # 保险费
    toll = "toll"  # 通行费
    parking = "parking"  # 停车费
    other = "other"  # 其他
    purchase = "purchase"  # 购置费
    disposal_proceeds = "disposal_proceeds"  # 拍卖收入


RUNNING_CATEGORIES = (CostCategory.fuel, CostCategory.charging, CostCategory.maintenance,
                      CostCategory.insurance, CostCategory.toll, CostCategory.parking,
                      CostCategory.other)

COST_ZH = {
    CostCategory.fuel: "燃油费", CostCategory.charging: "充电费",
    CostCategory.maintenance: "维修保养费", CostCategory.insurance: "保险费",
    CostCategory.toll: "通行费", CostCategory.parking: "停车费", CostCategory.other: "其他",
    CostCategory.purchase: "购置费", CostCategory.disposal_proceeds: "处置收入",
}


class MatchStatus(enum.StrEnum):
    matched = "matched"  # 已匹配行程 (booked)
    unbooked = "unbooked"  # 匹配到未预约行程 — anomaly
    unmatched = "unmatched"  # 无对应行程 — anomaly
    pending = "pending"  # not matched yet


class RequestKind(enum.StrEnum):
    purchase = "purchase"  # 新增配备
    renewal = "renewal"  # 更新


class RequestStatus(enum.StrEnum):
    submitted = "submitted"
    approved = "approved"
    refused = "refused"
    delivered = "delivered"
    withdrawn = "withdrawn"


class ChainHead(Base):
    """The head of each hash chain; appends lock this row so the chain never forks."""

    __tablename__ = "ledger_chain_heads"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


class LedgerEntry(Base):
    """One append-only ledger entry (台账记录), hash-chained to its predecessor.

    ``hash`` = SHA-256 over the canonical JSON of the entry's content, its sequence number and
    ``prev_hash`` (the previous entry's ``hash``). Corrections are new entries
    (``reverses_id``), never updates.
    """

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chain: Mapped[str] = mapped_column(String(32), nullable=False, default="main")
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[EntryKind] = mapped_column(_enum(EntryKind, "ledger_entry_kind"),
                                            nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    occurred_on: Mapped[date] = mapped_column(Date, nullable=False)
    period: Mapped[str] = mapped_column(String(7), nullable=False, index=True)  # YYYY-MM
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    category: Mapped[str | None] = mapped_column(String(32))
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    distance_m: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text, nullable=False, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        UniqueConstraint("chain", "seq", name="uq_ledger_entries_chain_seq"),
        Index("ix_ledger_entries_vehicle_period", "vehicle_id", "period"),
    )


class OdometerReading(Base):
    """A manual odometer reading (里程表读数), e.g. at maintenance or month end."""

    __tablename__ = "ledger_odometer_readings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    read_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    odometer_m: Mapped[int] = mapped_column(BigInteger, nullable=False)
    source: Mapped[str] = mapped_column(String(32), nullable=False, default="manual")
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")


class EtcStation(Base):
    """An expressway toll station (收费站) with optional WGS-84 coordinates."""

    __tablename__ = "ledger_etc_stations"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)


class EtcImport(Base):
    """One imported toll statement (ETC 通行账单)."""

    __tablename__ = "ledger_etc_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    total_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)


class EtcCharge(Base):
    """One toll charge (通行费) from a statement, matched to the trip that explains it."""

    __tablename__ = "ledger_etc_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("ledger_etc_imports.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer, nullable=False)
    plate: Mapped[str] = mapped_column(String(16), nullable=False)
    card_no: Mapped[str] = mapped_column(String(32), nullable=False)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    entry_station: Mapped[str] = mapped_column(String(80), nullable=False)
    entry_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    exit_station: Mapped[str] = mapped_column(String(80), nullable=False)
    exit_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    amount_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)
    ledger_entry_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_entries.id"))
    match_status: Mapped[MatchStatus] = mapped_column(
        _enum(MatchStatus, "etc_match_status"), nullable=False, default=MatchStatus.pending)
    trip_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trip_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    match_note: Mapped[str] = mapped_column(Text, nullable=False, default="")

    __table_args__ = (
        UniqueConstraint("card_no", "exit_time", name="uq_ledger_etc_charges_card_exit"),
    )


class Quota(Base):
    """Approved number of vehicles (编制核定) for a department and category, from a date on."""

    __tablename__ = "ledger_quotas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    category: Mapped[VehicleCategory] = mapped_column(
        _enum(VehicleCategory, "vehicle_category"), nullable=False)
    approved: Mapped[int] = mapped_column(Integer, nullable=False)
    effective_from: Mapped[date] = mapped_column(Date, nullable=False)
    document: Mapped[str] = mapped_column(String(120), nullable=False, default="")  # 文号
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)

    __table_args__ = (
        UniqueConstraint("department_id", "category", "effective_from",
                         name="uq_ledger_quotas_dep_cat_from"),
    )


class PurchaseRule(Base):
    """Purchase-control caps per category (控购标准) — configuration, never code."""

    __tablename__ = "ledger_purchase_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[VehicleCategory] = mapped_column(
        _enum(VehicleCategory, "vehicle_category"), nullable=False, unique=True)
    price_cap_fen: Mapped[int | None] = mapped_column(BigInteger)  # excl. tax, inclusive cap
    displacement_cap_l: Mapped[float | None] = mapped_column(Float)
    prefer_new_energy: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    renewal_min_age_years: Mapped[int | None] = mapped_column(Integer)
    renewal_min_km: Mapped[int | None] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow,
                                                 nullable=False)


class PurchaseRequest(Base):
    """A purchase or renewal request (配备更新申请) filed by a department."""

    __tablename__ = "ledger_purchase_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    kind: Mapped[RequestKind] = mapped_column(_enum(RequestKind, "purchase_kind"),
                                              nullable=False)
    category: Mapped[VehicleCategory] = mapped_column(
        _enum(VehicleCategory, "vehicle_category"), nullable=False)
    brand_model: Mapped[str] = mapped_column(String(80), nullable=False)
    price_fen: Mapped[int] = mapped_column(BigInteger, nullable=False)  # excl. tax
    displacement_l: Mapped[float] = mapped_column(Float, nullable=False)
    energy_type: Mapped[EnergyType] = mapped_column(_enum(EnergyType, "energy_type"),
                                                    nullable=False)
    seats: Mapped[int] = mapped_column(Integer, nullable=False)
    replaces_vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"))
    justification: Mapped[str] = mapped_column(Text, nullable=False, default="")
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus, "purchase_status"),
                                                  nullable=False)
    decision_ok: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow,
                                                 nullable=False)


class PurchaseStep(Base):
    """One step of a purchase request's approval workflow (审批流程)."""

    __tablename__ = "ledger_purchase_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("ledger_purchase_requests.id"),
                                            index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
