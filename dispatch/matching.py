"""Trip matching (行程匹配) and private-use suspicions (公车私用疑点).

``match_trips(db, vehicle_id, trips)`` links each telematics trip of a vehicle to the booking
it served — the vehicle's assignment whose window (widened by ``slack_before``/``slack_after``
for driving from and back to the garage) overlaps the trip, preferring the booking whose
places (pickup, destinations, the car's garage) lie nearest the trip's ends.  It moves the
booking along: the first matched trip puts it *in progress* (出车), the trip that ends at
the final place after every destination was reached completes it (收车) with the mileage of
all its trips.

A trip with no booking (无单出车), or one straying from the booked route (an end far from
every booked place, or a track leaving the corridor around the booked legs, 偏离路线), raises
a suspicion with an evidence bundle: the track, the booking (or its absence), local times
(night 夜间 / weekend 节假日 flagged), places and ETC charges when an :class:`EtcLookup` is
given (the ledger provides one; this module never imports the ledger).

Telematics stores trips and calls :func:`match_trips`; until it does,
:func:`trips_from_positions` segments stored ``positions`` (``telematics.segment``).
Matching is idempotent per (vehicle, trip start).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from geoalchemy2.shape import to_shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import service
from dispatch.models import (
    Booking,
    BookingStatus,
    Suspicion,
    SuspicionKind,
    SuspicionStatus,
    TripMatch,
)
from fleet import audit
from fleet.errors import NotFound
from fleet.fix import Fix
from fleet.models import Vehicle, VehicleCategory
from geo.geodesy import distance_m
from telematics.models import Position
from telematics.segment import DiameterSegmenter, SegmentParams


@runtime_checkable
class TripLike(Protocol):
    """What matching needs of a trip (``telematics.segment.Trip`` qualifies).

    Optional attributes read when present: ``track`` — the polyline as a sequence of
    ``(lat, lon)`` or ``(lat, lon, time)``; ``closed`` — False while the trip is still open.
    """

    start: datetime
    end: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float


@dataclass(slots=True)
class TripRecord:
    """A trip with its track, as :func:`trips_from_positions` returns it."""

    start: datetime
    end: datetime
    start_lat: float
    start_lon: float
    end_lat: float
    end_lon: float
    distance_m: float
    track: list[tuple[float, float, datetime]] = field(default_factory=list)
    closed: bool = True


@dataclass(slots=True)
class EtcCharge:
    """One ETC toll record (通行费): objects the lookup returns need these attributes."""

    time: datetime
    entry: str
    exit: str
    amount_fen: int


class EtcLookup(Protocol):
    """Hook to the ledger's ETC records for a vehicle and period (objects like EtcCharge)."""

    def charges(self, db: Session, vehicle_id: int, start: datetime, end: datetime
                ) -> Sequence[Any]: ...


#: The ETC lookup used when a caller passes none; the application wires the ledger's in
#: (fleet.wiring) so that dispatch never imports ledger.
default_etc: EtcLookup | None = None


def set_default_etc(lookup: EtcLookup | None) -> None:
    global default_etc
    default_etc = lookup


def trip_was_booked(db: Session, vehicle_id: int, start: datetime, end: datetime) -> bool:
    """Did a booking cover this trip (a served or deviating match)? For the ledger's km split."""
    stmt = select(TripMatch.id).where(
        TripMatch.vehicle_id == vehicle_id, TripMatch.booking_id.is_not(None),
        TripMatch.start_at < end, TripMatch.end_at > start).limit(1)
    return db.scalar(stmt) is not None


@dataclass(frozen=True, slots=True)
class MatchParams:
    place_radius_m: float = 1000.0  # a trip end this close to a booked place is "there"
    slack_before: timedelta = timedelta(minutes=90)  # leave the garage before the window
    slack_after: timedelta = timedelta(hours=2)  # drive back after it
    corridor_m: float = 2000.0  # track points may stray this far from the booked legs …
    corridor_ratio: float = 0.6  # … or this share of the leg's length (grid detours)
    detour_factor: float = 2.0  # without a track: distance > factor × booked route + extra
    detour_extra_m: float = 5000.0
    night: tuple[int, int] = (22, 6)
    weekend: tuple[int, ...] = (5, 6)
    tz: str = "Asia/Shanghai"
    #: categories that drive on duty without bookings (定向化保障, 执法执勤)
    exempt_categories: tuple[VehicleCategory, ...] = (VehicleCategory.dedicated,
                                                      VehicleCategory.law_enforcement)
    max_track_points: int = 400


@dataclass(slots=True)
class MatchResult:
    trip_start: datetime
    trip_end: datetime
    distance_m: float
    booking_id: int | None
    verdict: str  # served | deviation | unbooked | exempt
    suspicion_id: int | None = None
    reasons: list[str] = field(default_factory=list)


# --- geometry helpers --------------------------------------------------------------------
def _xy(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    k = 111_320.0
    return ((lon - lon0) * k * math.cos(math.radians(lat0)), (lat - lat0) * k)


def _seg_dist(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    ax, ay = a
    bx, by = b
    px, py = p
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _track(trip: Any) -> list[tuple[float, float, datetime | None]]:
    pts = getattr(trip, "track", None) or []
    return [(float(p[0]), float(p[1]), p[2] if len(p) > 2 else None) for p in pts]


def _downsample(pts: list[Any], n: int) -> list[Any]:
    if len(pts) <= n:
        return pts
    step = (len(pts) - 1) / (n - 1)
    return [pts[round(i * step)] for i in range(n)]


def _garage(v: Vehicle) -> tuple[float, float] | None:
    if v.home_garage is None:
        return None
    pt = to_shape(v.home_garage)
    return (pt.y, pt.x)


def _booking_places(b: Booking) -> list[tuple[str, float, float]]:
    places = [("pickup:" + b.pickup_address, b.pickup_lat, b.pickup_lon)]
    places += [(f"destination:{s.address}", s.lat, s.lon) for s in b.stops]
    return places


def _route(b: Booking, garage: tuple[float, float] | None) -> list[tuple[float, float]]:
    """The booked legs: garage → pickup → destinations (→ pickup) → garage."""
    pts = [(b.pickup_lat, b.pickup_lon)] + [(s.lat, s.lon) for s in b.stops]
    if b.return_trip:
        pts.append((b.pickup_lat, b.pickup_lon))
    if garage is not None:
        pts = [garage] + pts + [garage]
    return pts


def _nearest(lat: float, lon: float, places: list[tuple[str, float, float]]
             ) -> tuple[str, float]:
    best = min(places, key=lambda p: distance_m(lat, lon, p[1], p[2]))
    return best[0], distance_m(lat, lon, best[1], best[2])


def _local(t: datetime, tz: ZoneInfo) -> str:
    return t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def _is_night(t0: datetime, t1: datetime, p: MatchParams, tz: ZoneInfo) -> bool:
    from dispatch.rules import _overlaps_night

    return _overlaps_night(t0, t1, p.night[0], p.night[1], tz)


# --- matching ----------------------------------------------------------------------------
def _deviation(trip: Any, b: Booking, garage: tuple[float, float] | None,
               p: MatchParams) -> list[str]:
    """Reasons the trip strays from booking ``b`` (empty: it follows the booking)."""
    reasons: list[str] = []
    places = _booking_places(b)
    if garage is not None:
        places.append(("garage", garage[0], garage[1]))
    for label, lat, lon in (("start", trip.start_lat, trip.start_lon),
                            ("end", trip.end_lat, trip.end_lon)):
        name, d = _nearest(lat, lon, places)
        if d > p.place_radius_m:
            reasons.append(f"trip {label} is {d / 1000:.1f} km from every booked place "
                           f"(nearest {name})")
    route = _route(b, garage)
    lat0, lon0 = route[0]
    legs = [(_xy(*route[i], lat0, lon0), _xy(*route[i + 1], lat0, lon0),
             distance_m(*route[i], *route[i + 1])) for i in range(len(route) - 1)]
    track = _track(trip)
    if track and legs:
        worst = 0.0
        for lat, lon, _t in track:
            q = _xy(lat, lon, lat0, lon0)
            # how far outside the corridor of the nearest leg (negative: inside)
            excess = min(_seg_dist(q, a, b2) - max(p.corridor_m, p.corridor_ratio * L)
                         for a, b2, L in legs)
            worst = max(worst, excess)
        if worst > 0:
            reasons.append(f"track leaves the booked route by {worst / 1000:.1f} km")
    elif not track:
        booked = sum(L for _a, _b, L in legs)
        if trip.distance_m > p.detour_factor * booked + p.detour_extra_m:
            reasons.append(f"drove {trip.distance_m / 1000:.1f} km for a booked route of "
                           f"{booked / 1000:.1f} km")
    return reasons


def _choose(trip: Any, candidates: list[Booking], garage: tuple[float, float] | None
            ) -> Booking | None:
    def score(b: Booking) -> float:
        places = _booking_places(b)
        if garage is not None:
            places.append(("garage", garage[0], garage[1]))
        return (_nearest(trip.start_lat, trip.start_lon, places)[1]
                + _nearest(trip.end_lat, trip.end_lon, places)[1])
    return min(candidates, key=score) if candidates else None


def _advance(db: Session, b: Booking, trip: Any, p: MatchParams) -> None:
    """Move the booking along from the car's movement (出车 / 收车) and total its mileage."""
    if b.status == BookingStatus.assigned:
        service.start(db, None, b.id, at=trip.start, reason="行程匹配: 车辆已出发")
    trips = list(db.scalars(select(TripMatch).where(TripMatch.booking_id == b.id)
                            .order_by(TripMatch.start_at)))
    total = sum(t.distance_m for t in trips)
    if b.status == BookingStatus.in_progress:
        final = (b.pickup_lat, b.pickup_lon) if b.return_trip else (b.stops[-1].lat,
                                                                   b.stops[-1].lon)
        pending = [(s.lat, s.lon) for s in b.stops]
        done_at: datetime | None = None
        for t in trips:
            if not t.closed:
                break
            if pending and distance_m(t.end_lat, t.end_lon, *pending[0]) <= p.place_radius_m:
                pending.pop(0)
                if not pending and not b.return_trip:
                    done_at = t.end_at
                    break
            elif not pending and distance_m(t.end_lat, t.end_lon, *final) <= p.place_radius_m:
                done_at = t.end_at
                break
        if done_at is not None:
            service.complete(db, None, b.id, at=done_at, distance_m=total,
                             reason="行程匹配: 已到达终点")
            return
    b.distance_m = total


def match_trips(db: Session, vehicle_id: int, trips: Sequence[TripLike], *,
                etc: EtcLookup | None = None, params: MatchParams | None = None
                ) -> list[MatchResult]:
    """Link a vehicle's trips to bookings, advance them, raise suspicions (see module doc).

    Called by telematics when trips are stored (and by :func:`match_period`).  Idempotent per
    (vehicle, trip start): a trip matched again updates its match and its suspicion.  Never
    commits.
    """
    p = params or MatchParams()
    etc = etc or default_etc
    tz = ZoneInfo(p.tz)
    vehicle = db.get(Vehicle, vehicle_id)
    if vehicle is None:
        raise NotFound(f"vehicle {vehicle_id} not found")
    garage = _garage(vehicle)
    results: list[MatchResult] = []
    for trip in sorted(trips, key=lambda t: t.start):
        closed = bool(getattr(trip, "closed", True))
        pairs = service.holding_assignments(db, vehicle_id, trip.start - p.slack_after,
                                            trip.end + p.slack_before)
        booking = _choose(trip, [b for _a, b in pairs], garage)
        reasons: list[str] = []
        if booking is not None:
            reasons = _deviation(trip, booking, garage, p)
            verdict = "deviation" if reasons else "served"
        elif vehicle.category in p.exempt_categories:
            verdict = "exempt"
        else:
            verdict = "unbooked"
            reasons = ["no booking of this vehicle covers the trip (无单出车)"]
        m = db.scalar(select(TripMatch).where(TripMatch.vehicle_id == vehicle_id,
                                              TripMatch.start_at == trip.start))
        if m is None:
            m = TripMatch(vehicle_id=vehicle_id, start_at=trip.start)
            db.add(m)
        m.booking_id = booking.id if booking else None
        m.end_at, m.distance_m, m.closed, m.verdict = trip.end, trip.distance_m, closed, verdict
        m.start_lat, m.start_lon = trip.start_lat, trip.start_lon
        m.end_lat, m.end_lon = trip.end_lat, trip.end_lon
        db.flush()
        result = MatchResult(trip.start, trip.end, trip.distance_m, m.booking_id, verdict,
                             reasons=reasons)
        if booking is not None:
            audit.record(db, None, "match_trip", "booking", booking.id, verdict=verdict,
                         trip_start=trip.start, trip_end=trip.end, distance_m=trip.distance_m)
            _advance(db, booking, trip, p)
        if verdict in ("deviation", "unbooked"):
            s = _suspect(db, vehicle, m, trip, booking, reasons, etc, p, tz)
            result.suspicion_id = s.id
        results.append(result)
    return results


def _suspect(db: Session, vehicle: Vehicle, m: TripMatch, trip: Any, booking: Booking | None,
             reasons: list[str], etc: EtcLookup | None, p: MatchParams, tz: ZoneInfo
             ) -> Suspicion:
    night = _is_night(trip.start, trip.end, p, tz)
    weekend = any(d.weekday() in p.weekend for d in (trip.start.astimezone(tz),
                                                     trip.end.astimezone(tz)))
    places: list[tuple[str, float, float]] = []
    if booking is not None:
        places = _booking_places(booking)
    garage = _garage(vehicle)
    if garage is not None:
        places.append(("garage", garage[0], garage[1]))

    def place(lat: float, lon: float) -> dict[str, Any]:
        out: dict[str, Any] = {"lat": lat, "lon": lon}
        if places:
            name, d = _nearest(lat, lon, places)
            out.update(nearest=name, nearest_m=round(d))
        return out

    charges: list[dict[str, Any]] | None = None
    if etc is not None:
        charges = [{"time": getattr(c, "time", None), "entry": getattr(c, "entry", ""),
                    "exit": getattr(c, "exit", ""),
                    "amount_fen": int(getattr(c, "amount_fen", 0))}
                   for c in etc.charges(db, vehicle.id, trip.start, trip.end)]
    track = _downsample([[round(lat, 6), round(lon, 6)] + ([t.isoformat()] if t else [])
                         for lat, lon, t in _track(trip)], p.max_track_points)
    evidence = audit._jsonable({
        "vehicle": {"id": vehicle.id, "plate": vehicle.plate, "category": vehicle.category,
                    "department_id": vehicle.department_id},
        "trip": {"start": trip.start, "end": trip.end, "distance_m": round(trip.distance_m),
                 "closed": m.closed},
        "times": {"start_local": _local(trip.start, tz), "end_local": _local(trip.end, tz),
                  "tz": p.tz, "night": night, "weekend": weekend},
        "places": {"start": place(trip.start_lat, trip.start_lon),
                   "end": place(trip.end_lat, trip.end_lon)},
        "booking": None if booking is None else {
            "id": booking.id, "status": booking.status, "purpose": booking.purpose,
            "department_id": booking.department_id, "start_at": booking.start_at,
            "end_at": booking.end_at, "pickup": booking.pickup_address,
            "destinations": [s.address for s in booking.stops]},
        "etc": charges,
        "track": track,
        "reasons": reasons,
    })
    kind = SuspicionKind.route_deviation if booking is not None else SuspicionKind.no_booking
    severity = "high" if (night or weekend or kind == SuspicionKind.no_booking and
                          trip.distance_m > 20_000) else "medium"
    s = db.scalar(select(Suspicion).where(Suspicion.trip_match_id == m.id))
    created = s is None
    if s is None:
        s = Suspicion(trip_match_id=m.id, status=SuspicionStatus.open)
        db.add(s)
    s.vehicle_id, s.department_id = vehicle.id, vehicle.department_id
    s.booking_id = booking.id if booking is not None else None
    s.kind, s.severity, s.start_at, s.end_at = kind, severity, trip.start, trip.end
    s.evidence = evidence
    db.flush()
    if created:
        audit.record(db, None, "raise", "suspicion", s.id, reason="; ".join(reasons),
                     vehicle_id=vehicle.id, kind=kind, severity=severity,
                     booking_id=s.booking_id)
    return s


# --- trips from stored positions ---------------------------------------------------------
def trips_from_positions(db: Session, vehicle_id: int, start: datetime, end: datetime,
                         params: SegmentParams | None = None) -> list[TripRecord]:
    """Segment a vehicle's stored ``positions`` in [start, end) into trips with tracks."""
    rows = db.execute(select(Position.terminal_id, Position.time, Position.lat, Position.lon,
                             Position.speed_kmh, Position.course, Position.altitude_m,
                             Position.hdop, Position.satellites, Position.valid,
                             Position.protocol, Position.alarm, Position.status,
                             Position.extras)
                      .where(Position.vehicle_id == vehicle_id, Position.time >= start,
                             Position.time < end).order_by(Position.time))
    fixes = [Fix(r.terminal_id, r.time, r.lat, r.lon, r.speed_kmh, r.course, r.altitude_m,
                 r.hdop, r.satellites, r.valid, r.protocol, r.alarm, r.status,
                 dict(r.extras or {})) for r in rows]
    seg = DiameterSegmenter(params).segment(fixes)
    out: list[TripRecord] = []
    times = [f.time for f in seg.fixes]
    for t in seg.trips:
        i0, i1 = bisect.bisect_left(times, t.start), bisect.bisect_right(times, t.end)
        track = [(f.lat, f.lon, f.time) for f in seg.fixes[i0:i1]]
        out.append(TripRecord(t.start, t.end, t.start_lat, t.start_lon, t.end_lat, t.end_lon,
                              t.distance_m, track, t.closed))
    return out


def match_period(db: Session, vehicle_id: int, start: datetime, end: datetime, *,
                 etc: EtcLookup | None = None, params: MatchParams | None = None,
                 segment_params: SegmentParams | None = None) -> list[MatchResult]:
    """Segment stored positions of the period and match the trips (end-to-end helper)."""
    trips = trips_from_positions(db, vehicle_id, start, end, segment_params)
    return match_trips(db, vehicle_id, trips, etc=etc, params=params)
