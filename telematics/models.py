"""Telematics storage: positions (定位数据), partitioned by month on PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    SmallInteger,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleet.db import Base, UTCDateTime


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
