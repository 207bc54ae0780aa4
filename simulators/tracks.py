"""Ground-truth vehicle tracks (真实轨迹) on the synthetic city or along any LineString.

A car follows a route with simple but realistic longitudinal kinematics: it accelerates at
``accel_ms2``, brakes at ``brake_ms2`` to respect speed limits (限速), slows for turns, stops
at red traffic lights and in queues (stop-and-go), stops at its destination and then dwells or
parks (停车) there, possibly for hours.  The simulation steps at ``substeps`` per sample and
records a :class:`TruthSample` at every sample time (1 Hz by default; a lower rate may be used
while parked, as terminals do with the ignition off).

The ground truth is exact by construction: the odometer is the integral of speed along the
route polyline, trips (行程) run from the moment the car starts moving until it stands still
at its destination, stops are the dwell/parking periods at places.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from geo.geodesy import bearing_deg, destination, distance_m
from simulators.city import City, RouteLeg, TrafficLight

State = Literal["drive", "halt", "dwell", "park"]


@dataclass(frozen=True, slots=True)
class DriverProfile:
    """How a driver drives: acceleration, braking, share of the speed limit, turn speeds."""

    accel_ms2: float = 1.4
    brake_ms2: float = 2.0
    speed_factor: float = 0.95
    min_turn_kmh: float = 16.0


@dataclass(frozen=True, slots=True)
class Visit:
    """Go to ``place`` (id, name or node id) and stay ``dwell_s`` seconds.

    ``ignition_off`` defaults to off for dwells of three minutes or more (熄火停车).
    """

    place: str | int
    dwell_s: float
    ignition_off: bool | None = None


@dataclass(slots=True)
class TruthSample:
    """The true state at one sample time."""

    time: datetime
    lat: float
    lon: float
    speed_kmh: float
    course: float
    odometer_m: float
    state: State
    ignition: bool


@dataclass(slots=True)
class TrueTrip:
    """A true trip (行程): from starting to move until standing at the destination."""

    start: datetime
    end: datetime
    origin: str
    destination: str
    distance_m: float


@dataclass(slots=True)
class TrueStop:
    """A true stop (停车) at a place: dwell or parking."""

    start: datetime
    end: datetime
    place: str
    lat: float
    lon: float
    ignition_off: bool


@dataclass(slots=True)
class Track:
    """A simulated ground-truth track for one terminal."""

    terminal_id: str
    samples: list[TruthSample] = field(default_factory=list)
    trips: list[TrueTrip] = field(default_factory=list)
    stops: list[TrueStop] = field(default_factory=list)

    @property
    def distance_m(self) -> float:
        """True travelled distance (真实里程), metres."""
        return self.samples[-1].odometer_m if self.samples else 0.0

    def distance_between(self, t0: datetime, t1: datetime) -> float:
        """True distance travelled between two times (sample resolution), metres."""
        odo = [s.odometer_m for s in self.samples if t0 <= s.time <= t1]
        return odo[-1] - odo[0] if odo else 0.0


@dataclass(slots=True)
class _Constraint:
    """A point on the route where the speed must not exceed ``v_ms`` (0 = stop)."""

    s: float
    v_ms: float
    light: TrafficLight | None = None
    hold_s: float = 0.0  # queue stop: stand this long


class _Sim:
    """Mutable simulation state shared by legs and dwells."""

    def __init__(self, track: Track, t0: datetime, rate_hz: float, parked_rate_hz: float,
                 substeps: int, rng: random.Random) -> None:
        self.track = track
        self.t0 = t0
        self.t_us = 0  # microseconds since t0: integer, so sample times never drift
        self.period_us = int(round(1e6 / rate_hz / substeps)) * substeps
        self.parked_period_us = int(round(1e6 / parked_rate_hz / self.period_us)) * self.period_us
        self.period = self.period_us / 1e6
        self.substeps = substeps
        self.rng = rng
        self.odo = 0.0
        self.lat = math.nan
        self.lon = math.nan
        self.course = 0.0

    @property
    def t(self) -> float:
        """Epoch seconds now."""
        return self.t0.timestamp() + self.t_us / 1e6

    @property
    def now(self) -> datetime:
        """The current time as an aware datetime."""
        return self.t0 + timedelta(microseconds=self.t_us)

    def record(self, speed_ms: float, state: State, ignition: bool) -> None:
        self.track.samples.append(TruthSample(
            self.now, self.lat, self.lon, speed_ms * 3.6, self.course, self.odo, state,
            ignition))

    def stand(self, duration_s: float, state: State, ignition: bool) -> None:
        """Stand still for ``duration_s``, sampling at the parked or normal rate."""
        period = self.parked_period_us if state == "park" else self.period_us
        end = self.t_us + int(round(duration_s * 1e6 / self.period_us)) * self.period_us
        while self.t_us + period <= end:
            self.t_us += period
            self.record(0.0, state, ignition)
        while self.t_us < end:  # re-align to the moving sample grid
            self.t_us += self.period_us
            self.record(0.0, state, ignition)


def _turn_angle(lats: Sequence[float], lons: Sequence[float], i: int) -> float:
    """Heading change at vertex i, degrees in [0, 180]."""
    b1 = bearing_deg(lats[i - 1], lons[i - 1], lats[i], lons[i])
    b2 = bearing_deg(lats[i], lons[i], lats[i + 1], lons[i + 1])
    d = abs((b2 - b1 + 180.0) % 360.0 - 180.0)
    return d


def _constraints(leg: RouteLeg, cum: list[float], driver: DriverProfile,
                 rng: random.Random, queues_per_km: float) -> list[_Constraint]:
    """Speed constraints along a leg: turns, limit drops, lights, queues, destination."""
    out: list[_Constraint] = []
    n = len(leg.lats)
    for i in range(1, n - 1):
        v = min(leg.speed_limits_kmh[i - 1], leg.speed_limits_kmh[i]) * driver.speed_factor
        ang = _turn_angle(leg.lats, leg.lons, i)
        if ang > 12.0:
            v = min(v, max(driver.min_turn_kmh, 60.0 - 0.5 * ang))
        out.append(_Constraint(cum[i], v / 3.6, leg.lights[i]))
    total = cum[-1]
    if queues_per_km > 0:
        k = rng.random()
        s = 0.0
        while True:
            s += rng.expovariate(queues_per_km / 1000.0) if k >= 0 else 0.0
            if s >= total - 50.0:
                break
            if s > 50.0:
                out.append(_Constraint(s, 0.0, None, rng.uniform(4.0, 35.0)))
    out.append(_Constraint(total, 0.0))
    out.sort(key=lambda c: c.s)
    return out


def _drive_leg(sim: _Sim, leg: RouteLeg, driver: DriverProfile, queues_per_km: float) -> None:
    """Drive one leg from standstill to standstill, recording samples."""
    lats, lons = leg.lats, leg.lons
    n = len(lats)
    seg_len = [distance_m(lats[i], lons[i], lats[i + 1], lons[i + 1]) for i in range(n - 1)]
    cum = [0.0]
    for d in seg_len:
        cum.append(cum[-1] + d)
    total = cum[-1]
    if total <= 0.0:
        return
    cons = _constraints(leg, cum, driver, sim.rng, queues_per_km)
    dt_us = sim.period_us // sim.substeps
    dt = dt_us / 1e6
    s = 0.0
    v = 0.0
    seg = 0
    ci = 0  # index of the first constraint ahead
    held_until = -1.0
    sub = 0
    brake_max = driver.brake_ms2 * 2.0
    while True:
        # Drop constraints that are behind us.
        while ci < len(cons) and cons[ci].s < s - 1e-6:
            ci += 1
        standing_at = None
        if ci < len(cons) and abs(cons[ci].s - s) < 1e-6 and v == 0.0:
            standing_at = cons[ci]
        halted = False
        if standing_at is not None:
            c = standing_at
            if c.s >= total - 1e-6:
                break  # arrived
            if c.light is not None and c.light.is_red(sim.t):
                halted = True
            elif c.hold_s > 0.0:
                if held_until < 0.0:
                    held_until = sim.t + c.hold_s
                if sim.t < held_until:
                    halted = True
                else:
                    held_until = -1.0
                    ci += 1
            else:
                ci += 1
        if not halted:
            v_allow = leg.speed_limits_kmh[seg] * driver.speed_factor / 3.6
            for c in cons[ci:ci + 12]:
                if c.s - s > 600.0:
                    break
                target = c.v_ms
                if c.light is not None:
                    target = c.v_ms
                    if c.light.is_red(sim.t):
                        need = v * v / (2.0 * brake_max)
                        if c.s - s > need:  # can stop: stop at the line
                            target = 0.0
                if c.hold_s > 0.0:
                    target = 0.0
                v_allow = min(v_allow, math.sqrt(target * target
                                                 + 2.0 * driver.brake_ms2 * max(0.0, c.s - s)))
            if v < v_allow:
                v = min(v_allow, v + driver.accel_ms2 * dt)
            else:
                v = max(v_allow, v - brake_max * dt)
            step = v * dt
            nxt = cons[ci] if ci < len(cons) else None
            if nxt is not None and (nxt.v_ms == 0.0 or (nxt.light is not None and v_allow < 0.3)
                                    or nxt.hold_s > 0) and (
                    nxt.s - s <= max(step, 0.05) and v_allow < 0.6):
                # Snap onto a stop point we are creeping into.
                step = nxt.s - s
                v = 0.0
            s = min(total, s + step)
            sim.odo += step
        while seg < n - 2 and s >= cum[seg + 1]:
            seg += 1
        frac = 0.0 if seg_len[seg] == 0 else (s - cum[seg]) / seg_len[seg]
        frac = min(1.0, max(0.0, frac))
        sim.lat = lats[seg] + frac * (lats[seg + 1] - lats[seg])
        sim.lon = lons[seg] + frac * (lons[seg + 1] - lons[seg])
        sim.course = bearing_deg(lats[seg], lons[seg], lats[seg + 1], lons[seg + 1])
        sim.t_us += dt_us
        sub += 1
        if sub == sim.substeps:
            sub = 0
            sim.record(v, "halt" if v == 0.0 else "drive", True)
        if s >= total - 1e-6 and v == 0.0:
            break
    # Finish the current sample period standing still.
    while sub != 0:
        sim.t_us += dt_us
        sub = (sub + 1) % sim.substeps
        if sub == 0:
            sim.record(0.0, "halt", True)


def _place_label(city: City | None, p: str | int) -> str:
    if city is None or isinstance(p, int):
        return str(p)
    return city.place(p).id


def simulate_itinerary(city: City, visits: Sequence[Visit | tuple[str | int, float]],
                       start: datetime, terminal_id: str = "SIM-0001", seed: int = 0,
                       rate_hz: float = 1.0, parked_rate_hz: float | None = None,
                       driver: DriverProfile | None = None,
                       queues_per_km: float = 0.0) -> Track:
    """Simulate a day: park at the first visit, then drive to each next one and dwell there.

    ``visits`` are :class:`Visit` or ``(place, dwell_s)``; the first visit is where the car
    starts (it stands there ``dwell_s`` before leaving).  ``queues_per_km`` adds random
    stop-and-go queue stops.  Returns the ground truth :class:`Track`.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    rng = random.Random(seed)
    drv = driver or DriverProfile(speed_factor=rng.uniform(0.88, 1.0),
                                  accel_ms2=rng.uniform(1.1, 1.8))
    vs = [v if isinstance(v, Visit) else Visit(v[0], v[1]) for v in visits]
    track = Track(terminal_id)
    sim = _Sim(track, start, rate_hz, parked_rate_hz or rate_hz, 5, rng)
    first = city.place(vs[0].place) if not isinstance(vs[0].place, int) else None
    node0 = first.node if first else int(vs[0].place)
    sim.lat, sim.lon = city.nodes[node0].lat, city.nodes[node0].lon
    sim.record(0.0, "park", False)
    prev = vs[0]
    _dwell(sim, city, prev, start)
    for visit in vs[1:]:
        leg = city.route([prev.place, visit.place])
        t_leave = sim.now
        odo0 = sim.odo
        _drive_leg(sim, leg, drv, queues_per_km)
        t_arrive = sim.now
        track.trips.append(TrueTrip(t_leave, t_arrive, _place_label(city, prev.place),
                                    _place_label(city, visit.place), sim.odo - odo0))
        _dwell(sim, city, visit, t_arrive)
        prev = visit
    return track


def _dwell(sim: _Sim, city: City | None, visit: Visit, t_start: datetime) -> None:
    """Stand at a place and record the true stop."""
    off = visit.ignition_off if visit.ignition_off is not None else visit.dwell_s >= 180.0
    if visit.dwell_s > 0:
        sim.stand(visit.dwell_s, "park" if off else "dwell", not off)
    sim.track.stops.append(TrueStop(t_start, sim.now,
                                    _place_label(city, visit.place), sim.lat, sim.lon, off))


def leg_from_linestring(line: dict[str, Any] | Sequence[Sequence[float]],
                        speed_limit_kmh: float = 60.0) -> RouteLeg:
    """A :class:`RouteLeg` from a GeoJSON LineString (geometry or Feature) or [lon, lat] list.

    A Feature's ``properties.speed_limit_kmh`` overrides ``speed_limit_kmh``.  No lights.
    """
    coords: Sequence[Sequence[float]]
    if isinstance(line, dict):
        geom = line.get("geometry", line)
        coords = geom["coordinates"]
        props = line.get("properties") or {}
        speed_limit_kmh = float(props.get("speed_limit_kmh", speed_limit_kmh))
    else:
        coords = line
    lons = [float(c[0]) for c in coords]
    lats = [float(c[1]) for c in coords]
    n = len(lats)
    return RouteLeg(list(range(n)), lats, lons, [speed_limit_kmh] * (n - 1), [None] * n)


def simulate_route(leg: RouteLeg | dict[str, Any] | Sequence[Sequence[float]],
                   start: datetime, terminal_id: str = "SIM-0001", seed: int = 0,
                   dwell_before_s: float = 600.0, dwell_after_s: float = 600.0,
                   rate_hz: float = 1.0, parked_rate_hz: float | None = None,
                   driver: DriverProfile | None = None, queues_per_km: float = 0.0,
                   speed_limit_kmh: float = 60.0) -> Track:
    """Park, drive one route (a RouteLeg or GeoJSON LineString), park again."""
    if not isinstance(leg, RouteLeg):
        leg = leg_from_linestring(leg, speed_limit_kmh)
    rng = random.Random(seed)
    drv = driver or DriverProfile(speed_factor=rng.uniform(0.88, 1.0))
    track = Track(terminal_id)
    sim = _Sim(track, start, rate_hz, parked_rate_hz or rate_hz, 5, rng)
    sim.lat, sim.lon = leg.lats[0], leg.lons[0]
    sim.record(0.0, "park", False)
    _dwell(sim, None, Visit("origin", dwell_before_s), start)
    t_leave = sim.now
    _drive_leg(sim, leg, drv, queues_per_km)
    t_arrive = sim.now
    track.trips.append(TrueTrip(t_leave, t_arrive, "origin", "destination", sim.odo))
    _dwell(sim, None, Visit("destination", dwell_after_s), t_arrive)
    return track


def simulate_parked(lat: float, lon: float, start: datetime, duration_s: float,
                    terminal_id: str = "SIM-0001", rate_hz: float = 1.0) -> Track:
    """A car parked for ``duration_s`` (e.g. overnight): the drift benchmark's ground truth."""
    track = Track(terminal_id)
    sim = _Sim(track, start, rate_hz, rate_hz, 1, random.Random(0))
    sim.lat, sim.lon = lat, lon
    sim.record(0.0, "park", False)
    _dwell(sim, None, Visit("parking", duration_s, True), start)
    return track


def synthetic_highway(start: tuple[float, float] = (30.66, 104.16), length_m: float = 40_000.0,
                      seed: int = 0, step_m: float = 200.0,
                      speed_limit_kmh: float = 110.0) -> dict[str, Any]:
    """A gently curving expressway (高速公路) as a GeoJSON LineString Feature."""
    rng = random.Random(seed)
    lat, lon = start
    heading = rng.uniform(0.0, 360.0)
    coords = [[lon, lat]]
    turn = 0.0
    for _ in range(int(length_m / step_m)):
        turn = 0.8 * turn + rng.gauss(0.0, 1.2)
        heading = (heading + turn) % 360.0
        lat, lon = destination(lat, lon, heading, step_m)
        coords.append([lon, lat])
    return {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"name": "绕城高速", "speed_limit_kmh": speed_limit_kmh}}


def start_time(day: str = "2024-05-06", hour: int = 8, tz_offset_h: int = 8) -> datetime:
    """A convenient UTC start time from a Beijing-time day and hour."""
    local = datetime.fromisoformat(day).replace(hour=hour)
    return (local - timedelta(hours=tz_offset_h)).replace(tzinfo=UTC)
