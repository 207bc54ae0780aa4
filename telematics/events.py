"""Telematics events (告警/事件) from live fixes: one small detector per rule.

:class:`EventDetector` runs per terminal over *live* fixes in time order (late fixes and
blind-area resends never reach it — Traccar's rule: late positions are stored but fire no
events).  Rules, each with a parameter in :class:`EventParams`:

* ``overspeed`` — speed above the limit for at least ``overspeed_min_s``; the limit is the
  vehicle category's, or a geofence's ``speed_limit_kmh`` where stricter (e.g. 20 km/h in the
  administrative centre compound).  One event per episode, at its start.
* ``geofence_enter`` / ``geofence_exit`` — debounced by :class:`geo.fences.FenceTracker`
  (fixes, seconds, hysteresis), and only a moving fix can start a transition.
* ``off_hours`` — moving for ``off_hours_min_s`` outside working hours, on weekends or on a
  holiday of the calendar (:class:`WorkCalendar`, with 调休 weekend working days); at most
  one event per off-hours block (evening, early morning, whole day off).
* ``jump`` — implied speed between consecutive fixes above ``jump_speed_kmh`` over at least
  ``jump_min_m`` (teleport).
* ``low_satellites`` — fewer than ``min_satellites`` for at least ``low_sat_min_s``.
* ``overnight_away`` (:func:`overnight_events`, from stops) — parked at ``overnight_time``
  local further than ``home_radius_m`` from the vehicle's home garage.
* ``offline`` (periodic, :mod:`telematics.processing`) — no data for ``offline_after_s``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from fleet.fix import Fix
from geo.fences import DebounceRule, FenceIndex, FenceTracker
from geo.geodesy import haversine_m
from telematics.mileage import CST

EVENT_TYPES = ("overspeed", "geofence_enter", "geofence_exit", "off_hours", "overnight_away",
               "offline", "jump", "low_satellites")

DEFAULT_CATEGORY_LIMITS: dict[str, float] = {
    "general": 120.0, "confidential": 120.0, "dedicated": 120.0, "special_technical": 100.0,
    "emergency": 150.0, "law_enforcement": 150.0,
}


@dataclass(frozen=True)
class EventParams:
    """Event rules' parameters (defaults for official cars in a Chinese city)."""

    category_limits_kmh: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_LIMITS))
    default_limit_kmh: float = 120.0
    overspeed_min_s: float = 10.0
    debounce: DebounceRule = field(
        default_factory=lambda: DebounceRule(min_fixes=3, min_seconds=3.0, hysteresis_m=15.0))
    work_start: time = time(8, 0)
    work_end: time = time(18, 0)
    moving_kmh: float = 5.0
    off_hours_min_s: float = 60.0
    overnight_time: time = time(2, 0)
    home_radius_m: float = 500.0
    offline_after_s: float = 600.0
    jump_speed_kmh: float = 250.0
    jump_min_m: float = 1000.0
    min_satellites: int = 4
    low_sat_min_s: float = 300.0


@dataclass(slots=True)
class EventRecord:
    """An event before storage: what, when, where, and the numbers behind it."""

    type: str
    time: datetime
    terminal_id: str
    vehicle_id: int | None = None
    lat: float | None = None
    lon: float | None = None
    value: float | None = None
    threshold: float | None = None
    fence_id: int | None = None
    key: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "time": self.time.isoformat().replace("+00:00", "Z"),
                "terminal_id": self.terminal_id, "vehicle_id": self.vehicle_id,
                "lat": self.lat, "lon": self.lon, "value": self.value,
                "threshold": self.threshold, "fence_id": self.fence_id, "key": self.key,
                "detail": self.detail}


@dataclass(frozen=True, slots=True)
class VehicleInfo:
    """What the rules need to know about a vehicle."""

    vehicle_id: int
    category: str = "general"
    home: tuple[float, float] | None = None  # (lat, lon) of the home garage


class WorkCalendar:
    """Working days: Monday–Friday, except holidays; ``special`` maps a date to workday?"""

    def __init__(self, special: Mapping[date, bool] | None = None,
                 work_start: time = time(8, 0), work_end: time = time(18, 0)) -> None:
        self.special = dict(special or {})
        self.work_start = work_start
        self.work_end = work_end

    def is_workday(self, d: date) -> bool:
        if d in self.special:
            return self.special[d]
        return d.weekday() < 5

    def off_hours_block(self, t: datetime) -> str | None:
        """None inside working time; else a key naming the off-hours block containing ``t``."""
        local = t.astimezone(CST)
        d = local.date()
        if not self.is_workday(d):
            return f"{d.isoformat()}:day"
        if local.time() < self.work_start:
            return f"{d.isoformat()}:am"
        if local.time() >= self.work_end:
            return f"{d.isoformat()}:pm"
        return None


def _fence_int(fid: object) -> int | None:
    return fid if isinstance(fid, int) else None


class EventDetector:
    """Live event rules for one terminal; feed fixes in time order with :meth:`update`."""

    def __init__(self, terminal_id: str, vehicle: VehicleInfo | None, index: FenceIndex,
                 params: EventParams | None = None, calendar: WorkCalendar | None = None,
                 initially_inside: Iterable[object] = ()) -> None:
        self.terminal_id = terminal_id
        self.vehicle = vehicle
        self.params = params or EventParams()
        p = self.params
        self.calendar = calendar or WorkCalendar(work_start=p.work_start, work_end=p.work_end)
        self.index = index
        self.tracker = FenceTracker(index, p.debounce, initially_inside,  # type: ignore[arg-type]
                                    terminal_id=terminal_id)
        self._last: Fix | None = None
        self._over_since: Fix | None = None
        self._over_fired = False
        self._over_max = 0.0
        self._move_since: datetime | None = None
        self._move_block: str | None = None
        self._fired_blocks: set[str] = set()
        self._lowsat_since: Fix | None = None
        self._lowsat_fired = False

    def set_index(self, index: FenceIndex) -> None:
        self.index = index
        self.tracker.set_index(index)

    def limit_kmh(self, fix: Fix) -> tuple[float, int | None]:
        """The applicable speed limit at the fix and the fence imposing it (if any)."""
        p = self.params
        cat = self.vehicle.category if self.vehicle else "general"
        limit = float(p.category_limits_kmh.get(cat, p.default_limit_kmh))
        fence_id = None
        for fid in self.index.fences_containing(fix.lat, fix.lon):
            f = self.index.get(fid)
            if f is not None and f.speed_limit_kmh is not None and f.speed_limit_kmh < limit:
                limit, fence_id = f.speed_limit_kmh, _fence_int(fid)
        return limit, fence_id

    def update(self, fix: Fix) -> list[EventRecord]:
        """Process one live fix; return the events it fires (usually none)."""
        if self._last is not None and fix.time <= self._last.time:
            return []
        out: list[EventRecord] = []
        self._overspeed(fix, out)
        for ev in self._fences(fix):
            out.append(self._ev(f"geofence_{ev.transition}", fix, fence_id=_fence_int(ev.fence_id),
                                key=str(ev.fence_id),
                                detail={"since": ev.since.isoformat(),
                                        "fence": self._fence_name(ev.fence_id)}))
        self._off_hours(fix, out)
        self._jump(fix, out)
        self._low_sats(fix, out)
        self._last = fix
        return out

    def _fences(self, fix: Fix) -> list[Any]:
        """Debounced transitions.  A standing car cannot cross a boundary: stationary fixes
        never *start* a transition (parking drift on a fence edge does not flap), they only
        continue one a moving fix began (a car that drives in and stops at once)."""
        if fix.speed_kmh < self.params.moving_kmh and not self.tracker._pending:
            return []
        return self.tracker.update(fix.lat, fix.lon, fix.time)

    def _fence_name(self, fid: object) -> str:
        f = self.index.get(fid)  # type: ignore[arg-type]
        return f.name if f is not None else ""

    def _ev(self, kind: str, fix: Fix, **kw: Any) -> EventRecord:
        return EventRecord(kind, kw.pop("time", fix.time), self.terminal_id,
                           self.vehicle.vehicle_id if self.vehicle else None,
                           fix.lat, fix.lon, **kw)

    def _overspeed(self, fix: Fix, out: list[EventRecord]) -> None:
        limit, fence_id = self.limit_kmh(fix)
        if fix.speed_kmh <= limit:
            self._over_since, self._over_fired, self._over_max = None, False, 0.0
            return
        if self._over_since is None:
            self._over_since = fix
        self._over_max = max(self._over_max, fix.speed_kmh)
        since = self._over_since
        if not self._over_fired and (fix.time - since.time).total_seconds() \
                >= self.params.overspeed_min_s:
            self._over_fired = True
            out.append(self._ev("overspeed", since, time=since.time, value=self._over_max,
                                threshold=limit, fence_id=fence_id,
                                detail={"confirmed_at": fix.time.isoformat(),
                                        "fence": self._fence_name(fence_id)
                                        if fence_id is not None else ""}))

    def _off_hours(self, fix: Fix, out: list[EventRecord]) -> None:
        p = self.params
        block = self.calendar.off_hours_block(fix.time)
        if block is None or fix.speed_kmh < p.moving_kmh:
            self._move_since, self._move_block = None, None
            return
        if self._move_block != block:
            self._move_since, self._move_block = fix.time, block
        assert self._move_since is not None
        if block not in self._fired_blocks and \
                (fix.time - self._move_since).total_seconds() >= p.off_hours_min_s:
            self._fired_blocks.add(block)
            if len(self._fired_blocks) > 64:
                self._fired_blocks = set(sorted(self._fired_blocks)[-32:])
            out.append(self._ev("off_hours", fix, time=self._move_since, key=block,
                                value=fix.speed_kmh, detail={"block": block}))

    def _jump(self, fix: Fix, out: list[EventRecord]) -> None:
        prev, p = self._last, self.params
        if prev is None:
            return
        dt = (fix.time - prev.time).total_seconds()
        d = haversine_m(prev.lat, prev.lon, fix.lat, fix.lon)
        if dt > 0 and d >= p.jump_min_m and d / dt * 3.6 >= p.jump_speed_kmh:
            out.append(self._ev("jump", fix, value=round(d / dt * 3.6, 1),
                                threshold=p.jump_speed_kmh,
                                detail={"from": [prev.lat, prev.lon], "distance_m": round(d, 1),
                                        "seconds": dt}))

    def _low_sats(self, fix: Fix, out: list[EventRecord]) -> None:
        p = self.params
        if fix.satellites is None or fix.satellites >= p.min_satellites:
            self._lowsat_since, self._lowsat_fired = None, False
            return
        if self._lowsat_since is None:
            self._lowsat_since = fix
        since = self._lowsat_since
        if not self._lowsat_fired and (fix.time - since.time).total_seconds() >= p.low_sat_min_s:
            self._lowsat_fired = True
            out.append(self._ev("low_satellites", since, time=since.time,
                                value=float(fix.satellites), threshold=float(p.min_satellites),
                                detail={"confirmed_at": fix.time.isoformat()}))


def overnight_events(stops: Iterable[Any], vehicle: VehicleInfo | None, terminal_id: str,
                     params: EventParams | None = None) -> list[EventRecord]:
    """``overnight_away`` for stops (anything with start/end/lat/lon) that cover the night
    check time (local) further than ``home_radius_m`` from the home garage."""
    p = params or EventParams()
    if vehicle is None or vehicle.home is None:
        return []
    out = []
    for s in stops:
        start, end = _get(s, "start", "start_time"), _get(s, "end", "end_time")
        d = start.astimezone(CST).date()
        while True:
            instant = datetime.combine(d, p.overnight_time, CST)
            if instant > end:
                break
            if instant >= start:
                dist = haversine_m(s.lat, s.lon, vehicle.home[0], vehicle.home[1])
                if dist > p.home_radius_m:
                    out.append(EventRecord(
                        "overnight_away", instant.astimezone(start.tzinfo), terminal_id,
                        vehicle.vehicle_id, s.lat, s.lon, round(dist, 1), p.home_radius_m,
                        key=d.isoformat(), detail={"night": d.isoformat()}))
            d += timedelta(days=1)
    return out


def _get(obj: Any, *names: str) -> datetime:
    for n in names:
        if hasattr(obj, n):
            return getattr(obj, n)  # type: ignore[no-any-return]
    raise AttributeError(names[0])
