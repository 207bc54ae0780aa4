"""The validator catches every violation type on hand-made plans."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from helpers_sched import line_problem, two_trips

from scheduler.model import Booking, Driver, Plan, Problem, StopRef, Vehicle, plan_totals
from scheduler.timing import schedule
from scheduler.validate import validate


def _good(p: Problem) -> Plan:
    """The optimal plan of :func:`two_trips`, built by hand: a, a, b, b."""
    v = p.vehicles[0]
    a, b = p.bookings
    route = schedule(p, v, [(a, "pickup"), (a, "delivery"), (b, "pickup"), (b, "delivery")],
                     driver_id=p.drivers[0].id if p.drivers else None)
    assert route is not None
    plan = Plan(routes=[route])
    plan_totals(p, plan)
    return plan


def test_good_plan_is_valid() -> None:
    p = two_trips()
    assert validate(p, _good(p)) == []


def _codes(p: Problem, plan: Plan) -> set[str]:
    return {v.code for v in validate(p, plan)}


def _shift_times(plan: Plan, k: int, dt: float) -> None:
    s = plan.routes[0].stops[k]
    s.arrival += dt
    s.start += dt
    s.departure += dt


MUTATIONS: dict[str, Callable[[Problem, Plan], None]] = {}


def mutation(code: str):
    def deco(fn: Callable[[Problem, Plan], None]) -> Callable[[Problem, Plan], None]:
        MUTATIONS[code] = fn
        return fn
    return deco


@mutation("time_window")
def _tw(p: Problem, plan: Plan) -> None:
    p.bookings[0] = Booking("a", 1, 2, passengers=2, pickup_window=(0, 50))


@mutation("capacity")
def _cap(p: Problem, plan: Plan) -> None:
    p.vehicles[0] = Vehicle("car1", seats=1)


@mutation("precedence")
def _prec(p: Problem, plan: Plan) -> None:
    stops = plan.routes[0].stops
    stops[1].kind, stops[2].kind = "delivery", "pickup"  # type: ignore[assignment]


@mutation("served_twice")
def _twice(p: Problem, plan: Plan) -> None:
    p.vehicles.append(Vehicle("car2", seats=4))
    extra = schedule(p, p.vehicles[1], [(p.bookings[0], "pickup"), (p.bookings[0], "delivery")])
    assert extra is not None
    plan.routes.append(extra)
    plan_totals(p, plan)


@mutation("booking_missing")
def _missing(p: Problem, plan: Plan) -> None:
    p.bookings.append(Booking("c", 1, 3))


@mutation("travel_time")
def _travel(p: Problem, plan: Plan) -> None:
    # Teleport: arrive at the second stop 50 s too early.
    s = plan.routes[0].stops[2]
    s.arrival -= 50


@mutation("category")
def _category(p: Problem, plan: Plan) -> None:
    p.bookings[0] = Booking("a", 1, 2, passengers=2, category="van")


@mutation("vehicle_not_allowed")
def _allowed(p: Problem, plan: Plan) -> None:
    p.bookings[0] = Booking("a", 1, 2, passengers=2, allowed_vehicles=frozenset({"car9"}))


@mutation("frozen_leg")
def _frozen(p: Problem, plan: Plan) -> None:
    p.frozen = {"car1": [StopRef("b", "pickup")]}


@mutation("shift")
def _shift(p: Problem, plan: Plan) -> None:
    p.drivers = [Driver("d1", shifts=((0, 300),))]
    plan.routes[0].driver_id = "d1"


@mutation("no_driver")
def _no_driver(p: Problem, plan: Plan) -> None:
    p.drivers = [Driver("d1")]


@mutation("licence")
def _licence(p: Problem, plan: Plan) -> None:
    p.drivers = [Driver("d1", licences=frozenset({"C1"}))]
    p.bookings[0] = Booking("a", 1, 2, passengers=2, licence="A1")
    plan.routes[0].driver_id = "d1"


@mutation("max_driving")
def _driving(p: Problem, plan: Plan) -> None:
    p.drivers = [Driver("d1", max_driving=500)]
    plan.routes[0].driver_id = "d1"


@mutation("break")
def _break(p: Problem, plan: Plan) -> None:
    p.drivers = [Driver("d1", break_after=300, break_duration=60)]
    plan.routes[0].driver_id = "d1"


@mutation("vehicle_window")
def _vwin(p: Problem, plan: Plan) -> None:
    p.vehicles[0] = Vehicle("car1", seats=4, window=(0, 500))


@mutation("totals_distance")
def _totals(p: Problem, plan: Plan) -> None:
    plan.total_distance -= 1000


@mutation("totals_vehicles")
def _vehicles(p: Problem, plan: Plan) -> None:
    plan.vehicles_used = 3


@mutation("wrong_node")
def _node(p: Problem, plan: Plan) -> None:
    p.bookings[0] = Booking("a", 3, 2, passengers=2)


@mutation("no_delivery")
def _no_delivery(p: Problem, plan: Plan) -> None:
    stops = plan.routes[0].stops
    del stops[2]
    # keep travel consistent so that only the missing delivery is reported
    t = stops[1].departure
    for prev, s in zip(stops[1:], stops[2:], strict=False):
        travel = float(p.durations[prev.node, s.node])
        s.arrival = prev.departure + travel
        s.start = max(s.arrival, s.start)
        s.departure = s.start
        t = s.departure
    del t
    plan_totals(p, plan)


@mutation("stop_times")
def _stop_times(p: Problem, plan: Plan) -> None:
    s = plan.routes[0].stops[1]
    s.start = s.arrival - 10


@mutation("route_end")
def _route_end(p: Problem, plan: Plan) -> None:
    p.vehicles[0] = Vehicle("car1", seats=4, end=4)


@mutation("max_ride")
def _max_ride(p: Problem, plan: Plan) -> None:
    p.bookings[0] = Booking("a", 1, 2, passengers=2, max_ride=10)


@mutation("served_and_unserved")
def _both(p: Problem, plan: Plan) -> None:
    from scheduler.model import Unserved

    plan.unserved.append(Unserved("a", "x", "x"))


@mutation("load_mismatch")
def _load(p: Problem, plan: Plan) -> None:
    plan.routes[0].stops[1].load = 7


@mutation("car_overlap")
def _car_overlap(p: Problem, plan: Plan) -> None:
    # a second duty of the same car (another driver) serving b while the first is out
    p.vehicles.append(Vehicle("car1/2", seats=4, car="car1"))
    p.drivers = [Driver("d1"), Driver("d2")]
    r1 = schedule(p, p.vehicles[0], [(p.bookings[0], "pickup"), (p.bookings[0], "delivery")],
                  driver_id="d1")
    r2 = schedule(p, p.vehicles[1], [(p.bookings[1], "pickup"), (p.bookings[1], "delivery")],
                  driver_id="d2")
    assert r1 is not None and r2 is not None
    plan.routes[:] = [r1, r2]
    plan_totals(p, plan)


@pytest.mark.parametrize("code", sorted(MUTATIONS))
def test_violation_is_caught(code: str) -> None:
    p = two_trips()
    plan = _good(p)
    p = copy.deepcopy(p)
    MUTATIONS[code](p, plan)
    assert code in _codes(p, plan)


def test_delivery_only_jobs_load_at_start() -> None:
    # VRPTW-style jobs: 3 + 3 passengers loaded at the depot, 5 seats: over capacity.
    bookings = [Booking("j1", None, 1, passengers=3), Booking("j2", None, 2, passengers=3)]
    p = line_problem([0, 1, 2], bookings, [Vehicle("v", seats=6)])
    route = schedule(p, p.vehicles[0], [(bookings[0], "delivery"), (bookings[1], "delivery")])
    assert route is not None and route.stops[0].load == 6
    plan = Plan(routes=[route])
    plan_totals(p, plan)
    assert validate(p, plan) == []
    p.vehicles[0] = Vehicle("v", seats=5)
    assert "capacity" in _codes(p, plan)


def test_two_duties_of_one_car_in_sequence_are_valid() -> None:
    """Shift model: an early driver and a late driver share a car, one after the other."""
    p = two_trips()
    p.vehicles = [Vehicle("car1", seats=4, window=(0, 1000)),
                  Vehicle("car1/2", seats=4, window=(1000, 5000), car="car1")]
    p.drivers = [Driver("early", shifts=((0, 1000),)), Driver("late", shifts=((1000, 5000),))]
    a, b = p.bookings
    r1 = schedule(p, p.vehicles[0], [(a, "pickup"), (a, "delivery")], driver_id="early")
    r2 = schedule(p, p.vehicles[1], [(b, "pickup"), (b, "delivery")], driver_id="late")
    assert r1 is not None and r2 is not None
    plan = Plan(routes=[r1, r2])
    plan_totals(p, plan)
    assert plan.vehicles_used == 1  # one car, two duties
    assert validate(p, plan) == []
    r2.driver_id = "early"  # one driver cannot drive both duties
    assert {"driver_reused", "shift"} <= _codes(p, plan)
