"""The city-day generator (small size) gives valid plans, insertions and a bench summary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bench.scheduler import run
from scheduler.insert import insert_booking
from scheduler.solver import SolveOptions, solve
from scheduler.validate import validate
from simulators.demand import city_day


def test_generator_is_seeded_and_mixed() -> None:
    a = city_day(80, 16, 20, n_urgent=4, seed=3)
    b = city_day(80, 16, 20, n_urgent=4, seed=3)
    assert [x.pickup_window for x in a.day.problem.bookings] == \
        [x.pickup_window for x in b.day.problem.bookings]
    p = a.day.problem
    assert len(p.bookings) + len(a.day.rejected) == 80
    assert len(a.day.cars) == 16 and len(p.drivers) == 20 and len(a.urgent) == 4
    # shifts: every car has a first duty, spare drivers take second duties on some cars
    assert {v.car_id for v in p.vehicles} == set(a.day.cars)
    seconds = [v for v in p.vehicles if v.car is not None]
    assert seconds and len(p.vehicles) == 16 + len(seconds)
    assert len(p.vehicles) <= 20 + sum(  # one driver per duty (+ cars nobody can drive)
        1 for c in a.day.cars.values() if not any(c.licence in d.licences for d in p.drivers))
    for v in seconds:
        first = p.vehicle(v.car)
        assert v.window[0] >= first.window[1] or v.window[1] <= first.window[0]
    assert len({c.category for c in a.day.cars.values()}) > 1
    assert len({c.capacity for c in a.day.cars.values()}) > 1
    assert len({d.shifts for d in p.drivers}) > 1
    assert all(u.priority == "emergency" for u in a.urgent)
    assert all(7 * 3600 <= x.pickup_window[0] <= 20 * 3600 for x in p.bookings)


def test_cityday_plan_is_valid_and_urgent_insertions_too() -> None:
    cd = city_day(80, 16, 20, n_urgent=5, seed=3)
    p = cd.day.problem
    plan = solve(p, SolveOptions(time_limit=2))
    assert validate(p, plan) == []
    served = sum(len(r.booking_ids()) for r in plan.routes)
    assert served >= len(p.bookings) // 2
    assert all(u.code and u.reason and u.reason_zh for u in plan.unserved)
    # a plan's vehicle never carries two bookings at once (dispatch holds the car)
    for r in plan.used_routes():
        assert max(s.load for s in r.stops) <= 1
    assert cd.day.km(plan) > plan.total_distance / 1000
    for t in cd.urgent:
        b = cd.day.booking(t)
        prob = replace(p, bookings=list(p.bookings))
        res = insert_booking(prob, plan, b)
        assert validate(prob, res.plan) == []


def test_bench_cityday_writes_the_keys(tmp_path: Path) -> None:
    out = tmp_path / "cd.json"
    run("cityday", 1.0, str(out), ["60:12:15"])
    data = json.loads(out.read_text())
    for key in ("served", "vehicles", "km", "time_s", "insert_p95_ms"):
        assert key in data
    for key in ("served", "vehicles", "km"):
        assert key in data["peers"]["pyvroom"]
    assert data["valid"] and data["insert_invalid"] == 0
