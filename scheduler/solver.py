"""OR-Tools routing solver for the official-car day plan.

Model (one routing node per *stop*, so two bookings at one building are two nodes):

* pickup-and-delivery pairs: ``AddPickupAndDelivery`` + same vehicle + pickup before
  delivery on the time dimension; delivery-only jobs (VRPTW) are single nodes;
* a ``Time`` dimension (transit = service at the origin node + travel) with booking windows,
  vehicle availability on the start/end cumuls and waiting allowed (slack);
* a ``Seats`` dimension; pickups add passengers, deliveries remove them.  The start cumul is
  free in ``[0, seats]``: it is the load taken on at the garage by delivery-only jobs;
* allowed vehicles per stop (``SetAllowedVehiclesForIndex``) from category, explicit list,
  seats and the paired driver's licences;
* every booking optional through a disjunction whose penalty is weighted by priority and
  exceeds any vehicle's fixed cost, so serving beats saving a car, and an emergency beats
  ten leadership trips;
* matrices registered with ``RegisterTransitMatrix`` / ``RegisterUnaryTransitVector``: no
  Python callback is ever called during search (OR-Tools complaint 11);
* frozen legs are hard ``NextVar`` chains from the vehicle start (complaint 12);
* a time limit is always set (complaint 10).

Search (a portfolio, reported as such in the benchmark): a vroom solution seeds OR-Tools
(``ReadAssignmentFromRoutes``); a vehicle-minimisation phase removes the smallest route and
asks OR-Tools to re-place its bookings on the remaining vehicles; guided local search then
polishes distance for the rest of the time.  Times in the plan are recomputed in floating
point from the matrices; the integer model uses ``scale`` and rounds durations *up*, so an
integer-feasible plan is feasible with the real matrix.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from scheduler.compat import allowed_vehicle_ids
from scheduler.model import PRIORITY_WEIGHT, Booking, Driver, Plan, Problem, Route, Unserved
from scheduler.model import Vehicle as VehicleT
from scheduler.timing import Visit, schedule

Routes = dict[str, list[Visit]]


@dataclass
class SolveOptions:
    """Knobs of :func:`solve`."""

    time_limit: float = 10.0
    #: Integer units per model unit (1 for seconds/metres; 1000 for Euclidean benchmarks).
    scale: float = 1.0
    seed_with_vroom: bool = True
    minimise_vehicles: bool = True
    vroom_exploration: int = 5
    threads: int = 2
    explain: bool = True
    #: Share of the remaining time one vehicle-removal attempt may use.
    removal_share: float = 0.35


@dataclass
class _Model:
    """An OR-Tools routing model plus the maps back to the problem."""

    manager: pywrapcp.RoutingIndexManager
    routing: pywrapcp.RoutingModel
    vehicles: list[VehicleT]
    visits: list[Visit]
    index_of: dict[tuple[str, str], int] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# building the model
# ----------------------------------------------------------------------------------------
def _int_window(w: tuple[float, float], scale: float) -> tuple[int, int]:
    return int(math.ceil(w[0] * scale - 1e-7)), int(math.floor(w[1] * scale + 1e-7))


def _penalty_base(problem: Problem, scale: float) -> int:
    """Drop penalty of an ordinary booking: above any fixed cost plus any detour."""
    fixed = max((v.fixed_cost for v in problem.vehicles), default=0)
    detour = 2.0 * float(problem.distances.max()) if problem.distances.size else 0.0
    return int((fixed + detour + 1) * scale * 10)


def _build(problem: Problem, vehicles: list[VehicleT], bookings: list[Booking],
           allowed: dict[str, list[str]], scale: float,
           windows: dict[str, tuple[float, float]], drivers: dict[str, Driver],
           frozen_ok: bool = True) -> _Model:
    """Build the routing model for ``bookings`` on ``vehicles``."""
    depots = sorted({v.origin for v in vehicles} | {v.destination for v in vehicles})
    depot_pos = {n: i for i, n in enumerate(depots)}
    visits: list[Visit] = []
    for b in bookings:
        if b.pickup is not None:
            visits.append((b, "pickup"))
        visits.append((b, "delivery"))
    nd = len(depots)
    loc = np.array(depots + [b.pickup if k == "pickup" else b.delivery for b, k in visits],
                   dtype=np.int64)
    svc = np.array([0.0] * nd + [b.pickup_service if k == "pickup" else b.delivery_service
                                 for b, k in visits])
    dist = np.rint(problem.distances[np.ix_(loc, loc)] * scale).astype(np.int64)
    travel = np.ceil(problem.durations[np.ix_(loc, loc)] * scale - 1e-7).astype(np.int64)
    svc_int = np.ceil(svc * scale - 1e-7).astype(np.int64)
    tmat = travel + svc_int[:, None]
    np.fill_diagonal(tmat, 0)
    np.fill_diagonal(dist, 0)

    starts = [depot_pos[v.origin] for v in vehicles]
    ends = [depot_pos[v.destination] for v in vehicles]
    manager = pywrapcp.RoutingIndexManager(len(loc), len(vehicles), starts, ends)
    routing = pywrapcp.RoutingModel(manager)
    m = _Model(manager, routing, vehicles, visits)
    for i, (b, k) in enumerate(visits):
        m.index_of[b.id, k] = manager.NodeToIndex(nd + i)

    dist_cb = routing.RegisterTransitMatrix(dist.tolist())
    routing.SetArcCostEvaluatorOfAllVehicles(dist_cb)
    horizon = int(max(max(w[1] for w in windows.values()),
                      max(b.delivery_window[1] for b in bookings) if bookings else 0) * scale) + 1
    time_cb = routing.RegisterTransitMatrix(tmat.tolist())
    routing.AddDimension(time_cb, horizon, horizon, False, "Time")
    tdim = routing.GetDimensionOrDie("Time")

    demand = [0] * nd + [b.passengers if k == "pickup" else -b.passengers for b, k in visits]
    seats_cb = routing.RegisterUnaryTransitVector(demand)
    routing.AddDimensionWithVehicleCapacity(seats_cb, 0, [v.seats for v in vehicles], False,
                                            "Seats")
    _vehicle_constraints(m, tdim, windows, scale)
    if drivers:
        _driving_limit(m, problem, loc, scale, drivers)
    _booking_constraints(m, problem, tdim, allowed, scale)
    if frozen_ok:
        _freeze(m, problem)
    return m


def _vehicle_constraints(m: _Model, tdim, windows: dict[str, tuple[float, float]],
                         scale: float) -> None:
    routing = m.routing
    for k, v in enumerate(m.vehicles):
        lo, hi = _int_window(windows[v.id], scale)
        tdim.CumulVar(routing.Start(k)).SetRange(lo, hi)
        tdim.CumulVar(routing.End(k)).SetRange(lo, hi)
        routing.SetFixedCostOfVehicle(int(v.fixed_cost * scale), k)
        # Leave as late and come back as early as possible: compact driver shifts.
        routing.AddVariableMaximizedByFinalizer(tdim.CumulVar(routing.Start(k)))
        routing.AddVariableMinimizedByFinalizer(tdim.CumulVar(routing.End(k)))


def _driving_limit(m: _Model, problem: Problem, loc: np.ndarray, scale: float,
                   drivers: dict[str, Driver]) -> None:
    """A ``Driving`` dimension (travel only) capped by each paired driver's limit."""
    travel = np.ceil(problem.durations[np.ix_(loc, loc)] * scale - 1e-7).astype(np.int64)
    cb = m.routing.RegisterTransitMatrix(travel.tolist())
    caps = [int(drivers[v.id].max_driving * scale) if v.id in drivers else int(travel.sum())
            for v in m.vehicles]
    m.routing.AddDimensionWithVehicleCapacity(cb, 0, caps, True, "Driving")


def _booking_constraints(m: _Model, problem: Problem, tdim,
                         allowed: dict[str, list[str]], scale: float) -> None:
    routing, solver = m.routing, m.routing.solver()
    vpos = {v.id: k for k, v in enumerate(m.vehicles)}
    base = _penalty_base(problem, scale)
    frozen = {f.booking_id for legs in problem.frozen.values() for f in legs}
    seen: set[str] = set()
    for b, _k in m.visits:
        if b.id in seen:
            continue
        seen.add(b.id)
        d = m.index_of[b.id, "delivery"]
        idx = [d]
        lo, hi = _int_window(b.delivery_window, scale)
        tdim.CumulVar(d).SetRange(lo, hi)
        if b.pickup is not None:
            p = m.index_of[b.id, "pickup"]
            idx.insert(0, p)
            lo, hi = _int_window(b.pickup_window, scale)
            tdim.CumulVar(p).SetRange(lo, hi)
            routing.AddPickupAndDelivery(p, d)
            solver.Add(routing.VehicleVar(p) == routing.VehicleVar(d))
            solver.Add(tdim.CumulVar(p) <= tdim.CumulVar(d))
            if b.max_ride is not None:
                svc = int(math.ceil(b.pickup_service * scale))
                solver.Add(tdim.CumulVar(d) - tdim.CumulVar(p) - svc
                           <= int(b.max_ride * scale))
        ok = [vpos[v] for v in allowed.get(b.id, []) if v in vpos]
        if len(ok) < len(m.vehicles):
            for i in idx:
                routing.SetAllowedVehiclesForIndex(ok, i)
        if b.id not in frozen:
            routing.AddDisjunction(idx, base * PRIORITY_WEIGHT[b.priority], len(idx))


def _freeze(m: _Model, problem: Problem) -> None:
    """Frozen legs: hard chain start → s1 → s2 … on the named vehicle."""
    routing, solver = m.routing, m.routing.solver()
    for k, v in enumerate(m.vehicles):
        legs = problem.frozen.get(v.id, [])
        prev = routing.Start(k)
        for f in legs:
            idx = m.index_of[f.booking_id, f.kind]
            solver.Add(routing.NextVar(prev) == idx)
            prev = idx


# ----------------------------------------------------------------------------------------
# solving
# ----------------------------------------------------------------------------------------
def _params(seconds: float, has_initial: bool) -> pywrapcp.DefaultRoutingSearchParameters:
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = (
        routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION)
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    params.time_limit.FromMilliseconds(max(50, int(seconds * 1000)))
    del has_initial
    return params


def _run(m: _Model, seconds: float, initial: Routes | None) -> Routes | None:
    """Solve (from ``initial`` when given); visit sequences per vehicle id."""
    params = _params(seconds, initial is not None)
    routing = m.routing
    if initial:
        routing.CloseModelWithParameters(params)
        ids = [v.id for v in m.vehicles]
        seqs = [[m.index_of[b.id, k] for b, k in initial.get(vid, [])] for vid in ids]
        assignment = routing.ReadAssignmentFromRoutes(seqs, True)
        sol = (routing.SolveFromAssignmentWithParameters(assignment, params)
               if assignment is not None else routing.SolveWithParameters(params))
    else:
        sol = routing.SolveWithParameters(params)
    if sol is None:
        return None
    by_index = {idx: visit for visit in m.visits
                for idx in [m.index_of[visit[0].id, visit[1]]]}
    out: Routes = {}
    for k, v in enumerate(m.vehicles):
        idx = sol.Value(routing.NextVar(routing.Start(k)))
        seq = []
        while not routing.IsEnd(idx):
            seq.append(by_index[idx])
            idx = sol.Value(routing.NextVar(idx))
        if seq:
            out[v.id] = seq
    return out


def _served(routes: Routes) -> set[str]:
    return {b.id for seq in routes.values() for b, _ in seq}


def _score(problem: Problem, routes: Routes) -> tuple[int, int, float]:
    """Lexicographic: fewest unserved, fewest vehicles, shortest distance."""
    dist = 0.0
    by_v = {v.id: v for v in problem.vehicles}
    for vid, seq in routes.items():
        nodes = ([by_v[vid].origin] + [b.pickup if k == "pickup" else b.delivery
                                       for b, k in seq] + [by_v[vid].destination])
        dist += float(sum(problem.distances[a, c] for a, c in zip(nodes, nodes[1:],
                                                                    strict=False)))
    return (len(problem.bookings) - len(_served(routes)), len(routes), dist)


def _feasible(problem: Problem, routes: Routes, vehicles: dict[str, VehicleT]) -> bool:
    return all(schedule(problem, vehicles[vid], seq) is not None for vid, seq in routes.items())


class _Search:
    """The portfolio search: seed → vehicle removal → distance polish."""

    def __init__(self, problem: Problem, opts: SolveOptions, bookings: list[Booking],
                 allowed: dict[str, list[str]], windows: dict[str, tuple[float, float]],
                 drivers: dict[str, Driver]) -> None:
        self.p, self.o, self.bookings = problem, opts, bookings
        self.allowed, self.windows, self.drivers = allowed, windows, drivers
        self.deadline = time.monotonic() + opts.time_limit
        self.vehicles = [_windowed(v, windows[v.id]) for v in problem.vehicles
                         if v.id in windows]
        self.by_id = {v.id: v for v in self.vehicles}
        self.log: list[str] = []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def model(self, vehicles: list[VehicleT]) -> _Model:
        return _build(self.p, vehicles, self.bookings, self.allowed, self.o.scale,
                      self.windows, self.drivers)

    def seed(self) -> Routes | None:
        if not (self.o.seed_with_vroom and not self.p.frozen and self.bookings):
            return None
        routes = self._vroom(self.vehicles)
        if routes is None:
            return None
        self.log.append(f"vroom seed: {_score(self.p, routes)}")
        return routes

    def _vroom(self, vehicles: list[VehicleT]) -> Routes | None:
        from scheduler.vroom_adapter import solve_vroom

        try:
            routes = solve_vroom(self.p, self.o.scale, self.o.vroom_exploration, self.o.threads,
                                 vehicles=vehicles, bookings=self.bookings)
        except Exception as exc:  # vroom refuses some inputs; OR-Tools alone then
            self.log.append(f"vroom failed: {exc}")
            return None
        if not _feasible(self.p, routes, self.by_id):
            self.log.append("vroom routes infeasible with the real matrix; ignored")
            return None
        return routes

    def _fewer(self, best: Routes) -> list[VehicleT]:
        """The vehicles of ``best`` minus the one with the fewest stops."""
        order = sorted(best, key=lambda vid: len(best[vid]), reverse=True)
        return [self.by_id[vid] for vid in order[:-1]]

    def remove_vehicles(self, best: Routes) -> Routes:
        """Vehicle minimisation: solve again with one vehicle fewer, while it works.

        vroom is asked first with the reduced fleet (it maximises served bookings); when it
        leaves a few bookings out, OR-Tools starts from its routes and tries to place them.
        """
        n = len(self.bookings)
        while self.left() > 0.5 and len(best) > 1:
            if any(vid in self.p.frozen for vid in best):
                break
            fleet = self._fewer(best)
            res = self._vroom(fleet) or {}
            missing = n - len(_served(res))
            if missing and missing <= max(3, n // 20) and self.left() > 1.0:
                budget = min(self.left() * self.o.removal_share, self.left() - 0.5)
                res = _run(self.model(fleet), budget, res) or {}
                missing = n - len(_served(res))
            self.log.append(f"try {len(fleet)} vehicles: {missing} unplaced")
            if missing:
                break
            best = res
        return best

    def polish(self, best: Routes | None) -> Routes | None:
        if self.left() < 0.2 and best is not None:
            return best
        res = _run(self.model(self.vehicles), max(self.left(), 0.2), best)
        if res is None:
            return best
        if best is None or _score(self.p, res) <= _score(self.p, best):
            return res
        return best


def _windowed(v: VehicleT, window: tuple[float, float]) -> VehicleT:
    from dataclasses import replace

    return v if window == v.window else replace(v, window=window)


def _plan_from(problem: Problem, routes: Routes, vehicles: dict[str, VehicleT],
               pairing: dict[str, str]) -> Plan:
    plan_routes: list[Route] = []
    for vid, seq in routes.items():
        r = schedule(problem, vehicles[vid], seq, pairing.get(vid)) or schedule(
            problem, vehicles[vid], seq, pairing.get(vid), check=False)
        assert r is not None
        plan_routes.append(r)
    plan = Plan(routes=plan_routes)
    from scheduler.model import plan_totals

    plan_totals(problem, plan)
    return plan


def solve(problem: Problem, options: SolveOptions | None = None) -> Plan:
    """Plan the day: every booking is either on a route (with vehicle *and* driver, when the
    problem has drivers) or listed as unserved with a reason."""
    from scheduler.explain import explain_unserved, precheck  # explain re-solves via us

    opts = options or SolveOptions()
    t0 = time.monotonic()
    pairing: dict[str, Driver] = {}
    windows = {v.id: v.window for v in problem.vehicles}
    if problem.drivers:
        from scheduler.drivers import pair_before_routing

        paired = pair_before_routing(problem)
        pairing = {vid: d for vid, (d, _w) in paired.items()}
        windows = {vid: w for vid, (_d, w) in paired.items()}
    rejected = {b.id: u for b in problem.bookings if (u := precheck(problem, b)) is not None}
    bookings = [b for b in problem.bookings if b.id not in rejected]
    allowed = {b.id: allowed_vehicle_ids(problem, b, pairing=pairing if problem.drivers
                                         else None) for b in bookings}
    search = _Search(problem, opts, bookings, allowed, windows, pairing)
    best = search.seed()
    if best is not None and opts.minimise_vehicles and len(_served(best)) == len(bookings):
        best = search.remove_vehicles(best)
    best = search.polish(best) or {}
    driver_ids = {vid: d.id for vid, d in pairing.items()}
    plan = _plan_from(problem, best, search.by_id, driver_ids)
    if problem.drivers:
        from scheduler.drivers import assign_after_routing

        exact = assign_after_routing(problem, plan.routes)
        if exact is not None:
            for r in plan.routes:
                r.driver_id = exact.get(r.vehicle_id, r.driver_id)
    served = _served(best)
    plan.unserved = list(rejected.values())
    dropped = [b for b in bookings if b.id not in served]
    if dropped:
        plan.unserved += (explain_unserved(problem, plan, dropped) if opts.explain else [
            Unserved(b.id, "not_inserted", "not placed by the solver") for b in dropped])
    plan.meta.update({"seconds": time.monotonic() - t0, "log": search.log,
                      "portfolio": "vroom seed + OR-Tools" if opts.seed_with_vroom
                      else "OR-Tools"})
    return plan
