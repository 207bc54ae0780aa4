"""An official-car day as a routing :class:`~scheduler.model.Problem` (pure, no database).

Shared by the planning service (:mod:`scheduler.service`, which reads bookings, cars and
drivers from the database) and the city-day generator (:mod:`simulators.demand`), so that the
benchmark measures exactly the model the API solves.

How a government-car booking maps onto the pickup-and-delivery model
--------------------------------------------------------------------
An assignment (派车单) holds its car and driver for the whole booked window
``[start_at, end_at]`` — the driver waits while the passengers are at their meeting, and the
dispatch rules refuse any overlapping assignment of the same car or driver.  So:

* the **pickup** is at the pickup address, service starting exactly at ``start_at`` (the car
  may arrive early and wait);
* the **delivery** is where the car is when the booking ends — the pickup address again for
  a return trip (往返), the last destination otherwise — not before ``end_at`` (later only
  when the direct drive from the pickup needs longer than the booked window);
* every car has **one seat** in the model and every booking takes it: a car serves one
  booking at a time, so a committed plan never overlaps in the dispatch sense.  The real
  seat count becomes the booking's ``allowed_vehicles`` (passenger seats ≥ passengers, same
  category when one is asked for); a booking no car of its category is big enough for is
  rejected here with ``too_many_passengers`` (the solver's own pre-check would only see the
  one-seat model);
* **shifts**: a driver works one duty (车班) a day inside a shift, a car may be driven by
  several drivers a day.  :func:`roster` decides the duties before routing: every car gets
  a first driver (demand-weighted exact matching of cars and drivers), and drivers left
  over take a second duty on a car outside its first duty's hours — e.g. early shift
  07:00–17:00, then the late-shift driver from 17:00 to 22:00, the car handed over at the
  garage.  Each duty is a routing vehicle (the second with id ``"<car>/2"`` and
  ``Vehicle.car`` naming the car); duty windows of one car never overlap;
* the driving *inside* a booking (pickup → destinations → end) does not depend on the plan;
  it is carried as ``Trip.tour_m`` and added to the reported kilometres, while the solver
  minimises the empty running between bookings and the garages.

Times are seconds from local midnight (Asia/Shanghai) of the planned day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scheduler.explain import unserved
from scheduler.model import Booking, Driver, Plan, Priority, Problem, StopRef, Unserved, Vehicle
from scheduler.solver import SolveOptions

LatLon = tuple[float, float]
Window = tuple[float, float]
DAY = 86_400
#: Default driver shift when no shift model exists: 07:00–22:00 local.
DEFAULT_SHIFT: Window = (7 * 3600, 22 * 3600)
#: A second duty shorter than this is not worth a handover.
MIN_DUTY = 3600.0
#: Matrix function: points → (distances in metres, durations in seconds).
MatrixFn = Callable[[Sequence[LatLon]], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Trip:
    """One booking as the planner sees it."""

    id: str
    pickup: LatLon
    #: Where the car is when the booking ends (the pickup for a return trip).
    end: LatLon
    start_s: float
    end_s: float
    passengers: int = 1
    category: str | None = None
    priority: Priority = "ordinary"
    #: Metres driven during the booking itself (pickup → destinations → end).
    tour_m: float = 0.0


@dataclass(frozen=True)
class Car:
    """A vehicle: passenger seats (without the driver's), category, licence to drive it."""

    id: str
    garage: LatLon
    capacity: int
    category: str = "general"
    licence: str | None = None
    window: Window = (0, DAY)


@dataclass(frozen=True)
class Crew:
    """A driver: licence classes covered, shifts, daily driving limit."""

    id: str
    licences: frozenset[str] = frozenset()
    shifts: tuple[Window, ...] = (DEFAULT_SHIFT,)
    max_driving: float = 8 * 3600


@dataclass
class Day:
    """The routing problem of a day plus what the planner needs around it."""

    problem: Problem
    trips: dict[str, Trip]
    cars: dict[str, Car]
    #: Bookings rejected before the solver (codes the one-seat model cannot explain).
    rejected: list[Unserved] = field(default_factory=list)
    #: node index of each distinct point
    node_of: dict[LatLon, int] = field(default_factory=dict)
    #: car id → its routing vehicles (duties), first duty (id = car id) first
    duties: dict[str, list[str]] = field(default_factory=dict)

    def booking(self, t: Trip) -> Booking:
        """The model booking of a trip arriving later (e.g. an urgent one)."""
        return booking_of(t, self.node_of, self.problem.durations, list(self.cars.values()),
                          self.duties)

    def tour_m(self, plan: Plan) -> float:
        """Metres driven inside the served bookings."""
        return sum(self.trips[b].tour_m for r in plan.routes for b in r.booking_ids()
                   if b in self.trips)

    def km(self, plan: Plan) -> float:
        """Total kilometres of a plan: empty running (the solver's distance) + bookings."""
        return (plan.total_distance + self.tour_m(plan)) / 1000.0


def _key(p: LatLon) -> LatLon:
    return (round(float(p[0]), 6), round(float(p[1]), 6))


def _fits(t: Trip, c: Car) -> bool:
    return c.capacity >= t.passengers and (t.category is None or c.category == t.category)


def booking_of(t: Trip, node_of: dict[LatLon, int], durations: np.ndarray,
               cars: Sequence[Car], duties: Mapping[str, Sequence[str]] | None = None
               ) -> Booking:
    """The model booking of a trip (one seat; real seats and category as allowed cars).

    ``duties`` (car id → its routing vehicle ids, :attr:`Day.duties`) widens the allowed
    cars to all their duties; without it the car ids themselves are the vehicles.
    """
    p, d = node_of[_key(t.pickup)], node_of[_key(t.end)]
    start = float(round(t.start_s))
    drive = float(durations[p, d])
    end = float(round(max(t.end_s, start + drive)))
    allowed = frozenset(vid for c in cars if _fits(t, c)
                        for vid in (duties.get(c.id, (c.id,)) if duties else (c.id,)))
    return Booking(t.id, p, d, pickup_window=(start, start),
                   delivery_window=(max(start + drive, float(round(t.end_s))), end),
                   passengers=1, priority=t.priority, category=t.category,
                   allowed_vehicles=allowed)


def _demand(trips: Sequence[Trip], cars: Sequence[Car]):
    """value(car, window): booked minutes the car could carry inside the window."""
    starts = np.array([t.start_s for t in trips], dtype=float)
    ends = np.array([t.end_s for t in trips], dtype=float)
    minutes = (ends - starts) / 60.0
    kinds: dict[tuple[int, str], np.ndarray] = {}
    cache: dict[tuple[int, str, Window], float] = {}

    def value(c: Car, w: Window) -> float:
        key = (c.capacity, c.category)
        if key not in kinds:
            kinds[key] = np.array([_fits(t, c) for t in trips], dtype=bool)
        ck = (*key, w)
        if ck not in cache:
            m = kinds[key] & (starts >= w[0]) & (ends <= w[1])
            cache[ck] = float(minutes[m].sum()) if len(trips) else 0.0
        return cache[ck]

    return value


def _cut(w: Window, car: Window) -> Window | None:
    lo, hi = max(w[0], car[0]), min(w[1], car[1])
    return (lo, hi) if hi - lo > 0 else None


def roster(trips: Sequence[Trip], cars: Sequence[Car], crew: Sequence[Crew]
           ) -> list[tuple[Car, str, Window]]:
    """The duties of the day: ``(car, duty id, window)``, one driver each.

    1. Every car gets a first duty: an exact max-weight matching of cars and drivers
       (licence class; weight = booked minutes the car could carry inside the driver's
       shift, so the morning peak gets its cars).
    2. Drivers left over take a second duty on a car, in the part of their shift outside
       the car's first duty (at least :data:`MIN_DUTY`), matched the same way: an early
       car 07:00–17:00 gets the late driver 17:00–22:00.  The car is handed over at the
       garage at the boundary, so the two duties never overlap.

    A car no driver can take keeps its own window and no duty (the solver's pairing then
    leaves it out).  Drivers with one common shift (the database's default) yield one duty
    per car, with the car's id.
    """
    from scheduler.drivers import _match  # exact matching (min-cost flow)

    value = _demand(trips, cars)
    by_id = {c.id: c for c in cars}
    crew_by = {d.id: d for d in crew}

    def can(d: Crew, c: Car) -> bool:
        return c.licence is None or c.licence in d.licences

    first_w: dict[tuple[str, str], Window] = {}
    weights: dict[str, dict[str, int]] = {}
    for c in cars:
        weights[c.id] = {}
        for d in crew:
            if not can(d, c):
                continue
            wins = [w for s in d.shifts if (w := _cut(s, c.window))]
            if not wins:
                continue
            w = max(wins, key=lambda x: (value(c, x), x[1] - x[0]))
            first_w[c.id, d.id] = w
            weights[c.id][d.id] = int(value(c, w)) + int((w[1] - w[0]) // 600) + 1
    first = _match(weights, cover_all=False) or {}
    out = [(by_id[cid], cid, first_w[cid, did]) for cid, did in first.items()]
    spare = [d for d in crew if d.id not in set(first.values())]
    second_w: dict[tuple[str, str], Window] = {}
    weights = {}
    for cid, did in first.items():
        c, (a, b) = by_id[cid], first_w[cid, did]
        weights[cid] = {}
        for d in spare:
            if not can(d, c):
                continue
            wins = []
            for s in d.shifts:
                for part in ((max(s[0], b), s[1]), (s[0], min(s[1], a))):
                    w = _cut(part, c.window)
                    if w and w[1] - w[0] >= MIN_DUTY:
                        wins.append(w)
            if not wins:
                continue
            w = max(wins, key=lambda x: (value(c, x), x[1] - x[0]))
            if value(c, w) <= 0:
                continue
            second_w[cid, d.id] = w
            weights[cid][d.id] = int(value(c, w)) + 1
    second = _match({k: v for k, v in weights.items() if v}, cover_all=False) or {}
    out += [(by_id[cid], f"{cid}/2", second_w[cid, did]) for cid, did in second.items()]
    del crew_by
    return out


def build_day(trips: Sequence[Trip], cars: Sequence[Car], crew: Sequence[Crew],
              matrix: MatrixFn, frozen: dict[str, list[str]] | None = None,
              extra_points: Sequence[LatLon] = (), name: str = "day") -> Day:
    """The routing problem of a day.

    ``frozen`` maps a car id to the trip ids (in order) that must open its route: bookings
    already under way or assigned (they are kept as they are; the solver plans around them).
    ``extra_points`` get nodes too (e.g. urgent bookings that will be inserted later).
    """
    frozen = frozen or {}
    points: list[LatLon] = []
    node_of: dict[LatLon, int] = {}
    for pt in ([c.garage for c in cars] + [x for t in trips for x in (t.pickup, t.end)]
               + list(extra_points)):
        k = _key(pt)
        if k not in node_of:
            node_of[k] = len(points)
            points.append(k)
    dist, dur = matrix(points) if points else (np.zeros((0, 0)), np.zeros((0, 0)))
    dist = np.asarray(dist, dtype=float)
    dur = np.asarray(dur, dtype=float)
    order = {c.id: i for i, c in enumerate(cars)}
    duties = roster(trips, cars, crew) if crew else [(c, c.id, c.window) for c in cars]
    duty_ids: dict[str, list[str]] = {}
    for c, vid, _w in sorted(duties, key=lambda x: (x[0].id, x[1] != x[0].id)):
        duty_ids.setdefault(c.id, []).append(vid)
    has_duty = {c.id for c, _v, _w in duties}
    duties += [(c, c.id, c.window) for c in cars if c.id not in has_duty]
    vehicles = [Vehicle(vid, seats=1, category=c.category, start=node_of[_key(c.garage)],
                        window=w, licence=c.licence, car=None if vid == c.id else c.id)
                for c, vid, w in sorted(duties, key=lambda x: (order[x[0].id], x[1] != x[0].id))]
    frozen_ids = {tid for legs in frozen.values() for tid in legs}
    bookings: list[Booking] = []
    rejected: list[Unserved] = []
    for t in trips:
        b = booking_of(t, node_of, dur, cars, duty_ids)
        same_kind = [c for c in cars if t.category is None or c.category == t.category]
        if same_kind and not b.allowed_vehicles and t.id not in frozen_ids:
            real = Booking(t.id, b.pickup, b.delivery, passengers=t.passengers,
                           category=t.category)
            rejected.append(unserved("too_many_passengers", real,
                                     seats=max(c.capacity for c in same_kind)))
            continue
        if t.id in frozen_ids:  # the car it already has, whatever the rules say now
            owner = next(vid for vid, legs in frozen.items() if t.id in legs)
            b = Booking(b.id, b.pickup, b.delivery, b.pickup_window, b.delivery_window,
                        passengers=1, priority=b.priority, allowed_vehicles=frozenset({owner}))
        bookings.append(b)
    drivers = [Driver(d.id, shifts=d.shifts, licences=d.licences, max_driving=d.max_driving)
               for d in crew]
    known = {b.id for b in bookings}
    legs = {vid: [StopRef(tid, k) for tid in tids if tid in known
                  for k in ("pickup", "delivery")]
            for vid, tids in frozen.items() if any(c.id == vid for c in cars)}
    problem = Problem(dist, dur, bookings, vehicles, drivers, nodes=points,
                      frozen={k: v for k, v in legs.items() if v}, name=name)
    return Day(problem, {t.id: t for t in trips}, {c.id: c for c in cars}, rejected, node_of,
               duty_ids)


def day_options(time_limit: float, n_bookings: int) -> SolveOptions:
    """Solver options for an official-car day.

    Days of more than ``interval_min_bookings`` bookings without frozen legs are
    fixed-interval problems and go to the dedicated local search (:mod:`scheduler.intervals`)
    for the whole time.  Otherwise vroom explores thoroughly on small days and fast on big
    ones (its construction phase ignores the time limit); on big days, where the OR-Tools
    model would take longer to build than the time left, vroom gets most of the time.  No
    break allowance: the car waits through every booking, so breaks are taken there (the
    validator still checks).
    """
    big = n_bookings > 500
    return SolveOptions(time_limit=time_limit, break_allowance=False,
                        vroom_exploration=5 if n_bookings <= 200 else 1 if not big else 0,
                        vroom_share=0.8 if big else SolveOptions.vroom_share)
