"""Benchmark parsers, BKS tables and short solves of public instances."""

from __future__ import annotations

import pytest

from scheduler import instances as inst
from scheduler.solver import SolveOptions, solve
from scheduler.validate import validate

pytestmark = pytest.mark.skipif(not inst.benchmarks_dir().is_dir(),
                                reason="shared benchmarks not present")


def test_parse_lilim() -> None:
    p = inst.load("lilim100", "lc101")
    assert len(p.vehicles) == 25 and p.vehicles[0].seats == 200
    assert len(p.bookings) == 53
    assert p.distances.shape == (107, 107)
    b = p.bookings[0]
    assert b.pickup is not None and b.pickup != b.delivery
    assert p.distances[0, 1] == pytest.approx(((45 - 40) ** 2 + (68 - 50) ** 2) ** 0.5)


def test_parse_solomon_and_cordeau() -> None:
    s = inst.load("solomon100", "c101")
    assert len(s.bookings) == 100 and all(b.pickup is None for b in s.bookings)
    assert s.vehicles[0].seats == 200
    d = inst.load("cordeau_darp", "a2-16")
    assert len(d.bookings) == 16 and len(d.vehicles) == 2
    assert all(b.max_ride == 30 for b in d.bookings)


def test_bks_tables() -> None:
    lilim = inst.read_bks("lilim100")
    assert len(lilim) == 56 and lilim["lc101"].vehicles == 10
    assert inst.read_bks("solomon100")["c101"].distance == pytest.approx(828.94)


@pytest.mark.parametrize("name", ["lc101", "lr201"])
def test_lilim_solved_near_bks(name: str) -> None:
    p = inst.load("lilim100", name)
    bks = inst.read_bks("lilim100")[name]
    plan = solve(p, SolveOptions(time_limit=3.0, scale=1000))
    assert validate(p, plan) == []
    assert not plan.unserved
    assert plan.vehicles_used <= bks.vehicles + 1
    assert plan.total_distance <= bks.distance * 1.10


def test_lilim_ortools_only_is_valid() -> None:
    p = inst.load("lilim100", "lc101")
    plan = solve(p, SolveOptions(time_limit=3.0, scale=1000, seed_with_vroom=False,
                                 use_pyvrp=False))
    assert validate(p, plan) == []
    bks = inst.read_bks("lilim100")["lc101"]
    assert plan.vehicles_used <= bks.vehicles + 2


def test_solomon_solved_and_valid() -> None:
    p = inst.load("solomon100", "r101")
    plan = solve(p, SolveOptions(time_limit=2.0, scale=1000))
    assert validate(p, plan) == [] and not plan.unserved
    assert plan.vehicles_used <= inst.read_bks("solomon100")["r101"].vehicles + 1
