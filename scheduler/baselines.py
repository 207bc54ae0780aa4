"""Simple baselines for the benchmark (and a fallback when no solver is available)."""

from __future__ import annotations

import time

from scheduler.insert import best_insertion
from scheduler.model import Plan, Problem, Unserved, plan_totals
from scheduler.timing import Visit, schedule, visits_of


def greedy_insertion(problem: Problem, time_limit: float = 10.0) -> Plan:
    """Sequential cheapest feasible insertion, bookings by earliest pickup window start.

    Idle vehicles cost their fixed cost, so a new car is opened only when no used car can
    take the booking.  One pass; ``time_limit`` only guards very large inputs.
    """
    t0 = time.monotonic()
    plan = Plan(routes=[])
    order = sorted(problem.bookings, key=lambda b: (
        (b.pickup_window if b.pickup is not None else b.delivery_window)[0],
        b.delivery_window[1]))
    for b in order:
        found = None if time.monotonic() - t0 > time_limit else best_insertion(problem, plan, b)
        if found is None:
            plan.unserved.append(Unserved(b.id, "not_inserted", "greedy found no place"))
            continue
        route = found[1]
        plan.routes = [r for r in plan.routes if r.vehicle_id != route.vehicle_id] + [route]
    plan_totals(problem, plan)
    return plan


def plan_from_routes(problem: Problem, routes: dict[str, list[Visit]]) -> Plan:
    """A timed plan from visit sequences (unserved bookings get a generic reason)."""
    by_v = {v.id: v for v in problem.vehicles}
    out = []
    for vid, seq in routes.items():
        r = schedule(problem, by_v[vid], seq) or schedule(problem, by_v[vid], seq, check=False)
        assert r is not None
        out.append(r)
    served = {b.id for seq in routes.values() for b, _ in seq}
    plan = Plan(routes=out, unserved=[Unserved(b.id, "not_inserted", "not placed")
                                      for b in problem.bookings if b.id not in served])
    plan_totals(problem, plan)
    return plan


__all__ = ["greedy_insertion", "plan_from_routes", "visits_of"]
