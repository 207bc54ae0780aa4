"""Independent plan validator.

This module shares no code with the solver, the insertion heuristic or vroom: it re-reads
the problem and the plan and recomputes every quantity (travel, times, loads, distances)
from the matrices.  A plan is acceptable only when :func:`validate` returns an empty list.
(OR-Tools complaint 8: solutions that silently violate windows or breaks.)

Driver rules checked per route (a route is one driver's duty): a known driver, used on one
route only, holding the car's and the bookings' licences, the route inside one of the
driver's shifts, at most ``max_driving`` seconds of driving, and never more than
``break_after`` seconds of driving without a stay of ``break_duration``.  Duties of one car
(``Vehicle.car``) must not overlap in time (``car_overlap``); ``vehicles_used`` counts cars.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.model import Booking, Driver, Plan, Problem, Route, Vehicle

#: Tolerance on times and distances (benchmarks use real-valued Euclidean travel times).
EPS = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken rule.  ``code`` is stable and machine-readable."""

    code: str
    message: str
    vehicle_id: str | None = None
    booking_id: str | None = None


class _Checker:
    """Accumulates violations while walking a plan."""

    def __init__(self, problem: Problem, plan: Plan) -> None:
        self.p = problem
        self.plan = plan
        self.out: list[Violation] = []
        self.bookings = {b.id: b for b in problem.bookings}
        self.vehicles = {v.id: v for v in problem.vehicles}
        self.drivers = {d.id: d for d in problem.drivers}

    def add(self, code: str, msg: str, vehicle: str | None = None,
            booking: str | None = None) -> None:
        self.out.append(Violation(code, msg, vehicle, booking))

    # -- whole plan -------------------------------------------------------------------
    def run(self) -> list[Violation]:
        seen_vehicles: set[str] = set()
        seen_drivers: set[str] = set()
        served: dict[str, str] = {}
        for route in self.plan.routes:
            v = self.vehicles.get(route.vehicle_id)
            if v is None:
                self.add("unknown_vehicle", f"route for unknown vehicle {route.vehicle_id}",
                         route.vehicle_id)
                continue
            if v.id in seen_vehicles:
                self.add("vehicle_reused", f"vehicle {v.id} has two routes", v.id)
            seen_vehicles.add(v.id)
            if not route.used:
                continue
            self.check_route(route, v, served)
            self.check_driver(route, v, seen_drivers)
        self.check_coverage(served)
        self.check_cars()
        self.check_totals()
        return self.out

    def check_cars(self) -> None:
        """Duties of one car (several drivers a day) never overlap in time."""
        spans: dict[str, list[tuple[float, float, str]]] = {}
        for r in self.plan.routes:
            v = self.vehicles.get(r.vehicle_id)
            if v is None or not r.used:
                continue
            spans.setdefault(v.car_id, []).append((r.stops[0].departure, r.stops[-1].arrival, v.id))
        for car, xs in spans.items():
            xs.sort()
            for (_a1, b1, v1), (a2, _b2, v2) in zip(xs, xs[1:], strict=False):
                if a2 < b1 - EPS:
                    self.add("car_overlap", f"car {car}: duty {v2} leaves at {a2:.0f} before "
                             f"duty {v1} is back at {b1:.0f}", v2)

    def check_coverage(self, served: dict[str, str]) -> None:
        unserved_ids = [u.booking_id for u in self.plan.unserved]
        for bid in unserved_ids:
            if bid in served:
                self.add("served_and_unserved", f"booking {bid} is both served and unserved",
                         booking=bid)
            if bid not in self.bookings:
                self.add("unknown_booking", f"unserved booking {bid} is unknown", booking=bid)
        if len(set(unserved_ids)) != len(unserved_ids):
            self.add("unserved_duplicate", "a booking is listed twice as unserved")
        for bid in self.bookings:
            if bid not in served and bid not in unserved_ids:
                self.add("booking_missing", f"booking {bid} neither served nor reported",
                         booking=bid)

    def check_totals(self) -> None:
        used = [r for r in self.plan.routes if r.used]
        cars = {r.vehicle_id if (v := self.vehicles.get(r.vehicle_id)) is None
                else v.car_id for r in used}
        if self.plan.vehicles_used != len(cars):
            self.add("totals_vehicles", f"vehicles_used {self.plan.vehicles_used} != "
                     f"{len(cars)} cars")
        dist = 0.0
        for r in used:
            nodes = [s.node for s in r.stops]
            dist += sum(float(self.p.distances[a, b]) for a, b in zip(nodes, nodes[1:],
                                                                         strict=False))
        if abs(dist - self.plan.total_distance) > 1e-6 * max(1.0, dist):
            self.add("totals_distance",
                     f"total_distance {self.plan.total_distance:.4f} != recomputed {dist:.4f}")

    # -- one route --------------------------------------------------------------------
    def check_route(self, route: Route, v: Vehicle, served: dict[str, str]) -> None:
        stops = route.stops
        if stops[0].kind != "start" or stops[0].node != v.origin:
            self.add("route_start", f"route of {v.id} must start at node {v.origin}", v.id)
        if stops[-1].kind != "end" or stops[-1].node != v.destination:
            self.add("route_end", f"route of {v.id} must end at node {v.destination}", v.id)
        if stops[0].departure < v.window[0] - EPS:
            self.add("vehicle_window", f"{v.id} leaves before its availability", v.id)
        if stops[-1].arrival > v.window[1] + EPS:
            self.add("vehicle_window", f"{v.id} returns after its availability", v.id)
        self.check_frozen(route, v)
        load = sum(self.bookings[s.booking_id].passengers for s in stops
                   if s.kind == "delivery" and s.booking_id in self.bookings
                   and self.bookings[s.booking_id].pickup is None)
        picked: dict[str, float] = {}
        prev = None
        for s in stops:
            if prev is not None:
                travel = float(self.p.durations[prev.node, s.node])
                if abs(s.arrival - (prev.departure + travel)) > EPS * max(1.0, s.arrival):
                    self.add("travel_time", f"{v.id}: arrival at node {s.node} is {s.arrival}, "
                             f"matrix says {prev.departure + travel}", v.id, s.booking_id)
            if s.start < s.arrival - EPS or s.departure < s.start - EPS:
                self.add("stop_times", f"{v.id}: times out of order at node {s.node}", v.id,
                         s.booking_id)
            if s.kind in ("pickup", "delivery"):
                load = self.check_stop(s, v, route, load, picked, served)
            if load > v.seats:
                self.add("capacity", f"{v.id}: {load} passengers on board, {v.seats} seats",
                         v.id, s.booking_id)
            if s.load != load:
                self.add("load_mismatch", f"{v.id}: stated load {s.load} != {load}", v.id,
                         s.booking_id)
            prev = s
        for bid in picked:
            self.add("no_delivery", f"booking {bid} picked up but never delivered", v.id, bid)

    def check_stop(self, s, v: Vehicle, route: Route, load: int, picked: dict[str, float],
                   served: dict[str, str]) -> int:
        b = self.bookings.get(s.booking_id or "")
        if b is None:
            self.add("unknown_booking", f"stop for unknown booking {s.booking_id}", v.id)
            return load
        self.check_compat(b, v, route)
        if s.kind == "pickup":
            if b.pickup is None:
                self.add("bad_stop", f"booking {b.id} has no pickup", v.id, b.id)
                return load
            if b.id in served or b.id in picked:
                self.add("served_twice", f"booking {b.id} picked up twice", v.id, b.id)
            self.check_window(s, b.pickup, b.pickup_window, b.pickup_service, v, b)
            picked[b.id] = s.departure
            return load + b.passengers
        self.check_window(s, b.delivery, b.delivery_window, b.delivery_service, v, b)
        if b.id in served:
            self.add("served_twice", f"booking {b.id} delivered twice", v.id, b.id)
        if b.pickup is not None:
            if b.id not in picked:
                self.add("precedence", f"booking {b.id} delivered before (or without) its "
                         "pickup on this vehicle", v.id, b.id)
                served[b.id] = v.id
                return load
            ride = s.start - picked.pop(b.id)
            if b.max_ride is not None and ride > b.max_ride + EPS:
                self.add("max_ride", f"booking {b.id} rides {ride:.1f} > {b.max_ride}", v.id,
                         b.id)
        served[b.id] = v.id
        return load - b.passengers

    def check_window(self, s, node: int, window: tuple[float, float], service: float,
                     v: Vehicle, b: Booking) -> None:
        if s.node != node:
            self.add("wrong_node", f"booking {b.id} {s.kind} at node {s.node}, expected {node}",
                     v.id, b.id)
        if s.start < window[0] - EPS or s.start > window[1] + EPS:
            self.add("time_window", f"booking {b.id} {s.kind} starts at {s.start:.2f}, "
                     f"window {window}", v.id, b.id)
        if s.departure < s.start + service - EPS:
            self.add("service_time", f"booking {b.id} {s.kind} shorter than its service",
                     v.id, b.id)

    def check_compat(self, b: Booking, v: Vehicle, route: Route) -> None:
        if b.category is not None and b.category != v.category:
            self.add("category", f"booking {b.id} needs a {b.category}, {v.id} is a "
                     f"{v.category}", v.id, b.id)
        if b.allowed_vehicles is not None and v.id not in b.allowed_vehicles:
            self.add("vehicle_not_allowed", f"booking {b.id} may not use {v.id}", v.id, b.id)
        if b.passengers > v.seats:
            self.add("capacity", f"booking {b.id} has {b.passengers} passengers, {v.id} "
                     f"{v.seats} seats", v.id, b.id)
        if b.licence is not None and self.drivers:
            d = self.drivers.get(route.driver_id or "")
            if d is not None and b.licence not in d.licences:
                self.add("licence", f"booking {b.id} needs licence {b.licence}; driver "
                         f"{d.id} lacks it", v.id, b.id)

    def check_frozen(self, route: Route, v: Vehicle) -> None:
        legs = self.p.frozen.get(v.id, [])
        if not legs:
            return
        actual = [(s.booking_id, s.kind) for s in route.stops[1:1 + len(legs)]]
        wanted = [(f.booking_id, f.kind) for f in legs]
        if actual != wanted:
            self.add("frozen_leg", f"{v.id}: frozen stops {wanted} not kept (got {actual})",
                     v.id)

    # -- driver -----------------------------------------------------------------------
    def check_driver(self, route: Route, v: Vehicle, seen: set[str]) -> None:
        if not self.drivers:
            return
        d = self.drivers.get(route.driver_id or "")
        if d is None:
            self.add("no_driver", f"route of {v.id} has no (known) driver", v.id)
            return
        if d.id in seen:
            self.add("driver_reused", f"driver {d.id} drives two vehicles", v.id)
        seen.add(d.id)
        if v.licence is not None and v.licence not in d.licences:
            self.add("licence", f"{v.id} needs licence {v.licence}; {d.id} lacks it", v.id)
        begin, end = route.stops[0].departure, route.stops[-1].arrival
        if not any(a - EPS <= begin and end <= b + EPS for a, b in d.shifts):
            self.add("shift", f"route of {v.id} [{begin:.0f}, {end:.0f}] is outside every "
                     f"shift of {d.id}", v.id)
        self.check_driving(route, v, d)

    def check_driving(self, route: Route, v: Vehicle, d: Driver) -> None:
        total = 0.0
        since_break = 0.0
        prev = None
        for s in route.stops:
            if prev is not None:
                leg = float(self.p.durations[prev.node, s.node])
                total += leg
                since_break += leg
                if since_break > d.break_after + EPS:
                    self.add("break", f"{d.id} drives {since_break:.0f}s without a "
                             f"{d.break_duration:.0f}s break", v.id)
                    since_break = 0.0
            # Any stay (wait + service) of at least the break length counts as the break.
            if s.departure - s.arrival >= d.break_duration - EPS:
                since_break = 0.0
            prev = s
        if total > d.max_driving + EPS:
            self.add("max_driving", f"{d.id} drives {total:.0f}s > {d.max_driving:.0f}s", v.id)


def validate(problem: Problem, plan: Plan) -> list[Violation]:
    """Return every violation of ``plan`` against ``problem`` (empty list = valid)."""
    return _Checker(problem, plan).run()
