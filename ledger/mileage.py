"""Mileage (行驶里程): daily per vehicle, booked vs unbooked, odometer reconciliation,
monthly closing (月结).

Input is a list of trip-like records (:class:`TripRecord`): today they come from stored
positions via :func:`trips_from_positions` (telematics.segment); when telematics stores trips,
pass those instead. Whether a trip was booked is a callable (:data:`BookedPredicate`) given by
the caller — the dispatch domain provides it; ledger never imports dispatch.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fleet.errors import Conflict, Invalid
from fleet.fix import Fix
from fleet.models import User
from geo.geodesy import haversine_m
from ledger import service
from ledger.models import CostCategory, EntryKind, LedgerEntry, OdometerReading
from telematics.mileage import CST, odometer_km_delta
from telematics.models import Position
from telematics.segment import DiameterSegmenter, SegmentParams


class TripRecord(Protocol):
    """What ledger needs of a trip (telematics' stored trips will satisfy it)."""

    @property
    def vehicle_id(self) -> int: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...
    @property
    def distance_m(self) -> float: ...


BookedPredicate = Callable[[TripRecord], bool]
TripsProvider = Callable[[Session, int, datetime, datetime], Sequence[TripRecord]]


def never_booked(_trip: TripRecord) -> bool:
    return False


_booking_oracle: BookedPredicate | None = None


def register_booking_oracle(fn: BookedPredicate | None) -> None:
    """Dispatch registers its "was this trip booked?" predicate here at start-up."""
    global _booking_oracle
    _booking_oracle = fn


def booking_oracle() -> BookedPredicate:
    return _booking_oracle or never_booked


@dataclass(frozen=True, slots=True)
class LedgerTrip:
    """A trip as ledger sees it; ``path`` is a thinned list of (lat, lon) along the way."""

    vehicle_id: int
    start: datetime
    end: datetime
    distance_m: float
    path: tuple[tuple[float, float], ...] = ()


def _fix(p: Position) -> Fix:
    return Fix(terminal_id=p.terminal_id, time=p.time, lat=p.lat, lon=p.lon,
               speed_kmh=p.speed_kmh, course=p.course, altitude_m=p.altitude_m, hdop=p.hdop,
               satellites=p.satellites, valid=p.valid, protocol=p.protocol,  # type: ignore[arg-type]
               alarm=p.alarm, status=p.status, extras=dict(p.extras or {}))


def load_fixes(db: Session, vehicle_id: int, start: datetime, end: datetime) -> list[Fix]:
    stmt = (select(Position).where(Position.vehicle_id == vehicle_id, Position.time >= start,
                                   Position.time < end).order_by(Position.time))
    return [_fix(p) for p in db.scalars(stmt)]


def trips_from_fixes(vehicle_id: int, fixes: Sequence[Fix], path_step_s: float = 30.0,
                     params: SegmentParams | None = None) -> list[LedgerTrip]:
    seg = DiameterSegmenter(params or SegmentParams()).segment(list(fixes))
    out = []
    for t in seg.trips:
        path: list[tuple[float, float]] = []
        last: datetime | None = None
        for f in seg.fixes:
            if t.start <= f.time <= t.end and (
                    last is None or (f.time - last).total_seconds() >= path_step_s):
                path.append((f.lat, f.lon))
                last = f.time
        path.append((t.end_lat, t.end_lon))
        out.append(LedgerTrip(vehicle_id, t.start, t.end, t.distance_m, tuple(path)))
    return out


def trips_from_positions(db: Session, vehicle_id: int, start: datetime, end: datetime
                         ) -> list[LedgerTrip]:
    """Trips of one vehicle in [start, end) segmented from its stored positions."""
    return trips_from_fixes(vehicle_id, load_fixes(db, vehicle_id, start, end))


def month_window(period: str) -> tuple[datetime, datetime]:
    """A month in Beijing time as a UTC [start, end) window."""
    year, month = service.parse_period(period)
    start = datetime(year, month, 1, tzinfo=CST)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=CST)
    return start.astimezone(UTC), end.astimezone(UTC)


@dataclass(slots=True)
class DayMileage:
    day: date
    total_m: float = 0.0
    booked_m: float = 0.0
    unbooked_m: float = 0.0
    trips: int = 0


def _split_by_day(trip: TripRecord) -> list[tuple[date, float]]:
    """A trip's distance spread over local days in proportion to time (midnight crossings)."""
    s, e = trip.start.astimezone(CST), trip.end.astimezone(CST)
    if s.date() == e.date() or e <= s:
        return [(s.date(), float(trip.distance_m))]
    total = (e - s).total_seconds()
    parts = []
    cur = s
    while cur < e:
        nxt = min(e, datetime.combine(cur.date() + timedelta(days=1), datetime.min.time(),
                                      tzinfo=CST))
        parts.append((cur.date(), float(trip.distance_m) * (nxt - cur).total_seconds() / total))
        cur = nxt
    return parts


def daily_mileage(trips: Sequence[TripRecord], is_booked: BookedPredicate
                  ) -> list[DayMileage]:
    """Metres per local day, split into booked (有预约) and unbooked (无预约) km."""
    days: dict[date, DayMileage] = {}
    for t in trips:
        booked = bool(is_booked(t))
        for day, metres in _split_by_day(t):
            d = days.setdefault(day, DayMileage(day))
            d.total_m += metres
            if booked:
                d.booked_m += metres
            else:
                d.unbooked_m += metres
        days[_split_by_day(t)[0][0]].trips += 1
    return [days[k] for k in sorted(days)]


# --------------------------------------------------------------------------- odometer


@dataclass(slots=True)
class Reconciliation:
    """Computed mileage against the terminal odometer and the manual readings."""

    computed_m: float
    terminal_m: float | None
    terminal_diff_pct: float | None
    terminal_flagged: bool
    manual_m: float | None
    manual_computed_m: float | None
    manual_diff_pct: float | None
    manual_flagged: bool
    notes: list[str] = field(default_factory=list)


def record_odometer(db: Session, actor: User | None, vehicle_id: int, read_at: datetime,
                    odometer_m: int, note: str = "", source: str = "manual"
                    ) -> OdometerReading:
    """A manual odometer reading (人工抄表); must not go backwards."""
    service.require_writer(actor, "record odometer readings")
    service.vehicle_for(db, actor, vehicle_id)
    if odometer_m < 0:
        raise Invalid("odometer reading must be >= 0", field="odometer_m")
    before = db.scalar(select(func.max(OdometerReading.odometer_m)).where(
        OdometerReading.vehicle_id == vehicle_id, OdometerReading.read_at <= read_at))
    if before is not None and odometer_m < before:
        raise Invalid(f"odometer reading {odometer_m} m is below an earlier one ({before} m)",
                      field="odometer_m")
    r = OdometerReading(vehicle_id=vehicle_id, read_at=read_at, odometer_m=odometer_m,
                        source=source, actor_id=service.actor_id(actor), note=note)
    db.add(r)
    db.flush()
    return r


def _trips_metres_between(trips: Sequence[TripRecord], a: datetime, b: datetime) -> float:
    total = 0.0
    for t in trips:
        lo, hi = max(a, t.start), min(b, t.end)
        span = (t.end - t.start).total_seconds()
        if hi <= lo:
            continue
        total += float(t.distance_m) * ((hi - lo).total_seconds() / span if span > 0 else 1.0)
    return total


def _flag(computed: float, other: float, pct: float, abs_m: float) -> tuple[float, bool]:
    diff = other - computed
    p = 100.0 * diff / max(abs(computed), 1.0)
    return p, abs(diff) > abs_m and abs(p) > pct


def reconcile(db: Session, vehicle_id: int, start: datetime, end: datetime,
              trips: Sequence[TripRecord], fixes: Sequence[Fix] | None = None,
              tolerance_pct: float = 5.0, tolerance_m: float = 1000.0) -> Reconciliation:
    """Reconcile computed mileage with the terminal odometer (JT/T 808 0x01) and with the
    manual readings taken inside [start, end)."""
    computed = sum(float(t.distance_m) for t in trips)
    fixes = load_fixes(db, vehicle_id, start, end) if fixes is None else fixes
    notes: list[str] = []
    term_km = odometer_km_delta(fixes)
    term_m = None if term_km is None else term_km * 1000.0
    term_pct, term_flag = (None, False) if term_m is None else _flag(
        computed, term_m, tolerance_pct, tolerance_m)
    if term_flag:
        notes.append(f"terminal odometer {term_m:.0f} m vs computed {computed:.0f} m")
    readings = list(db.scalars(select(OdometerReading).where(
        OdometerReading.vehicle_id == vehicle_id, OdometerReading.read_at >= start,
        OdometerReading.read_at < end).order_by(OdometerReading.read_at)))
    manual_m = manual_comp = manual_pct = None
    manual_flag = False
    if len(readings) >= 2:
        manual_m = float(readings[-1].odometer_m - readings[0].odometer_m)
        manual_comp = _trips_metres_between(trips, readings[0].read_at, readings[-1].read_at)
        manual_pct, manual_flag = _flag(manual_comp, manual_m, tolerance_pct, tolerance_m)
        if manual_flag:
            notes.append(f"manual readings {manual_m:.0f} m vs computed {manual_comp:.0f} m")
    return Reconciliation(computed, term_m, term_pct, term_flag, manual_m, manual_comp,
                          manual_pct, manual_flag, notes)


# --------------------------------------------------------------------------- monthly


@dataclass(slots=True)
class MonthMileage:
    vehicle_id: int
    period: str
    total_m: float
    booked_m: float
    unbooked_m: float
    trips: int
    days: list[DayMileage]
    reconciliation: Reconciliation
    closed: bool


def month_mileage(db: Session, actor: User | None, vehicle_id: int, period: str,
                  is_booked: BookedPredicate | None = None,
                  trips: Sequence[TripRecord] | None = None,
                  trips_provider: TripsProvider | None = None) -> MonthMileage:
    service.vehicle_for(db, actor, vehicle_id)
    start, end = month_window(period)
    fixes = None
    if trips is None:
        if trips_provider is not None:
            trips = trips_provider(db, vehicle_id, start, end)
        else:
            fixes = load_fixes(db, vehicle_id, start, end)
            trips = trips_from_fixes(vehicle_id, fixes)
    days = daily_mileage(trips, is_booked or booking_oracle())
    rec = reconcile(db, vehicle_id, start, end, trips, fixes)
    return MonthMileage(vehicle_id, period, sum(d.total_m for d in days),
                        sum(d.booked_m for d in days), sum(d.unbooked_m for d in days),
                        len(trips), days, rec, service.is_closed(db, vehicle_id, period))


def close_month(db: Session, actor: User | None, vehicle_id: int, period: str,
                is_booked: BookedPredicate | None = None,
                trips: Sequence[TripRecord] | None = None,
                trips_provider: TripsProvider | None = None) -> LedgerEntry:
    """月结: book the vehicle's month (mileage, costs, reconciliation) as a closing entry.

    After it no entry dated in that month can be booked for the vehicle.
    """
    service.require_writer(actor, "close months")
    if service.is_closed(db, vehicle_id, period):
        raise Conflict(f"month {period} of vehicle {vehicle_id} is already closed")
    m = month_mileage(db, actor, vehicle_id, period, is_booked, trips, trips_provider)
    costs = dict(db.execute(
        select(LedgerEntry.category, func.sum(LedgerEntry.amount_fen))
        .where(LedgerEntry.vehicle_id == vehicle_id, LedgerEntry.period == period,
               LedgerEntry.category.is_not(None))
        .group_by(LedgerEntry.category)).all())
    year, month = service.parse_period(period)
    last_day = date(year, month, calendar.monthrange(year, month)[1])
    rec = m.reconciliation
    payload: dict[str, Any] = {
        "total_m": round(m.total_m), "booked_m": round(m.booked_m),
        "unbooked_m": round(m.unbooked_m), "trips": m.trips,
        "costs_fen": {str(k): int(v) for k, v in costs.items()},
        "running_fen": int(sum(v for k, v in costs.items()
                               if k not in (CostCategory.purchase,
                                            CostCategory.disposal_proceeds))),
        "terminal_m": None if rec.terminal_m is None else round(rec.terminal_m),
        "manual_m": None if rec.manual_m is None else round(rec.manual_m),
        "flags": rec.notes,
    }
    return service.book(db, actor, kind=EntryKind.closing, occurred_on=last_day,
                        vehicle_id=vehicle_id, distance_m=round(m.total_m),
                        reason=f"月结 {period}", payload=payload)


def distance_to_path_m(lat: float, lon: float, path: Sequence[tuple[float, float]]) -> float:
    """Closest approach of a thinned path to a point (vertex distance; paths are dense)."""
    if not path:
        return float("inf")
    return min(haversine_m(lat, lon, p[0], p[1]) for p in path)
