"""The one normalised position record that crosses every boundary: a **Fix** (定位点).

Decoders (NMEA, JT/T 808) make Fixes; everything after them knows no protocol.
Times are timezone-aware UTC, coordinates WGS-84 degrees, speed km/h, course degrees from
true north, altitude metres.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Protocol = Literal["nmea-mqtt", "jt808", "sim", "import"]


@dataclass(slots=True)
class Fix:
    """A position fix from one terminal (北斗/GNSS 定位数据)."""

    terminal_id: str
    time: datetime
    lat: float
    lon: float
    speed_kmh: float = 0.0
    course: float = 0.0
    altitude_m: float | None = None
    hdop: float | None = None
    satellites: int | None = None
    valid: bool = True
    protocol: Protocol = "sim"
    alarm: int = 0
    status: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError("Fix.time must be timezone-aware (UTC)")

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by `gongche decode` and carried on the Redis stream."""
        return {
            "terminal_id": self.terminal_id,
            "time": self.time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "lat": self.lat,
            "lon": self.lon,
            "speed_kmh": self.speed_kmh,
            "course": self.course,
            "altitude_m": self.altitude_m,
            "hdop": self.hdop,
            "satellites": self.satellites,
            "valid": self.valid,
            "protocol": self.protocol,
            "alarm": self.alarm,
            "status": self.status,
            "extras": self.extras,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fix:
        """Inverse of :meth:`to_json`; raises ``ValueError``/``KeyError`` on bad input."""
        if cls is Fix and data.keys() == _JSON_KEYS:
            # What to_json writes (the writer decodes one per stream entry): the fields
            # passed by position, ~1.4 instead of ~4 µs. The same values as the general
            # path below (tests/fleet/test_fix.py checks it): filtering the keys and calling
            # with 14 keywords was most of the cost.
            return cls(data["terminal_id"], _utc_time(data["time"]), float(data["lat"]),
                       float(data["lon"]), data["speed_kmh"], data["course"],
                       data["altitude_m"], data["hdop"], data["satellites"], data["valid"],
                       data["protocol"], data["alarm"], data["status"], data["extras"])
        return cls._from_json(data)

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> Fix:
        """:meth:`from_json` for any key set: unknown keys ignored, missing ones defaulted."""
        t = _utc_time(data["time"])
        names = _FIELD_NAMES if cls is Fix else _field_names(cls)
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["lat"] = float(kwargs["lat"])
        kwargs["lon"] = float(kwargs["lon"])
        return cls(time=t, **kwargs)


def _utc_time(value: Any) -> datetime:
    """A JSON time (ISO-8601, ``Z`` or an offset; none means UTC) as aware UTC."""
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t if t.tzinfo is UTC else t.astimezone(UTC)


def _field_names(cls: type) -> frozenset[str]:
    """Constructor keywords ``from_json`` takes from the JSON (all fields but ``time``)."""
    return frozenset(f.name for f in dataclasses.fields(cls)) - {"time"}


_FIELD_NAMES = _field_names(Fix)  # computed once: from_json runs per stream entry
_JSON_KEYS = _FIELD_NAMES | {"time"}  # every key to_json writes
