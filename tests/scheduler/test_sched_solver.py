"""Solver: known optima, both engines, drivers, frozen legs, explanations."""

from __future__ import annotations

import pytest
from helpers_sched import line_problem, two_trips

from scheduler.model import Booking, Driver, StopRef, Vehicle
from scheduler.solver import SolveOptions, solve
from scheduler.validate import validate

FAST = SolveOptions(time_limit=1.0)
ORTOOLS_ONLY = SolveOptions(time_limit=1.0, seed_with_vroom=False, use_pyvrp=False)


@pytest.mark.parametrize("opts", [FAST, ORTOOLS_ONLY], ids=["portfolio", "ortools"])
def test_two_trips_optimum(opts: SolveOptions) -> None:
    p = two_trips()
    plan = solve(p, opts)
    assert validate(p, plan) == []
    assert plan.vehicles_used == 1
    assert plan.total_distance == pytest.approx(8000.0)
    assert not plan.unserved


@pytest.mark.parametrize("opts", [FAST, ORTOOLS_ONLY], ids=["portfolio", "ortools"])
def test_shared_ride_when_seats_allow(opts: SolveOptions) -> None:
    # Two trips 1 → 4 and 2 → 3 on one line: nesting them costs 8 km; with 2 seats only
    # (2 passengers each) they must be sequential: 0→1→4→2→3→0 = 10 km.
    bookings = [Booking("a", 1, 4, passengers=2), Booking("b", 2, 3, passengers=2)]
    wide = line_problem([0, 1, 2, 3, 4], bookings, [Vehicle("v", seats=4)])
    tight = line_problem([0, 1, 2, 3, 4], bookings, [Vehicle("v", seats=2)])
    plan_w, plan_t = solve(wide, opts), solve(tight, opts)
    assert validate(wide, plan_w) == [] and validate(tight, plan_t) == []
    assert plan_w.total_distance == pytest.approx(8000.0)
    assert plan_t.total_distance == pytest.approx(10000.0)


def test_fixed_cost_prefers_one_vehicle() -> None:
    p = line_problem([0, 1, 2, 3, 4], [Booking("a", 1, 2), Booking("b", 3, 4)],
                     [Vehicle(f"v{k}", seats=4, fixed_cost=100_000) for k in range(3)])
    plan = solve(p, ORTOOLS_ONLY)
    assert validate(p, plan) == []
    assert plan.vehicles_used == 1


def test_time_windows_force_two_vehicles() -> None:
    # Both pickups must start at t = 100 s, in opposite directions.
    bookings = [Booking("w", 1, 2, pickup_window=(100, 100)),
                Booking("e", 3, 4, pickup_window=(100, 100))]
    p = line_problem([0, 1, 2, -1, -2], bookings,
                     [Vehicle(f"v{k}", seats=4, fixed_cost=10_000) for k in range(2)])
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    assert plan.vehicles_used == 2


def test_frozen_leg_is_kept() -> None:
    p = two_trips()
    # A dispatcher already sent car1 to pick up b first: keep it even if it is worse.
    p.frozen = {"car1": [StopRef("b", "pickup")]}
    plan = solve(p, ORTOOLS_ONLY)
    assert validate(p, plan) == []
    route = plan.used_routes()[0]
    assert (route.stops[1].booking_id, route.stops[1].kind) == ("b", "pickup")
    assert plan.total_distance > 8000.0


def test_drivers_are_paired_with_licence_and_shift() -> None:
    bookings = [Booking("vip", 1, 2, licence="A1"), Booking("o", 3, 4)]
    vehicles = [Vehicle("v1", seats=4), Vehicle("v2", seats=4)]
    drivers = [Driver("d-day", shifts=((0, 40_000),), licences=frozenset({"C1"})),
               Driver("d-a1", shifts=((0, 40_000),), licences=frozenset({"A1", "C1"}))]
    p = line_problem([0, 1, 2, 3, 4], bookings, vehicles, drivers)
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    assert all(r.driver_id for r in plan.used_routes())
    vip_route = next(r for r in plan.routes if "vip" in r.booking_ids())
    assert vip_route.driver_id == "d-a1"


def _explained(p, code: str) -> None:
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    assert [u.code for u in plan.unserved] == [code]
    assert plan.unserved[0].reason and plan.unserved[0].reason_zh


def test_explain_no_vehicle_category() -> None:
    p = two_trips()
    p.bookings.append(Booking("bus", 1, 2, category="minibus"))
    _explained(p, "no_vehicle_category")


def test_explain_too_many_passengers() -> None:
    p = two_trips()
    p.bookings.append(Booking("big", 1, 2, passengers=9))
    _explained(p, "too_many_passengers")


def test_explain_pickup_unreachable() -> None:
    p = two_trips()
    # 4 km away = 400 s of driving, but the pickup window closes at 100 s.
    p.bookings.append(Booking("early", 4, 3, pickup_window=(0, 100)))
    _explained(p, "pickup_unreachable")


def test_explain_delivery_unreachable() -> None:
    p = two_trips()
    p.bookings.append(Booking("rush", 1, 4, pickup_window=(0, 1000),
                              delivery_window=(0, 300)))
    _explained(p, "delivery_unreachable")


def test_explain_no_driver_licence() -> None:
    p = two_trips()
    p.drivers = [Driver("d", licences=frozenset({"C1"}))]
    p.bookings.append(Booking("vip", 1, 2, licence="A1"))
    _explained(p, "no_driver_licence")


def test_explain_time_conflict() -> None:
    # One car, two trips at exactly the same time in different places.
    bookings = [Booking("x", 1, 2, pickup_window=(100, 100), priority="leadership"),
                Booking("y", 3, 4, pickup_window=(300, 300))]
    p = line_problem([0, 1, 2, -3, -4], bookings, [Vehicle("v", seats=4)])
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    assert [u.booking_id for u in plan.unserved] == ["y"]
    assert plan.unserved[0].code == "time_window_conflict"


def test_priority_decides_who_is_dropped() -> None:
    bookings = [Booking("ord", 1, 2, pickup_window=(100, 100)),
                Booking("emg", 3, 4, pickup_window=(100, 100), priority="emergency")]
    p = line_problem([0, 1, 2, -1, -2], bookings, [Vehicle("v", seats=4)])
    for opts in (FAST, ORTOOLS_ONLY):
        plan = solve(p, opts)
        assert validate(p, plan) == []
        assert [u.booking_id for u in plan.unserved] == ["ord"]


def test_driver_break_is_scheduled() -> None:
    # Three 2-hour legs (72 km at 36 km/h): the driver must rest 20 min after 4 hours.
    p = line_problem([0, 72, 144, 72], [Booking("far", 1, 2)],
                     [Vehicle("v", seats=4, end=3)],
                     [Driver("d", shifts=((0, 86_400),), max_driving=10 * 3600)])
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    drop = plan.used_routes()[0].stops[2]
    assert drop.departure - drop.arrival >= 20 * 60


def test_morning_and_afternoon_drivers() -> None:
    # Two cars, two drivers: one works 0–2 h, the other 2–5 h.  A morning trip and an
    # afternoon trip each need a driver on shift; nobody may work outside the shift.
    bookings = [Booking("am", 1, 2, pickup_window=(600, 900)),
                Booking("pm", 1, 2, pickup_window=(9000, 9300))]
    drivers = [Driver("early", shifts=((0, 7200),)), Driver("late", shifts=((7200, 18000),))]
    p = line_problem([0, 1, 2], bookings, [Vehicle("v1", seats=4), Vehicle("v2", seats=4)],
                     drivers)
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    by_booking = {bid: r.driver_id for r in plan.used_routes() for bid in r.booking_ids()}
    assert by_booking == {"am": "early", "pm": "late"}


def test_explain_no_driver_on_shift() -> None:
    p = two_trips()
    p.drivers = [Driver("d", shifts=((0, 3000),))]
    p.bookings.append(Booking("night", 1, 2, pickup_window=(50_000, 50_600),
                              delivery_window=(50_000, 52_000)))
    _explained(p, "no_driver_on_shift")


def test_explain_seats_full() -> None:
    # Two groups of 3 at the same place and time, one 4-seat car.
    bookings = [Booking("g1", 1, 2, passengers=3, pickup_window=(100, 100),
                        priority="leadership"),
                Booking("g2", 1, 2, passengers=3, pickup_window=(100, 100))]
    p = line_problem([0, 1, 2], bookings, [Vehicle("v", seats=4)])
    plan = solve(p, FAST)
    assert validate(p, plan) == []
    assert [(u.booking_id, u.code) for u in plan.unserved] == [("g2", "seats_full")]


def test_city_day_with_drivers_is_valid() -> None:
    """A realistic small day on the OR-Tools path: categories, licences, priorities,
    morning/afternoon drivers.  Whatever is served must be valid, the rest explained."""
    from dataclasses import replace

    from helpers_sched import city_day

    p = city_day(40, 6, seed=3)
    p.vehicles = [replace(v, category="mpv" if v.seats == 7 else "sedan") for v in p.vehicles]
    p.bookings = [replace(b, category="mpv" if k % 9 == 0 else None,
                          priority="emergency" if k % 13 == 0 else "ordinary",
                          licence="A1" if k % 7 == 0 else None)
                  for k, b in enumerate(p.bookings)]
    p.drivers = [Driver(f"d{k}", shifts=((6 * 3600, 14 * 3600),) if k % 2 else
                        ((12 * 3600, 21 * 3600),),
                        licences=frozenset({"C1", "A1"} if k % 3 == 0 else {"C1"}))
                 for k in range(7)]
    plan = solve(p, SolveOptions(time_limit=2.0))
    assert validate(p, plan) == []
    assert plan.used_routes() and all(r.driver_id for r in plan.used_routes())
    served = {bid for r in plan.routes for bid in r.booking_ids()}
    assert len(served) + len(plan.unserved) == len(p.bookings)
    assert all(u.reason and u.reason_zh for u in plan.unserved)
