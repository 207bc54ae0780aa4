"""Solver-independent problem model of the scheduler.

Everything here is plain data: no OR-Tools, no vroom.  The solver, the validator, the
explainer and the incremental insertion all read this model, and only the validator decides
whether a :class:`Plan` is acceptable.

Conventions
-----------
* A *node* is an index into ``Problem.distances`` / ``Problem.durations`` (a location).
  Several stops may share a node (two bookings from the same building).
* Times are seconds from the start of the planning day (integers or floats); distances are
  metres.  Benchmark instances use dimensionless Euclidean units in the same fields.
* A booking is a pickup-and-delivery pair.  ``pickup=None`` marks a *delivery-only* job
  whose load is taken on at the vehicle's start (classic VRPTW customers, e.g. Solomon).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Priority = Literal["emergency", "leadership", "ordinary"]
StopKind = Literal["start", "pickup", "delivery", "end"]

#: Higher rank = more important.  Used for penalties and for pre-emption.
PRIORITY_RANK: dict[str, int] = {"ordinary": 0, "leadership": 1, "emergency": 2}
#: Multiplier of the drop penalty per priority: an emergency is worth 100 ordinary trips.
PRIORITY_WEIGHT: dict[str, int] = {"ordinary": 1, "leadership": 10, "emergency": 100}

Window = tuple[float, float]


@dataclass(frozen=True)
class Booking:
    """One trip request: carry ``passengers`` from ``pickup`` to ``delivery``."""

    id: str
    pickup: int | None
    delivery: int
    pickup_window: Window = (0, 86_400)
    delivery_window: Window = (0, 86_400)
    pickup_service: float = 0
    delivery_service: float = 0
    passengers: int = 1
    priority: Priority = "ordinary"
    category: str | None = None
    allowed_vehicles: frozenset[str] | None = None
    licence: str | None = None
    #: Optional maximum ride time (delivery start − pickup departure), e.g. for dial-a-ride.
    max_ride: float | None = None

    @property
    def rank(self) -> int:
        """Priority rank (2 = emergency, 1 = leadership, 0 = ordinary)."""
        return PRIORITY_RANK[self.priority]


@dataclass(frozen=True)
class Vehicle:
    """A car with its garage, seats and availability — or one *duty* (车班) of a car.

    Shift model: a driver drives one duty a day, and a car may have several duties, each
    its own routing vehicle with its own window, e.g. an early-shift driver 07:00–17:00 and
    a late-shift driver 17:00–22:00 on the same car (handover at the garage).  The duties of
    one car carry the car's id in ``car`` and have disjoint windows, so a plan can never use
    the car twice at once (the validator checks it independently).  ``car=None``: the
    vehicle is a car of its own (benchmarks, one duty per car).
    """

    id: str
    seats: int
    category: str = "sedan"
    start: int = 0
    end: int | None = None
    window: Window = (0, 86_400)
    fixed_cost: int = 0
    #: Where the car is now (re-planning during the day); overrides ``start`` when set.
    position: int | None = None
    #: Licence class needed to drive this car (e.g. "C1", "B1").
    licence: str | None = None
    #: The physical car this duty belongs to (``None``: the vehicle is the car itself).
    car: str | None = None

    @property
    def car_id(self) -> str:
        """Id of the physical car (the vehicle's own id unless it is a second duty)."""
        return self.id if self.car is None else self.car

    @property
    def origin(self) -> int:
        """Node the route starts from."""
        return self.start if self.position is None else self.position

    @property
    def destination(self) -> int:
        """Node the route ends at (the garage unless told otherwise)."""
        return self.start if self.end is None else self.end


@dataclass(frozen=True)
class Driver:
    """A driver.  Once paired with a vehicle (duty) the driver's shift bounds its window.

    A driver drives at most one route (duty) a day, inside one of ``shifts``; the whole
    route counts against ``max_driving`` and the break rule below.
    """

    id: str
    shifts: tuple[Window, ...] = ((0, 86_400),)
    licences: frozenset[str] = frozenset()
    max_driving: float = 8 * 3600
    #: Simple break rule: after ``break_after`` seconds of driving, ``break_duration``
    #: seconds of rest (any wait of at least that length counts as the break).
    break_after: float = 4 * 3600
    break_duration: float = 20 * 60


@dataclass(frozen=True)
class StopRef:
    """A reference to one stop of a booking, used for frozen legs."""

    booking_id: str
    kind: Literal["pickup", "delivery"]


@dataclass
class Problem:
    """A day to plan.  Matrices are square over ``nodes``."""

    distances: np.ndarray
    durations: np.ndarray
    bookings: list[Booking]
    vehicles: list[Vehicle]
    drivers: list[Driver] = field(default_factory=list)
    #: Node coordinates (lat, lon) or (x, y); informative only.
    nodes: list[tuple[float, float]] = field(default_factory=list)
    #: Frozen legs: per vehicle id, the stops that must open that vehicle's route, in order.
    frozen: dict[str, list[StopRef]] = field(default_factory=dict)
    name: str = ""

    def booking(self, booking_id: str) -> Booking:
        """Booking by id (linear scan is fine for explanation paths)."""
        for b in self.bookings:
            if b.id == booking_id:
                return b
        raise KeyError(booking_id)

    def vehicle(self, vehicle_id: str) -> Vehicle:
        """Vehicle by id."""
        for v in self.vehicles:
            if v.id == vehicle_id:
                return v
        raise KeyError(vehicle_id)

    def driver(self, driver_id: str) -> Driver:
        """Driver by id."""
        for d in self.drivers:
            if d.id == driver_id:
                return d
        raise KeyError(driver_id)


@dataclass
class Stop:
    """A visited stop.  ``start`` is when service begins (≥ arrival, inside the window)."""

    kind: StopKind
    node: int
    booking_id: str | None
    arrival: float
    start: float
    departure: float
    #: Passengers on board when leaving the stop.
    load: int


@dataclass
class Route:
    """The day of one vehicle, from its origin back to its garage."""

    vehicle_id: str
    driver_id: str | None
    stops: list[Stop]

    def booking_ids(self) -> list[str]:
        """Bookings served by this route (each once, in pickup order)."""
        seen: list[str] = []
        for s in self.stops:
            if s.booking_id is not None and s.booking_id not in seen:
                seen.append(s.booking_id)
        return seen

    @property
    def used(self) -> bool:
        """A route is used when it serves at least one booking."""
        return any(s.booking_id is not None for s in self.stops)


@dataclass
class Unserved:
    """A booking left out, with a machine-readable code and human sentences."""

    booking_id: str
    code: str
    reason: str
    reason_zh: str = ""


@dataclass
class Plan:
    """The solver's answer."""

    routes: list[Route]
    unserved: list[Unserved] = field(default_factory=list)
    total_distance: float = 0.0
    vehicles_used: int = 0
    meta: dict[str, object] = field(default_factory=dict)

    def used_routes(self) -> list[Route]:
        """Routes that serve at least one booking."""
        return [r for r in self.routes if r.used]


def route_distance(problem: Problem, stops: list[Stop], durations: bool = False) -> float:
    """Sum of matrix distances (or travel durations) along the stops."""
    nodes = [s.node for s in stops]
    m = problem.durations if durations else problem.distances
    return float(sum(m[a, b] for a, b in zip(nodes, nodes[1:], strict=False)))


def plan_totals(problem: Problem, plan: Plan) -> None:
    """Recompute ``total_distance`` and ``vehicles_used`` (distinct cars) from the routes."""
    used = plan.used_routes()
    cars = {v.id: v.car_id for v in problem.vehicles}
    plan.vehicles_used = len({cars.get(r.vehicle_id, r.vehicle_id) for r in used})
    plan.total_distance = sum(route_distance(problem, r.stops) for r in used)
