"""Telematics storage: positions (定位数据, partitioned by month on PostgreSQL), geofences,
trips, stops, events and the holiday calendar."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleet.db import Base, UTCDateTime, utcnow
from fleet.models import TimestampMixin


class Position(Base):
    """One stored fix, keyed by (terminal, time): re-uploaded batches never duplicate.

    On PostgreSQL the table is range-partitioned by month of ``time`` (migration 0002);
    the natural key includes ``time``, as a partitioned table's keys must.
    """

    __tablename__ = "positions"

    terminal_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    vehicle_id: Mapped[int | None] = mapped_column(Integer)
    lat: Mapped[float] = mapped_column(Float, nullable=False)
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    geom: Mapped[Any | None] = mapped_column(Geometry("POINT", srid=4326, spatial_index=False))
    speed_kmh: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    course: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    altitude_m: Mapped[float | None] = mapped_column(Float)
    hdop: Mapped[float | None] = mapped_column(Float)
    satellites: Mapped[int | None] = mapped_column(SmallInteger)
    valid: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    protocol: Mapped[str] = mapped_column(String(16), nullable=False)
    alarm: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    status: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    extras: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_positions_vehicle_time", "vehicle_id", "time"),)


# --------------------------------------------------------------------------- issue 5
# Geofences, trips, stops, events and the holiday calendar (migration 0005_telematics).


class Geofence(TimestampMixin, Base):
    """A geofence (电子围栏): polygon/multipolygon, or a circle stored as centre + radius."""

    __tablename__ = "geofences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # polygon | circle
    geom: Mapped[Any] = mapped_column(
        Geometry("GEOMETRY", srid=4326, spatial_index=False), nullable=False)
    radius_m: Mapped[float | None] = mapped_column(Float)
    speed_limit_kmh: Mapped[float | None] = mapped_column(Float)
    tags: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)


class Trip(Base):
    """A trip (行程) of one terminal/vehicle between two stops."""

    __tablename__ = "trips"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id", ondelete="SET NULL"))
    terminal_id: Mapped[str] = mapped_column(String(40), nullable=False)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    start_lat: Mapped[float] = mapped_column(Float, nullable=False)
    start_lon: Mapped[float] = mapped_column(Float, nullable=False)
    end_lat: Mapped[float] = mapped_column(Float, nullable=False)
    end_lon: Mapped[float] = mapped_column(Float, nullable=False)
    distance_m: Mapped[float] = mapped_column(Float, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    max_speed_kmh: Mapped[float] = mapped_column(Float, nullable=False)
    avg_speed_kmh: Mapped[float] = mapped_column(Float, nullable=False)
    odometer_m: Mapped[float | None] = mapped_column(Float)  # terminal odometer delta
    odometer_flag: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    closed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    end_reason: Mapped[str] = mapped_column(String(8), nullable=False, default="stop")
    provisional: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index("ix_trips_terminal_start", "terminal_id", "start_time"),
        Index("ix_trips_vehicle_start", "vehicle_id", "start_time"),
    )


class Stop(Base):
    """A stop (停车) of one terminal/vehicle; ``raw_start``/``confirm_time`` anchor resegments."""

    __tablename__ = "stops"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id", ondelete="SET NULL"))
    terminal_id: Mapped[str] = mapped_column(String(40), nullable=False)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    end_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    lat: Mapped[float] = mapped_column(Float, nullable=False)
    lon: Mapped[float] = mapped_column(Float, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    raw_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirm_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(16), nullable=False, default="parking")
    closed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    provisional: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index("ix_stops_terminal_start", "terminal_id", "start_time"),
        Index("ix_stops_vehicle_start", "vehicle_id", "start_time"),
    )


class Event(Base):
    """A telematics event (告警/事件): overspeed, geofence enter/exit, off-hours use, …

    ``key`` disambiguates events of one type at one time (e.g. the fence id) and makes
    storing idempotent: (terminal, type, time, key) is unique.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vehicle_id: Mapped[int | None] = mapped_column(ForeignKey("vehicles.id", ondelete="SET NULL"))
    terminal_id: Mapped[str] = mapped_column(String(40), nullable=False)
    type: Mapped[str] = mapped_column(String(32), nullable=False)
    time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    key: Mapped[str] = mapped_column(String(64), nullable=False, default="")
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    fence_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)

    __table_args__ = (
        UniqueConstraint("terminal_id", "type", "time", "key", name="uq_events_natural"),
        Index("ix_events_vehicle_time", "vehicle_id", "time"),
        Index("ix_events_type_time", "type", "time"),
    )


class Holiday(Base):
    """The official holiday calendar (节假日): days off, and weekend working days (调休)."""

    __tablename__ = "holidays"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    name: Mapped[str] = mapped_column(String(60), nullable=False, default="")
    workday: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
