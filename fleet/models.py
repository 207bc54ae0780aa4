"""Organisation and assets: departments (单位), users, vehicles (公务用车), drivers (驾驶员),
terminals (北斗终端) and their bindings, and the append-only audit trail.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet.db import Base, UTCDateTime, utcnow


def _enum(e: type[enum.Enum], name: str) -> Enum:
    """Store enums as their string values with a CHECK constraint (portable to SQLite)."""
    return Enum(
        e, name=name, native_enum=False, create_constraint=True, length=32,
        values_callable=lambda cls: [m.value for m in cls],
    )


class Role(enum.StrEnum):
    """User roles: staff (申请人), approver (审批人), dispatcher (调度员), supervisor (监管)."""

    staff = "staff"
    approver = "approver"
    dispatcher = "dispatcher"
    supervisor = "supervisor"
    admin = "admin"


class VehicleCategory(enum.StrEnum):
    """公务用车类别."""

    confidential = "confidential"  # 机要通信
    emergency = "emergency"  # 应急保障
    law_enforcement = "law_enforcement"  # 执法执勤
    special_technical = "special_technical"  # 特种专业技术
    general = "general"  # 一般公务
    dedicated = "dedicated"  # 定向化保障


CATEGORY_ZH = {
    VehicleCategory.confidential: "机要通信",
    VehicleCategory.emergency: "应急保障",
    VehicleCategory.law_enforcement: "执法执勤",
    VehicleCategory.special_technical: "特种专业技术",
    VehicleCategory.general: "一般公务",
    VehicleCategory.dedicated: "定向化保障",
}


class EnergyType(enum.StrEnum):
    petrol = "petrol"
    diesel = "diesel"
    hybrid = "hybrid"
    plug_in_hybrid = "plug_in_hybrid"
    electric = "electric"
    fuel_cell = "fuel_cell"


class VehicleStatus(enum.StrEnum):
    in_service = "in_service"  # 在用
    maintenance = "maintenance"  # 维修
    transferred = "transferred"  # 已移交
    disposed = "disposed"  # 已处置


class DriverStatus(enum.StrEnum):
    active = "active"
    on_leave = "on_leave"
    retired = "retired"


class LicenceClass(enum.StrEnum):
    """Chinese driving licence classes (准驾车型) relevant to official cars."""

    A1 = "A1"
    A2 = "A2"
    A3 = "A3"
    B1 = "B1"
    B2 = "B2"
    C1 = "C1"
    C2 = "C2"


class TerminalProtocol(enum.StrEnum):
    nmea_mqtt = "nmea-mqtt"
    jt808 = "jt808"


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


class Department(TimestampMixin, Base):
    """A department or unit (单位/部门); the tree's root is the affairs bureau (机关事务局)."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)

    parent: Mapped[Department | None] = relationship(remote_side=[id])


class User(TimestampMixin, Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    full_name: Mapped[str] = mapped_column(String(120), nullable=False, default="")
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), nullable=False)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)
    locale: Mapped[str] = mapped_column(String(16), default="zh-CN", nullable=False)

    department: Mapped[Department] = relationship()


class Vehicle(TimestampMixin, Base):
    """An official car (公务用车) held under a department's quota (编制)."""

    __tablename__ = "vehicles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plate: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    vin: Mapped[str] = mapped_column(String(17), unique=True, nullable=False)
    category: Mapped[VehicleCategory] = mapped_column(
        _enum(VehicleCategory, "vehicle_category"), nullable=False
    )
    brand_model: Mapped[str] = mapped_column(String(80), default="", nullable=False)
    seats: Mapped[int] = mapped_column(Integer, nullable=False)
    energy_type: Mapped[EnergyType] = mapped_column(_enum(EnergyType, "energy_type"))
    displacement_l: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    purchase_price_fen: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    purchase_date: Mapped[date | None] = mapped_column(Date)
    odometer_km: Mapped[float] = mapped_column(Float, default=0.0, nullable=False)
    home_garage: Mapped[Any | None] = mapped_column(
        Geometry("POINT", srid=4326, spatial_index=False)
    )
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    status: Mapped[VehicleStatus] = mapped_column(
        _enum(VehicleStatus, "vehicle_status"), default=VehicleStatus.in_service, nullable=False
    )
    marked: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)  # 标识化
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)

    department: Mapped[Department] = relationship()
    __mapper_args__ = {"version_id_col": version}


class Driver(TimestampMixin, Base):
    __tablename__ = "drivers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(60), nullable=False)
    employee_no: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    licence_class: Mapped[LicenceClass] = mapped_column(_enum(LicenceClass, "licence_class"))
    phone: Mapped[str] = mapped_column(String(20), nullable=False)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    status: Mapped[DriverStatus] = mapped_column(
        _enum(DriverStatus, "driver_status"), default=DriverStatus.active, nullable=False
    )
    # The driver's shift (班次) as local wall-clock times (Asia/Shanghai); none stored means
    # the bureau's whole service day. A shift ends the day it starts.
    shift_start: Mapped[time | None] = mapped_column(Time)
    shift_end: Mapped[time | None] = mapped_column(Time)
    # Most driving in a day (连续驾驶/日驾驶时长上限); none stored means 8 h.
    max_driving_minutes: Mapped[int | None] = mapped_column(Integer)

    department: Mapped[Department] = relationship()


class Terminal(TimestampMixin, Base):
    """A positioning terminal (北斗车载终端) speaking NMEA over MQTT or JT/T 808 over TCP."""

    __tablename__ = "terminals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    protocol: Mapped[TerminalProtocol] = mapped_column(
        _enum(TerminalProtocol, "terminal_protocol"), nullable=False
    )
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    imei: Mapped[str | None] = mapped_column(String(20))
    secret_hash: Mapped[str | None] = mapped_column(String(255))  # MQTT password (hashed)
    auth_code: Mapped[str | None] = mapped_column(String(64))  # JT/T 808 鉴权码
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id"), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, nullable=False)

    vehicle: Mapped[Vehicle | None] = relationship()


class TerminalBinding(Base):
    """History of which terminal sat in which vehicle, and when (终端绑定记录)."""

    __tablename__ = "terminal_bindings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    terminal_id: Mapped[str] = mapped_column(ForeignKey("terminals.id"), index=True)
    vehicle_id: Mapped[int] = mapped_column(ForeignKey("vehicles.id"), index=True)
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    unbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bound_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AuditEntry(Base):
    """Append-only audit trail (操作日志): who changed what, when, and why."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    entity: Mapped[str] = mapped_column(String(40), nullable=False)
    entity_id: Mapped[str] = mapped_column(String(40), nullable=False)
    reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)

    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

