"""Fast cheapest feasible insertion of a new booking into an existing plan.

Pure Python, no OR-Tools: used when a dispatcher adds a booking during the day and the
answer is needed in milliseconds.  Each route is scanned with the classic *latest start*
bound (a backward pass gives, for each stop, the latest service start that keeps the rest
of the route feasible), so a pickup/delivery position pair is tested in O(1) amortised; the
best few candidates are then re-timed exactly and checked against the driver rules.

Emergency bookings may pre-empt a lower-priority booking when nothing fits: the cheapest
bump (lowest priority first) is taken and the bumped booking is re-placed elsewhere if
possible, otherwise reported as unserved with code ``preempted``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from scheduler.compat import vehicle_fits
from scheduler.drivers import driver_fits_route
from scheduler.model import Booking, Driver, Plan, Problem, Route, Unserved, Vehicle, plan_totals
from scheduler.timing import schedule, visit_service, visit_window, visits_of

#: How many cheapest position pairs are re-timed exactly before giving up on a route.
_VERIFY = 8


@dataclass
class InsertResult:
    """Outcome of :func:`insert_booking`."""

    plan: Plan
    inserted: bool
    vehicle_id: str | None = None
    added_distance: float = 0.0
    bumped: list[str] = field(default_factory=list)
    #: bumped booking id → vehicle it was re-placed on (None = left unserved)
    replaced: dict[str, str | None] = field(default_factory=dict)


def _candidates(problem: Problem, v: Vehicle, route: Route, b: Booking,
                by_id: dict[str, Booking]) -> list[tuple[float, int, int]]:
    """Feasible-looking (cost, i, j): pickup after stop i, delivery after stop j (j ≥ i)."""
    dist, dur = problem.distances, problem.durations
    stops = route.stops
    n = len(stops) - 1
    nodes = [s.node for s in stops]
    hi = [v.window[1]] * (n + 1)
    lo = [v.window[0]] * (n + 1)
    svc = [0.0] * (n + 1)
    for k in range(1, n):
        s = stops[k]
        bb = by_id[s.booking_id]  # type: ignore[index]
        lo[k], hi[k] = visit_window(bb, s.kind)
        svc[k] = visit_service(bb, s.kind)
    latest = hi[:]
    for k in range(n - 1, 0, -1):
        latest[k] = min(hi[k], latest[k + 1] - svc[k] - float(dur[nodes[k], nodes[k + 1]]))
    loads = [s.load for s in stops]
    # The garage departure was pushed late to the first stop; a new first stop may leave
    # as early as the vehicle's availability.
    deps = [v.window[0]] + [s.departure for s in stops[1:]]
    q = b.passengers
    d_node = b.delivery
    e_d, l_d = b.delivery_window
    out: list[tuple[float, int, int]] = []
    if b.pickup is None:  # delivery-only: loaded at the garage
        peak = 0
        for i in range(n):
            peak = max(peak, loads[i])
            if peak + q > v.seats:
                break
            arr = deps[i] + float(dur[nodes[i], d_node])
            sd = max(arr, e_d)
            if sd > l_d:
                break
            nxt = sd + b.delivery_service + float(dur[d_node, nodes[i + 1]])
            if max(nxt, lo[i + 1]) <= latest[i + 1] + 1e-9:
                cost = dist[nodes[i], d_node] + dist[d_node, nodes[i + 1]] - dist[nodes[i],
                                                                                  nodes[i + 1]]
                out.append((float(cost), i, i))
        return out
    p_node = b.pickup
    e_p, l_p = b.pickup_window
    for i in range(n):
        arr_p = deps[i] + float(dur[nodes[i], p_node])
        if arr_p > l_p:
            break
        if loads[i] + q > v.seats:
            continue
        dp = max(arr_p, e_p) + b.pickup_service
        c_p = float(dist[nodes[i], p_node])
        # delivery right after pickup
        sd = max(dp + float(dur[p_node, d_node]), e_d)
        if sd <= l_d and (b.max_ride is None or sd - dp <= b.max_ride):
            nxt = sd + b.delivery_service + float(dur[d_node, nodes[i + 1]])
            if max(nxt, lo[i + 1]) <= latest[i + 1] + 1e-9:
                cost = c_p + dist[p_node, d_node] + dist[d_node, nodes[i + 1]] - dist[
                    nodes[i], nodes[i + 1]]
                out.append((float(cost), i, i))
        # delivery later: walk the pushed-forward schedule
        t = dp
        prev = p_node
        c_p_total = c_p + float(dist[p_node, nodes[i + 1]]) - float(dist[nodes[i], nodes[i + 1]])
        for j in range(i + 1, n):
            start = max(t + float(dur[prev, nodes[j]]), lo[j])
            if start > hi[j] + 1e-9 or loads[j] + q > v.seats:
                break
            t = start + svc[j]
            prev = nodes[j]
            sd = max(t + float(dur[prev, d_node]), e_d)
            if sd > l_d:
                break
            if b.max_ride is not None and sd - dp > b.max_ride:
                break
            nxt = sd + b.delivery_service + float(dur[d_node, nodes[j + 1]])
            if max(nxt, lo[j + 1]) <= latest[j + 1] + 1e-9:
                cost = c_p_total + dist[prev, d_node] + dist[d_node, nodes[j + 1]] - dist[
                    prev, nodes[j + 1]]
                out.append((float(cost), i, j))
    return out


def _with_insertion(visits: list, b: Booking, i: int, j: int) -> list:
    # stop k of the route is visits[k-1]; "after stop i" = position i in the visit list
    if b.pickup is None:
        return visits[:i] + [(b, "delivery")] + visits[i:]
    return visits[:i] + [(b, "pickup")] + visits[i:j] + [(b, "delivery")] + visits[j:]


def _driver_for(problem: Problem, plan: Plan, v: Vehicle, route: Route,
                visits: list) -> str | None | bool:
    """Driver id for the new route; ``False`` when no driver can take it.

    A used route keeps its driver (re-assigning drivers is the solver's job); an idle car
    gets the first free driver who fits.
    """
    if not problem.drivers:
        return route.driver_id
    if route.driver_id is not None:
        d = problem.driver(route.driver_id)
        return d.id if driver_fits_route(problem, d, v, route, visits) else False
    busy = {r.driver_id for r in plan.routes if r.used and r.vehicle_id != v.id}
    for d in problem.drivers:
        if d.id not in busy and driver_fits_route(problem, d, v, route, visits):
            return d.id
    return False


def _best_on_route(problem: Problem, plan: Plan, v: Vehicle, route: Route,
                   b: Booking, by_id: dict[str, Booking] | None = None,
                   drivers: dict[str, Driver] | None = None
                   ) -> tuple[float, Route] | None:
    driver = None
    if problem.drivers and route.driver_id:
        driver = (drivers[route.driver_id] if drivers is not None and route.driver_id in drivers
                  else problem.driver(route.driver_id))
    if not vehicle_fits(b, v, driver):
        return None
    by_id = by_id if by_id is not None else {x.id: x for x in problem.bookings}
    cands = sorted(_candidates(problem, v, route, b, by_id))[:_VERIFY]
    base = visits_of(problem, route, by_id) if cands else []
    for cost, i, j in cands:
        visits = _with_insertion(base, b, i, j)
        new = schedule(problem, v, visits, route.driver_id, rest=driver)
        if new is None:
            continue
        did = _driver_for(problem, plan, v, new, visits)
        if did is False:
            continue
        new.driver_id = did  # type: ignore[assignment]
        if b.licence and problem.drivers and b.licence not in problem.driver(
                new.driver_id or "").licences:
            continue
        return cost, new
    return None


def _routes_by_vehicle(problem: Problem, plan: Plan) -> dict[str, Route]:
    """Every vehicle's route, with empty ones for idle vehicles."""
    out = {r.vehicle_id: r for r in plan.routes}
    for v in problem.vehicles:
        if v.id not in out:
            r = schedule(problem, v, [], None, check=False)
            assert r is not None
            out[v.id] = r
    return out


def best_insertion(problem: Problem, plan: Plan, b: Booking,
                   skip: set[str] | None = None) -> tuple[float, Route] | None:
    """Cheapest feasible (added distance, new route) over all vehicles, or ``None``."""
    frozen_v = problem.frozen
    best: tuple[float, Route] | None = None
    vehicles = {v.id: v for v in problem.vehicles}
    routes = _routes_by_vehicle(problem, plan)
    by_id = {x.id: x for x in problem.bookings}
    drivers = {d.id: d for d in problem.drivers}
    for vid, route in routes.items():
        if skip and vid in skip:
            continue
        v = vehicles[vid]
        res = _best_on_route(problem, plan, v, route, b, by_id, drivers)
        if res is None:
            continue
        # An idle car costs its fixed cost on top of the detour.
        cost = res[0] + (0.0 if route.used else v.fixed_cost)
        if vid in frozen_v and not _frozen_kept(problem, vid, res[1]):
            continue
        if best is None or cost < best[0]:
            best = (cost, res[1])
    return best


def _frozen_kept(problem: Problem, vid: str, route: Route) -> bool:
    legs = problem.frozen.get(vid, [])
    got = [(s.booking_id, s.kind) for s in route.stops[1:1 + len(legs)]]
    return got == [(f.booking_id, f.kind) for f in legs]


def _apply(problem: Problem, plan: Plan, route: Route, served: list[str]) -> Plan:
    new = Plan(routes=[r for r in plan.routes if r.vehicle_id != route.vehicle_id] + [route],
               unserved=[u for u in plan.unserved if u.booking_id not in served],
               meta=dict(plan.meta))
    plan_totals(problem, new)
    return new


def insert_booking(problem: Problem, plan: Plan, b: Booking,
                   allow_preemption: bool = True) -> InsertResult:
    """Insert ``b`` at least added cost; pre-empt for emergencies when nothing fits.

    ``b`` is appended to ``problem.bookings`` when missing.  The input plan is not modified.
    """
    if all(x.id != b.id for x in problem.bookings):
        problem.bookings.append(b)
    found = best_insertion(problem, plan, b)
    if found is not None:
        cost, route = found
        return InsertResult(_apply(problem, plan, route, [b.id]), True, route.vehicle_id, cost)
    if allow_preemption and b.priority == "emergency":
        res = _preempt(problem, plan, b)
        if res is not None:
            return res
    new = copy.deepcopy(plan)
    new.unserved = [u for u in new.unserved if u.booking_id != b.id] + [
        Unserved(b.id, "no_feasible_insertion",
                 "no vehicle can fit this booking into its day without breaking a window, "
                 "the seats or a driver rule",
                 "没有车辆能在不违反时间窗、座位或驾驶员规则的情况下接下此单")]
    return InsertResult(new, False)


def _preempt(problem: Problem, plan: Plan, b: Booking) -> InsertResult | None:
    """Remove one lower-priority booking so that ``b`` fits; re-place the bumped one."""
    frozen = {f.booking_id for legs in problem.frozen.values() for f in legs}
    vehicles = {v.id: v for v in problem.vehicles}
    by_id = {x.id: x for x in problem.bookings}
    drivers = {d.id: d for d in problem.drivers}
    options: list[tuple[int, float, str, Route]] = []
    for route in plan.routes:
        v = vehicles[route.vehicle_id]
        if not vehicle_fits(b, v, drivers.get(route.driver_id or "")):
            continue  # bumping anyone from a car the booking cannot use is pointless
        visits = visits_of(problem, route, by_id)
        for victim in route.booking_ids():
            vb = by_id[victim]
            if vb.rank >= b.rank or victim in frozen:
                continue
            rest = [x for x in visits if x[0].id != victim]
            base = schedule(problem, v, rest, route.driver_id)
            if base is None:
                continue
            res = _best_on_route(problem, plan, v, base, b, by_id, drivers)
            if res is not None:
                options.append((vb.rank, res[0], victim, res[1]))
    if not options:
        return None
    options.sort(key=lambda o: (o[0], o[1]))
    _rank, cost, victim, route = options[0]
    plan2 = _apply(problem, plan, route, [b.id])
    again = best_insertion(problem, plan2, problem.booking(victim))
    if again is not None:
        plan3 = _apply(problem, plan2, again[1], [victim])
        return InsertResult(plan3, True, route.vehicle_id, cost, [victim],
                            {victim: again[1].vehicle_id})
    plan2.unserved.append(Unserved(
        victim, "preempted", f"bumped by emergency booking {b.id}; no other vehicle fits",
        f"被紧急用车 {b.id} 顶替，且没有其他车辆可接"))
    return InsertResult(plan2, True, route.vehicle_id, cost, [victim], {victim: None})
