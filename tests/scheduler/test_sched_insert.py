"""Incremental insertion: feasibility, cost, speed, emergency pre-emption."""

from __future__ import annotations

import time

from helpers_sched import append_plan, city_day, line_problem, two_trips

from scheduler.insert import insert_booking
from scheduler.model import Booking, Plan, Vehicle, plan_totals
from scheduler.timing import schedule
from scheduler.validate import validate


def _plan_with(p, seq_by_vehicle) -> Plan:
    vehicles = {v.id: v for v in p.vehicles}
    routes = [schedule(p, vehicles[vid], seq) for vid, seq in seq_by_vehicle.items()]
    assert all(r is not None for r in routes)
    plan = Plan(routes=routes)  # type: ignore[arg-type]
    plan_totals(p, plan)
    return plan


def test_insert_on_the_way_costs_nothing_extra() -> None:
    p = two_trips()
    a, b = p.bookings
    plan = _plan_with(p, {"car1": [(a, "pickup"), (a, "delivery"), (b, "pickup"),
                                   (b, "delivery")]})
    # 2 → 3 km lies on the route already driven: zero added distance.
    res = insert_booking(p, plan, Booking("c", 2, 3, passengers=1))
    assert res.inserted and res.vehicle_id == "car1"
    assert res.added_distance == 0.0
    assert validate(p, res.plan) == []
    assert res.plan.total_distance == plan.total_distance


def test_insert_respects_seats() -> None:
    p = two_trips()
    a, b = p.bookings
    plan = _plan_with(p, {"car1": [(a, "pickup"), (a, "delivery"), (b, "pickup"),
                                   (b, "delivery")]})
    # 3 passengers 1 → 4 km cannot ride along with a or b (2 each, 4 seats): it must go
    # before or after, which adds distance.
    res = insert_booking(p, plan, Booking("c", 1, 4, passengers=3))
    assert res.inserted
    assert res.added_distance > 0
    assert validate(p, res.plan) == []


def test_infeasible_insertion_is_reported() -> None:
    p = two_trips()
    plan = _plan_with(p, {"car1": [(p.bookings[0], "pickup"), (p.bookings[0], "delivery")]})
    plan.unserved = []
    p.bookings = p.bookings[:1]
    res = insert_booking(p, plan, Booking("late", 4, 1, pickup_window=(0, 50)))
    assert not res.inserted
    assert [u.code for u in res.plan.unserved] == ["no_feasible_insertion"]
    assert validate(p, res.plan) == []


def test_emergency_preempts_ordinary_and_bumped_is_replaced() -> None:
    # car1 busy with an ordinary trip at 100 s; an emergency at the same time elsewhere.
    ordinary = Booking("ord", 1, 2, pickup_window=(100, 100))
    p = line_problem([0, 1, 2, -1, -2], [ordinary],
                     [Vehicle("car1", seats=4), Vehicle("car2", seats=4, window=(0, 50))])
    plan = _plan_with(p, {"car1": [(ordinary, "pickup"), (ordinary, "delivery")]})
    emergency = Booking("emg", 3, 4, pickup_window=(100, 100), priority="emergency")
    res = insert_booking(p, plan, emergency)
    assert res.inserted and res.bumped == ["ord"]
    assert res.replaced == {"ord": None}
    assert [u.code for u in res.plan.unserved] == ["preempted"]
    assert validate(p, res.plan) == []


def test_ordinary_never_preempts() -> None:
    ordinary = Booking("ord", 1, 2, pickup_window=(100, 100))
    p = line_problem([0, 1, 2, -1, -2], [ordinary], [Vehicle("car1", seats=4)])
    plan = _plan_with(p, {"car1": [(ordinary, "pickup"), (ordinary, "delivery")]})
    res = insert_booking(p, plan, Booking("x", 3, 4, pickup_window=(100, 100)))
    assert not res.inserted and not res.bumped


def test_insertion_is_fast_on_a_1000_booking_day() -> None:
    p = city_day(1001, 80)
    new = p.bookings.pop()
    plan = append_plan(p)
    assert sum(len(r.booking_ids()) for r in plan.routes) > 800
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res = insert_booking(p, plan, new)
        best = min(best, time.perf_counter() - t0)
    assert res.inserted
    assert validate(p, res.plan) == [] or all(
        v.code == "booking_missing" for v in validate(p, res.plan))
    assert best < 0.2
