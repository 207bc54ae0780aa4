"""Settings from environment variables (``GONGCHE_…``) or a ``.env`` file.

Defaults are the *embedded* ones (SQLite+SpatiaLite file, in-process MQTT broker, in-process
Redis-compatible store), so ``gongche demo`` runs with nothing else installed. Outside demo
mode the settings refuse the well-known default secret (fail fast, as full-stack-fastapi does).
"""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "changethis-demo-only-never-in-production"
EMBEDDED_REDIS = "memory://"
EMBEDDED_MQTT = "embedded://127.0.0.1:18830"


class Settings(BaseSettings):
    """All of gongche's configuration in one validated object."""

    model_config = SettingsConfigDict(
        env_prefix="GONGCHE_", env_file=".env", env_ignore_empty=True, extra="ignore"
    )

    mode: Literal["demo", "production", "test"] = "production"
    data_dir: Path = Path("var")
    database_url: str = ""  # empty: SQLite+SpatiaLite file in data_dir
    redis_url: str = EMBEDDED_REDIS
    mqtt_url: str = EMBEDDED_MQTT
    mqtt_protocol: Literal["3.1.1", "5"] = "3.1.1"
    # "single": one gateway, ordinary subscription (Mosquitto persists it: a broker restart
    # loses nothing); "shared": $share/gateway/... for several gateways (gateway/mqtt.py).
    mqtt_subscription: Literal["single", "shared"] = "single"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    jt808_port: int = Field(default=6808, ge=0, le=65535)
    secret_key: str = DEFAULT_SECRET
    token_minutes: int = Field(default=12 * 60, ge=1, le=30 * 24 * 60)
    routing_url: str | None = None
    timezone: str = "Asia/Shanghai"
    log_level: str = "INFO"
    login_attempts_per_minute: int = Field(default=10, ge=1)
    # Per server process: requests handled at once (the rest wait on the event loop, holding
    # neither a thread nor a database connection) and requests allowed to wait (beyond: 503).
    # Keep max_in_flight below the threadpool (40) and the engine's pool (10 + 40 overflow).
    max_in_flight: int = Field(default=32, ge=1, le=40)
    max_queued: int = Field(default=512, ge=0)
    db_echo: bool = False

    # Gateway filter chain (Traccar-like; None switches a filter off).
    filter_future_s: float | None = 300.0
    filter_max_age_s: float | None = None
    filter_max_speed_kmh: float | None = None
    filter_jump_kmh: float | None = 300.0
    filter_max_hdop: float | None = None
    filter_min_period_s: float = 0.0
    keep_rejected: int = Field(default=0, ge=0, description="rejected fixes kept for audit")

    # Trips and stops (Traccar's report.trip.* parameters).
    trip_min_distance_m: float = Field(default=500.0, ge=0)
    trip_min_duration_s: float = Field(default=300.0, ge=0)
    trip_min_parking_s: float = Field(default=300.0, ge=0)
    trip_no_data_s: float = Field(default=3600.0, gt=0)
    trip_use_ignition: bool = False

    # Telematics events (off-hours use 非工作时间用车, overspeed 超速, terminal offline).
    event_work_start: time = time(8, 0)
    event_work_end: time = time(18, 0)
    event_speed_limits_kmh: dict[str, float] = Field(
        default_factory=dict, description="per vehicle category, over the built-in ones")
    event_default_limit_kmh: float = Field(default=120.0, gt=0)
    event_overspeed_min_s: float = Field(default=10.0, ge=0)
    event_offline_after_s: float = Field(default=600.0, gt=0)

    # JT/T 808 server limits (abuse bounds; a county's terminals stay far below them).
    jt808_max_frame_bytes: int = Field(default=4096, ge=64, le=1 << 20)
    jt808_idle_timeout_s: float = Field(default=180.0, gt=0)
    jt808_max_connections_per_ip: int = Field(default=256, ge=1)
    jt808_max_connections: int = Field(default=20_000, ge=1)
    jt808_reassembly_timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _normalise_db_url(cls, v: str) -> str:
        # Users paste libpq-style URLs; SQLAlchemy needs the driver named.
        for prefix in ("postgres://", "postgresql://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix):]
        return v

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> Settings:
        if self.mode == "production" and self.secret_key == DEFAULT_SECRET:
            raise ValueError(
                "GONGCHE_SECRET_KEY must be set to a long random value outside demo mode "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if len(self.secret_key) < 32:  # HS256 wants a key of at least 256 bits (RFC 7518)
            raise ValueError("GONGCHE_SECRET_KEY must be at least 32 characters")
        return self

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gongche.db').as_posix()}"

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def demo(self) -> bool:
        return self.mode == "demo"

    @property
    def mqtt_embedded(self) -> bool:
        return self.mqtt_url.startswith("embedded://")

    def mqtt_endpoint(self) -> tuple[str, int, str | None, str | None]:
        """(host, port, username, password) of the MQTT broker."""
        u = urlparse(self.mqtt_url)
        return u.hostname or "127.0.0.1", u.port or 1883, u.username, u.password


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (tests build their own ``Settings`` and pass them in)."""
    return Settings()
