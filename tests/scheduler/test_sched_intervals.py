"""The local search for fixed-interval days (official-car day model)."""

from __future__ import annotations

import time

from helpers_sched import line_problem

from scheduler.intervals import IntervalSearch, applicable
from scheduler.model import Booking, Vehicle
from scheduler.solver import SolveOptions, solve
from scheduler.validate import validate
from simulators.demand import city_day


def _fixed(bid: str, p: int, d: int, start: float, end: float, **kw) -> Booking:
    return Booking(bid, p, d, pickup_window=(start, start), delivery_window=(end, end), **kw)


def test_ejection_moves_the_booking_in_the_way() -> None:
    # Car "x" (category x) carries "any" at 1000–2000; "only_x" needs car x at the same
    # time.  Moving "any" to the other car makes room: both served.
    bookings = [_fixed("any", 1, 2, 1000, 2000), _fixed("only_x", 1, 2, 1200, 1800,
                                                        category="x")]
    vehicles = [Vehicle("x", seats=1, category="x"), Vehicle("y", seats=1)]
    p = line_problem([0, 1, 2], bookings, vehicles)
    assert applicable(p, p.bookings, p.vehicles)
    allowed = {"any": ["x", "y"], "only_x": ["x"]}
    ls = IntervalSearch(p, p.bookings, p.vehicles, allowed)
    ls.load({"x": [(bookings[0], "pickup"), (bookings[0], "delivery")]})
    ls.run(time.monotonic() + 0.3)
    routes = ls.export()
    assert [b.id for b, k in routes["x"] if k == "pickup"] == ["only_x"]
    assert [b.id for b, k in routes["y"] if k == "pickup"] == ["any"]


def test_emergency_displaces_an_ordinary_booking() -> None:
    bookings = [_fixed("ord", 1, 2, 1000, 2000), _fixed("sos", 1, 2, 1100, 1900,
                                                        priority="emergency")]
    p = line_problem([0, 1, 2], bookings, [Vehicle("v", seats=1)])
    ls = IntervalSearch(p, p.bookings, p.vehicles, {"ord": ["v"], "sos": ["v"]})
    ls.load({"v": [(bookings[0], "pickup"), (bookings[0], "delivery")]})
    ls.run(time.monotonic() + 0.3)
    assert [b.id for b, k in ls.export()["v"] if k == "pickup"] == ["sos"]


def test_tail_exchange_shortens_empty_running() -> None:
    # Garages at 0 km (car a) and 10 km (car b); return trips at 1 km and at 9 km in the
    # morning and again in the afternoon.  Starting crossed (each car drives across town at
    # noon), exchanging the afternoon tails keeps each car near its garage: 36 km → 4 km.
    bookings = [_fixed("am1", 1, 1, 1000, 2000), _fixed("am9", 9, 9, 1000, 2000),
                _fixed("pm9", 9, 9, 3000, 4000), _fixed("pm1", 1, 1, 3000, 4000)]
    vehicles = [Vehicle("a", seats=1, start=0), Vehicle("b", seats=1, start=10)]
    p = line_problem(list(range(11)), bookings, vehicles)
    both = ["a", "b"]
    ls = IntervalSearch(p, p.bookings, p.vehicles, {b.id: both for b in bookings})
    am1, am9, pm9, pm1 = bookings
    ls.load({"a": [(am1, "pickup"), (am1, "delivery"), (pm9, "pickup"), (pm9, "delivery")],
             "b": [(am9, "pickup"), (am9, "delivery"), (pm1, "pickup"), (pm1, "delivery")]})
    assert ls.cost() == 36_000
    ls.run(time.monotonic() + 0.3)
    assert ls.cost() == 4_000
    assert ls.moves["tails"] == 1


def test_city_day_uses_the_interval_search_and_explains_everything() -> None:
    cd = city_day(260, 50, 62, n_urgent=0, seed=5)
    p = cd.day.problem
    plan = solve(p, SolveOptions(time_limit=3, break_allowance=False, vroom_exploration=0))
    assert "interval-ls" in str(plan.meta["engines"])
    assert validate(p, plan) == []
    assert all(u.code not in ("not_explained", "not_inserted") for u in plan.unserved)
    # second duties are used: some car is driven by two drivers on the day
    cars: dict[str, set[str | None]] = {}
    for r in plan.used_routes():
        cars.setdefault(p.vehicle(r.vehicle_id).car_id, set()).add(r.driver_id)
    assert any(len(ds) == 2 for ds in cars.values())


def test_early_and_late_driver_share_a_car_and_night_has_no_driver() -> None:
    """One car, an early driver (07–15) and a late driver (15–22): the morning trip and the
    evening trip are both served on that car by different drivers; a trip at 23:00 is
    explained as 'no driver on shift'."""
    from scheduler.dayplan import Car, Crew, Trip, build_day
    from simulators.demand import great_circle_matrix

    h = 3600.0
    home, office = (39.90, 116.40), (39.92, 116.42)
    trips = [Trip("am", office, office, 9 * h, 11 * h), Trip("pm", office, office, 18 * h, 20 * h),
             Trip("night", office, office, 23 * h, 23.5 * h)]
    crew = [Crew("early", frozenset({"C1", "C2"}), ((7 * h, 15 * h),)),
            Crew("late", frozenset({"C1", "C2"}), ((15 * h, 22 * h),))]
    day = build_day(trips, [Car("car", home, 4, licence="C2")], crew, great_circle_matrix)
    p = day.problem
    assert [v.id for v in p.vehicles] == ["car", "car/2"]
    plan = solve(p, SolveOptions(time_limit=1))
    assert validate(p, plan) == []
    by_booking = {b: (r.vehicle_id, r.driver_id) for r in plan.used_routes()
                  for b in r.booking_ids()}
    assert by_booking == {"am": ("car", "early"), "pm": ("car/2", "late")}
    assert plan.vehicles_used == 1
    assert [(u.booking_id, u.code) for u in plan.unserved] == [("night", "no_driver_on_shift")]
