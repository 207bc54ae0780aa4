"""OR-Tools routing solver for the official-car day plan.

Model (one routing node per *stop*, so two bookings at one building are two nodes):

* pickup-and-delivery pairs: ``AddPickupAndDelivery`` + same vehicle + pickup before
  delivery on the time dimension; delivery-only jobs (VRPTW) are single nodes;
* a ``Time`` dimension (transit = service at the origin node + travel) with booking windows,
  vehicle availability on the start/end cumuls and waiting allowed (slack);
* a ``Seats`` dimension; pickups add passengers, deliveries remove them.  The start cumul is
  free in ``[0, seats]``: it is the load taken on at the garage by delivery-only jobs;
* allowed vehicles per stop (``SetAllowedVehiclesForIndex``; in 9.15's Python wrapper that
  call rejects every list, so the equivalent ``VehicleVar`` domain restriction is the
  fallback) from category, explicit list, seats and the paired driver's licences;
* every booking optional through a disjunction whose penalty is weighted by priority and
  exceeds any vehicle's fixed cost, so serving beats saving a car, and an emergency beats
  ten leadership trips;
* matrices registered with ``RegisterTransitMatrix`` / ``RegisterUnaryTransitVector``: no
  Python callback is ever called during search (OR-Tools complaint 11);
* frozen legs are hard ``NextVar`` chains from the vehicle start (complaint 12);
* a time limit is always set (complaint 10);
* vehicles are *duties* (a car may have an early and a late duty with different drivers,
  see :class:`scheduler.model.Vehicle`); drivers are paired with duties before routing
  (exact matching; the shift bounds the duty's window), a ``Driving`` dimension caps
  driving time, and every arc is charged a break allowance (20 min per 4 h of driving) so
  that the breaks fit (complaint 9); after routing the drivers are re-assigned exactly
  (min-cost flow) to the routes actually used.

Search (a portfolio, reported as such in the benchmark):

1. vroom (exploration 5) gives a first solution, vetted against everything vroom does not
   model (breaks, driving limits, ride times) and repaired if needed;
2. fleet reduction: vroom again with one vehicle fewer while it serves everything; when it
   leaves a few bookings out, OR-Tools starts from its routes (``ReadAssignmentFromRoutes``)
   and tries to place them;
3. fixed-interval days (the official-car day: each booking holds its car for a fixed
   interval, one booking on board at a time; more than ``interval_min_bookings``) skip
   steps 1–2 (the fleet is the day's duties): the dedicated local search of
   :mod:`scheduler.intervals` (cheapest insertion, ejection chains, relocation, 2-opt* tail
   exchange, then ruin and recreate) gets the whole time — measured better than starting
   it from a vroom seed (``interval_vroom_seed``);
4. otherwise improvement: when PyVRP can express the problem (no per-booking vehicle
   restrictions, drivers, ride times or frozen legs — e.g. the public benchmarks), its
   hybrid genetic search first tries one vehicle fewer (stopping at the first feasible
   solution) and then polishes distance; otherwise OR-Tools guided local search polishes
   from the seed.

Times in the plan are recomputed in floating point from the matrices; the integer model
uses ``scale`` and rounds durations *up*, so an integer-feasible plan is feasible with the
real matrix.  A route that still cannot be timed (a rule an engine did not model) loses
its lowest-priority booking until it can; left-out bookings get a cheapest-insertion pass
and then an explanation (:mod:`scheduler.explain`).  The validator has the last word.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from ortools.constraint_solver import pywrapcp, routing_enums_pb2

from scheduler.compat import allowed_vehicle_ids
from scheduler.drivers import assign_after_routing, best_shift, pair_before_routing
from scheduler.explain import explain_unserved, precheck, reachable, unserved
from scheduler.insert import best_insertion
from scheduler.model import (
    PRIORITY_WEIGHT,
    Booking,
    Driver,
    Plan,
    Problem,
    Route,
    Unserved,
    plan_totals,
    route_distance,
)
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
    #: Let PyVRP's hybrid genetic search join the portfolio when the problem fits it.
    use_pyvrp: bool = True
    seed: int = 0
    #: Cap of the vroom seed as a share of the time limit (fleet-reduction calls get half).
    vroom_share: float = 0.3
    #: vroom fleet reduction stops starting new attempts after this share of the time.
    shrink_until: float = 0.4
    #: Without a vroom seed, the first HGS run (full fleet) gets this share of the time.
    hgs_first_share: float = 0.4
    #: Share of the remaining time for the HGS attempt with one vehicle fewer.
    hgs_fewer_share: float = 0.5
    #: Explanations of unserved bookings may run this share of the time limit past it
    #: (then only the static pre-check; the rest get ``not_explained``).
    explain_share: float = 0.1
    #: Charge every arc the drivers' break allowance in the engines (see
    #: ``_break_allowance``).  Without it the engines ignore breaks and the timing/repair
    #: step (validator-backed) enforces them — better when long waits are the norm, as on
    #: official-car days where the car waits through every booking.
    break_allowance: bool = True
    #: Fixed-interval days (:mod:`scheduler.intervals`) with more bookings than this get
    #: the dedicated local search after the vroom seed instead of OR-Tools.
    interval_min_bookings: int = 200
    #: Start that local search from a vroom seed (capped at ``interval_vroom_share`` of the
    #: time).  Off by default: on the 1,000-booking city day the search's own construction
    #: with the whole time limit served more bookings with less empty running than the
    #: vroom seed plus the rest of the time (vroom cut short under load seeds badly).
    interval_vroom_seed: bool = False
    interval_vroom_share: float = 0.55


@dataclass
class _Model:
    """An OR-Tools routing model plus the maps back to the problem."""

    manager: pywrapcp.RoutingIndexManager
    routing: pywrapcp.RoutingModel
    vehicles: list[VehicleT]
    visits: list[Visit]
    scale: float = 1.0
    index_of: dict[tuple[str, str], int] = field(default_factory=dict)
    #: service start per visit in the last solution (model units), for re-timing
    times: dict[tuple[str, str], float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# building the model
# ----------------------------------------------------------------------------------------
def _int_window(w: tuple[float, float], scale: float) -> tuple[int, int]:
    return int(math.ceil(w[0] * scale - 1e-7)), int(math.floor(w[1] * scale + 1e-7))


def _penalty_base(problem: Problem, scale: float, fixed_costs: bool) -> int:
    """Drop penalty of an ordinary booking: above any fixed cost plus any detour."""
    fixed = max((v.fixed_cost for v in problem.vehicles), default=0) if fixed_costs else 0
    detour = 2.0 * float(problem.distances.max()) if problem.distances.size else 0.0
    return int((fixed + detour + 1) * scale * 10)


def _build(problem: Problem, vehicles: list[VehicleT], bookings: list[Booking],
           allowed: dict[str, list[str]], scale: float,
           windows: dict[str, tuple[float, float]], drivers: dict[str, Driver],
           fixed_costs: bool = True, allowance: bool = True) -> _Model:
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
    extra = _break_allowance(travel, drivers, windows) if allowance else 0
    tmat = travel + extra + svc_int[:, None]
    np.fill_diagonal(tmat, 0)
    np.fill_diagonal(dist, 0)

    starts = [depot_pos[v.origin] for v in vehicles]
    ends = [depot_pos[v.destination] for v in vehicles]
    manager = pywrapcp.RoutingIndexManager(len(loc), len(vehicles), starts, ends)
    routing = pywrapcp.RoutingModel(manager)
    m = _Model(manager, routing, vehicles, visits, scale)
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
    _vehicle_constraints(m, tdim, windows, scale, fixed_costs)
    if drivers:
        _driving_limit(m, problem, loc, scale, drivers)
    _booking_constraints(m, problem, tdim, allowed, _penalty_base(problem, scale, fixed_costs))
    _freeze(m, problem)
    return m


def _break_allowance(travel: np.ndarray, drivers: dict[str, Driver],
                     windows: dict[str, tuple[float, float]]) -> np.ndarray:
    """Extra time per arc that pays for the driver's breaks (OR-Tools complaint 9).

    Modelling breaks as OR-Tools break intervals is fragile; instead every second of
    driving is charged ``break_duration / break_after`` extra (20 min per 4 h), so a route
    feasible in the model has the slack for the breaks that the timing step then places
    (waits of at least the break length count as breaks).  Only when some paired shift
    is long enough to need a break.
    """
    ratios = [d.break_duration / d.break_after for vid, d in drivers.items()
              if vid in windows and windows[vid][1] - windows[vid][0] > d.break_after]
    if not ratios:
        return np.zeros_like(travel)
    return np.ceil(travel * max(ratios)).astype(np.int64)


def _vehicle_constraints(m: _Model, tdim, windows: dict[str, tuple[float, float]],
                         scale: float, fixed_costs: bool) -> None:
    routing = m.routing
    for k, v in enumerate(m.vehicles):
        lo, hi = _int_window(windows[v.id], scale)
        tdim.CumulVar(routing.Start(k)).SetRange(lo, hi)
        tdim.CumulVar(routing.End(k)).SetRange(lo, hi)
        if fixed_costs:
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
                         allowed: dict[str, list[str]], base: int) -> None:
    routing, solver = m.routing, m.routing.solver()
    vpos = {v.id: k for k, v in enumerate(m.vehicles)}
    scale = m.scale
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
        if not ok:  # an empty list would mean "any vehicle" to OR-Tools
            for i in idx:
                solver.Add(routing.ActiveVar(i) == 0)
        elif len(ok) < len(m.vehicles):
            for i in idx:
                _allow(routing, ok, i)
        if b.id not in frozen:
            routing.AddDisjunction(idx, base * PRIORITY_WEIGHT[b.priority], len(idx))


def _allow(routing: pywrapcp.RoutingModel, vehicles: list[int], index: int) -> None:
    """Restrict the vehicles that may visit ``index``.

    ``SetAllowedVehiclesForIndex`` is the intended call, but in the OR-Tools 9.15 Python
    wrapper its ``absl::Span<const int>`` argument has no SWIG typemap and every list is
    refused with a TypeError.  Restricting the node's vehicle variable to the allowed
    vehicles plus -1 (unperformed) is the equivalent constraint.
    """
    try:
        routing.SetAllowedVehiclesForIndex(vehicles, index)
    except TypeError:
        routing.VehicleVar(index).SetValues([*vehicles, -1])


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
def _params(seconds: float):  # -> RoutingSearchParameters (protobuf)
    """Parallel cheapest insertion, then guided local search until the time limit."""
    params = pywrapcp.DefaultRoutingSearchParameters()
    params.first_solution_strategy = (
        routing_enums_pb2.FirstSolutionStrategy.PARALLEL_CHEAPEST_INSERTION)
    params.local_search_metaheuristic = (
        routing_enums_pb2.LocalSearchMetaheuristic.GUIDED_LOCAL_SEARCH)
    params.time_limit.FromMilliseconds(max(50, int(seconds * 1000)))
    return params


def _run(m: _Model, seconds: float, initial: Routes | None) -> Routes | None:
    """Solve (from ``initial`` when given); visit sequences per vehicle id."""
    params = _params(seconds)
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
    by_index = {m.index_of[b.id, k]: (b, k) for b, k in m.visits}
    tdim = routing.GetDimensionOrDie("Time")
    out: Routes = {}
    for k, v in enumerate(m.vehicles):
        idx = sol.Value(routing.NextVar(routing.Start(k)))
        seq = []
        while not routing.IsEnd(idx):
            b, kind = by_index[idx]
            seq.append((b, kind))
            m.times[b.id, kind] = sol.Value(tdim.CumulVar(idx)) / m.scale
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


def _feasible(problem: Problem, routes: Routes, vehicles: dict[str, VehicleT],
              allowed: dict[str, list[str]] | None = None,
              drivers: dict[str, Driver] | None = None) -> bool:
    """Every route keeps windows and seats (and, when given, the allowed vehicles and the
    paired driver's break rule and driving limit).  Used to vet other engines' routes."""
    for vid, seq in routes.items():
        if allowed is not None and any(vid not in allowed.get(b.id, ()) for b, _ in seq):
            return False
        d = (drivers or {}).get(vid)
        r = schedule(problem, vehicles[vid], seq, rest=d)
        if r is None:
            return False
        if d is not None and route_distance(problem, r.stops, durations=True) > d.max_driving:
            return False
    return True


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
        #: OR-Tools service starts per routes object (id) it produced
        self.times: dict[int, dict[tuple[str, str], float]] = {}
        #: routes of the last failed fleet reduction (a warm start for the next attempt)
        self.partial: Routes | None = None
        self.partial_missing = 0
        self.pyvrp_ok = False
        if opts.use_pyvrp and bookings:
            from scheduler.pyvrp_adapter import applicable

            self.pyvrp_ok = applicable(problem, bookings)
        #: With PyVRP in the portfolio its search re-places bookings better than OR-Tools.
        self.ortools_repair = not self.pyvrp_ok
        from scheduler.intervals import applicable as fixed_intervals

        self.intervals = (len(bookings) > opts.interval_min_bookings
                          and fixed_intervals(problem, bookings, self.vehicles))

    def repaired(self, routes: Routes) -> Routes:
        """Routes with the bookings removed that make them break a rule."""
        out: Routes = {}
        for vid, seq in routes.items():
            ok = [x for x in seq if vid in self.allowed.get(x[0].id, ())]
            r, dropped = _repair(self.p, self.by_id[vid], ok, self.drivers.get(vid), None)
            gone = {b.id for b in dropped}
            if r is not None:
                out[vid] = [x for x in ok if x[0].id not in gone]
        return {vid: seq for vid, seq in out.items() if seq and self.feasible({vid: seq})}

    def feasible(self, routes: Routes) -> bool:
        """Vet routes from vroom or PyVRP against everything they do not model."""
        return _feasible(self.p, routes, self.by_id, self.allowed, self.drivers)

    def note(self, msg: str) -> None:
        """Log a step with the elapsed time."""
        spent = self.o.time_limit - self.left()
        self.log.append(f"{spent:5.2f}s {msg}")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def model(self, vehicles: list[VehicleT], fixed_costs: bool = True) -> _Model:
        """Routing model on ``vehicles``.

        With a fixed fleet (``fixed_costs=False``) the vehicle costs are left out: guided
        local search scales its penalties with the objective, and a 10^8 fixed cost per car
        would drown the arc costs it is meant to guide.
        """
        return _build(self.p, vehicles, self.bookings, self.allowed, self.o.scale,
                      self.windows, self.drivers, fixed_costs, self.o.break_allowance)

    def frozen_seed(self) -> Routes | None:
        """Initial routes holding only the frozen legs (plus the drop-offs they owe), so
        that OR-Tools starts from an assignment that satisfies the locks."""
        if not self.p.frozen:
            return None
        by_id = {b.id: b for b in self.bookings}
        routes: Routes = {}
        for vid, legs in self.p.frozen.items():
            if vid not in self.by_id:
                continue
            seq = [(by_id[f.booking_id], f.kind) for f in legs if f.booking_id in by_id]
            owed = [(b, "delivery") for b, k in seq if k == "pickup"
                    and (b, "delivery") not in seq]
            routes[vid] = seq + owed
        return routes

    def seed(self) -> Routes | None:
        if not (self.o.seed_with_vroom and not self.p.frozen and self.bookings):
            return self.frozen_seed()
        if self.pyvrp_ok and all(b.pickup is None for b in self.bookings):
            # Pure VRPTW: vroom needs seconds at exploration 5 and HGS needs no seed.
            return None
        routes = self._vroom(self.vehicles, self.o.vroom_share)
        if routes is None:
            return None
        self.note(f"vroom seed: {_score(self.p, routes)}")
        return routes

    def _vroom(self, vehicles: list[VehicleT], share: float) -> Routes | None:
        """vroom on ``vehicles``, capped at ``share`` of the time limit."""
        from scheduler.vroom_adapter import solve_vroom

        cap = min(self.o.time_limit * share, max(0.05, self.left() - 0.2))
        try:
            travel = np.ceil(self.p.durations * self.o.scale - 1e-7).astype(np.int64)
            extra = (_break_allowance(travel, self.drivers, self.windows)
                     if self.o.break_allowance else np.zeros_like(travel))
            routes = solve_vroom(self.p, self.o.scale, self.o.vroom_exploration, self.o.threads,
                                 vehicles=vehicles, bookings=self.bookings, timeout=cap,
                                 allowed=self.allowed, extra=extra if extra.any() else None,
                                 max_travel={vid: d.max_driving
                                             for vid, d in self.drivers.items()} or None)
        except Exception as exc:  # vroom refuses some inputs; OR-Tools alone then
            self.note(f"vroom failed: {exc}")
            return None
        if not self.feasible(routes):
            # vroom does not model breaks, driving limits or ride times: take off what
            # breaks them and keep the rest as a start.
            routes = self.repaired(routes)
            self.note("vroom routes repaired for rules vroom does not model")
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
        stop_at = self.deadline - self.o.time_limit * (1 - self.o.shrink_until)
        while time.monotonic() < stop_at and self.left() > 0.5 and len(best) > 1:
            if any(vid in self.p.frozen for vid in best):
                break
            fleet = self._fewer(best)
            res = self._vroom(fleet, self.o.vroom_share / 2) or {}
            missing = n - len(_served(res))
            if missing and self.ortools_repair and missing <= max(3, n // 20) \
                    and self.left() > 1.0:
                budget = min(self.left() * self.o.removal_share, self.left() - 0.5)
                model = self.model(fleet, fixed_costs=False)
                res = _run(model, budget, res) or {}
                self.times[id(res)] = model.times
                missing = n - len(_served(res))
            self.note(f"try {len(fleet)} vehicles: {missing} unplaced")
            if missing:
                self.partial, self.partial_missing = res, missing
                break
            best = res
        return best

    def hgs(self, warm: Routes | None, fleet: list[VehicleT], seconds: float,
            first_feasible: bool = False) -> Routes | None:
        """PyVRP's hybrid genetic search on ``fleet``, warm-started from ``warm``.

        With ``first_feasible`` the search stops at the first complete feasible solution
        (used to test whether a smaller fleet can do the day).
        """
        from scheduler.pyvrp_adapter import PyVRPInstance

        start = time.monotonic()
        inst = PyVRPInstance(self.p, self.bookings, fleet, self.o.scale)
        seconds = min(seconds - (time.monotonic() - start), self.left() - 0.05)
        res = inst.solve(seconds, warm, seed=self.o.seed, first_feasible=first_feasible)
        if res is None or not self.feasible(res):
            return None
        return res

    def _better(self, best: Routes | None, res: Routes | None, tag: str) -> Routes | None:
        if res is not None and (best is None or _score(self.p, res) < _score(self.p, best)):
            self.note(f"{tag}: {_score(self.p, res)}")
            return res
        return best

    def run_intervals(self) -> Routes:
        """Fixed-interval day: the dedicated local search, from its own construction or
        from a vroom seed (then it never serves fewer bookings than vroom did)."""
        from scheduler.intervals import IntervalSearch

        seed = None
        if self.o.seed_with_vroom and self.o.interval_vroom_seed:
            seed = self._vroom(self.vehicles, self.o.interval_vroom_share)
            if seed is not None:
                self.note(f"vroom seed: {_score(self.p, seed)}")
        ls = IntervalSearch(self.p, self.bookings, self.vehicles, self.allowed,
                            seed=self.o.seed)
        if seed:
            ls.load(seed)
        ls.run(self.deadline - 0.05)
        res = ls.export()
        if self.drivers and not self.feasible(res):
            res = self.repaired(res)
        self.note(f"interval search {ls.moves}: {_score(self.p, res)}")
        return res

    def run(self) -> Routes:
        """Seed, shrink the fleet, then improve with the best engine that fits."""
        if self.intervals:
            return self.run_intervals()
        best = self.seed()
        complete = best is not None and len(_served(best)) == len(self.bookings)
        if best is not None and complete and self.o.minimise_vehicles:
            best = self.remove_vehicles(best)
        # PyVRP needs every booking served; when the seed could not serve them all, the
        # OR-Tools model (optional bookings with penalties) decides who is left out.
        if self.pyvrp_ok and self.left() > 0.1 and (best is None or complete):
            best = self.run_hgs(best, complete)
            if best is None and self.left() > 0.2:
                best = self.polish(None)
        elif self.bookings:
            best = self.polish(best)
        return best or {}

    def run_hgs(self, best: Routes | None, complete: bool) -> Routes | None:
        """One more vehicle removal with HGS (stops at first success), then polish."""
        if best is None:
            best = self.hgs(None, self.vehicles, self.left() * self.o.hgs_first_share)
            complete = best is not None and len(_served(best)) == len(self.bookings)
            if best is not None:
                self.note(f"pyvrp first: {_score(self.p, best)}")
        # When vroom already failed by several bookings with one car fewer, HGS rarely
        # succeeds either: keep the time for distance instead.
        hopeless = self.partial is not None and self.partial_missing > max(
            2, int(0.04 * len(self.bookings)))
        if best and complete and self.o.minimise_vehicles and len(best) > 1 and \
                self.left() > 1.0 and not hopeless:
            fleet = self._fewer(best)
            warm = self.partial or {v.id: best[v.id] for v in fleet}
            res = self.hgs(warm, fleet, self.left() * self.o.hgs_fewer_share,
                           first_feasible=True)
            if res is not None and len(_served(res)) == len(self.bookings):
                best = self._better(best, res, "pyvrp fleet-1")
        fleet = self.vehicles
        if best and len(_served(best)) == len(self.bookings) and self.o.minimise_vehicles:
            fleet = [self.by_id[vid] for vid in best]
        return self._better(best, self.hgs(best, fleet, self.left() - 0.05), "pyvrp")

    def polish(self, best: Routes | None) -> Routes | None:
        if self.left() < 0.2 and best is not None:
            return best
        # Building the OR-Tools model is quadratic in the stops (about 2 µs per matrix
        # entry on a busy core); when that alone would eat most of the time left, the seed
        # is the answer.
        stops = sum(2 if b.pickup is not None else 1 for b in self.bookings)
        if best is not None and 2e-6 * stops ** 2 > 0.5 * self.left():
            self.note(f"polish skipped: a {stops}-stop model takes longer to build than the "
                      "time left")
            return best
        fleet, fixed = self.vehicles, True
        if best and self.o.minimise_vehicles and len(_served(best)) == len(self.bookings):
            fleet, fixed = [self.by_id[vid] for vid in best], False  # fleet already minimal
        model = self.model(fleet, fixed)
        res = _run(model, max(self.left(), 0.2), best)
        if res is None:
            return best
        self.times[id(res)] = model.times
        if best is None or _score(self.p, res) <= _score(self.p, best):
            return res
        return best


def _windowed(v: VehicleT, window: tuple[float, float]) -> VehicleT:
    return v if window == v.window else replace(v, window=window)


def _time_route(problem: Problem, v: VehicleT, seq: list[Visit], d: Driver | None,
                times: dict[tuple[str, str], float] | None) -> Route | None:
    """Earliest start first; then the solver's own service starts as lower bounds (with
    maximum ride times, a pickup should not be served needlessly early)."""
    did = d.id if d else None
    return (schedule(problem, v, seq, did, rest=d)
            or (schedule(problem, v, seq, did, rest=d, not_before=times) if times else None))


def _first_failure(problem: Problem, v: VehicleT, seq: list[Visit], d: Driver | None,
                   times: dict[tuple[str, str], float] | None) -> int:
    """Index of the first visit whose prefix cannot be timed (len(seq) if none)."""
    for k in range(1, len(seq) + 1):
        prefix = seq[:k]
        owed = [(b, "delivery") for b, kind in prefix if kind == "pickup"
                and (b, "delivery") not in prefix]
        if _time_route(problem, v, prefix + owed, d, times) is None:
            return k - 1
    return len(seq)


def _repair(problem: Problem, v: VehicleT, seq: list[Visit], d: Driver | None,
            times: dict[tuple[str, str], float] | None) -> tuple[Route | None, list[Booking]]:
    """Time a route; if it cannot be timed (a rule the engines did not model, such as the
    driver's breaks), drop the lowest-priority booking up to the first failing stop and
    retry.  The plan handed out is therefore always valid; dropped bookings get a second
    chance through insertion and otherwise an explanation."""
    dropped: list[Booking] = []
    while seq:
        r = _time_route(problem, v, seq, d, times)
        if r is not None:
            return r, dropped
        k = _first_failure(problem, v, seq, d, times)
        window = seq[:k + 1] if k < len(seq) else seq
        victim = min(reversed(window), key=lambda x: x[0].rank)[0]
        dropped.append(victim)
        seq = [x for x in seq if x[0].id != victim.id]
    return None, dropped


def _plan_from(problem: Problem, routes: Routes, vehicles: dict[str, VehicleT],
               drivers: dict[str, Driver],
               times: dict[tuple[str, str], float] | None = None
               ) -> tuple[Plan, list[Booking]]:
    """Timed plan (each route re-timed with its driver's break rule) and the bookings that
    had to be taken off their routes to keep every route valid."""
    plan_routes: list[Route] = []
    dropped: list[Booking] = []
    for vid, seq in routes.items():
        r, out = _repair(problem, vehicles[vid], seq, drivers.get(vid), times)
        dropped += out
        if r is not None:
            plan_routes.append(r)
    plan = Plan(routes=plan_routes)
    plan_totals(problem, plan)
    return plan, dropped


def _place_leftovers(problem: Problem, plan: Plan, leftovers: list[Booking],
                     deadline: float) -> Plan:
    """Cheapest feasible insertion of bookings the search left out (most important first)."""
    for b in sorted(leftovers, key=lambda x: -x.rank):
        if time.monotonic() > deadline:
            break
        found = best_insertion(problem, plan, b)
        if found is not None:
            route = found[1]
            plan.routes = [r for r in plan.routes if r.vehicle_id != route.vehicle_id] + [route]
    plan_totals(problem, plan)
    return plan


def _final_drivers(problem: Problem, routes: Routes,
                   pairing: dict[str, Driver]) -> dict[str, Driver]:
    """Exact CP-SAT assignment of drivers to the used vehicles (keeps the pre-routing
    pairing where it is as good)."""
    if not problem.drivers:
        return {}
    vehicles = {v.id: v for v in problem.vehicles}
    draft = [schedule(problem, vehicles[vid], seq, pairing[vid].id if vid in pairing else None,
                      check=False) for vid, seq in routes.items()]
    exact = assign_after_routing(problem, [r for r in draft if r is not None])
    if exact is None:
        return pairing
    by_id = {d.id: d for d in problem.drivers}
    return {vid: by_id[did] for vid, did in exact.items()}


def _engines(opts: SolveOptions, search: _Search) -> str:
    parts = ["vroom"] if opts.seed_with_vroom and not search.p.frozen and any(
        b.pickup is not None for b in search.bookings) and (
        not search.intervals or opts.interval_vroom_seed) else []
    parts.append("pyvrp-hgs" if search.pyvrp_ok else "interval-ls" if search.intervals
                 else "ortools-gls")
    return "+".join(parts)


def solve(problem: Problem, options: SolveOptions | None = None) -> Plan:
    """Plan the day: every booking is either on a route (with vehicle *and* driver, when the
    problem has drivers) or listed as unserved with a reason."""
    opts = options or SolveOptions()
    t0 = time.monotonic()
    pairing: dict[str, Driver] = {}
    windows = {v.id: v.window for v in problem.vehicles}
    if problem.drivers:
        paired = pair_before_routing(problem)
        pairing = {vid: d for vid, (d, _w) in paired.items()}
        windows = {vid: w for vid, (_d, w) in paired.items()}
    rejected = {b.id: u for b in problem.bookings if (u := precheck(problem, b)) is not None}
    bookings = [b for b in problem.bookings if b.id not in rejected]
    allowed = {b.id: allowed_vehicle_ids(problem, b, pairing=pairing if problem.drivers
                                         else None) for b in bookings}
    search = _Search(problem, opts, bookings, allowed, windows, pairing)
    best = search.run()
    final = _final_drivers(problem, best, pairing)
    vehicles = dict(search.by_id)
    for vid, d in final.items():  # the final driver's shift bounds the vehicle's day
        v = problem.vehicle(vid)
        vehicles[vid] = _windowed(v, best_shift(d, v) or v.window)
    plan, dropped = _plan_from(problem, best, vehicles, final, search.times.get(id(best)))
    served = _served(best) - {b.id for b in dropped}
    leftovers = [b for b in bookings if b.id not in served]
    if leftovers:  # what is left of the time limit (a skipped polish), plus at most 10 %
        plan = _place_leftovers(problem, plan, leftovers,
                                max(search.deadline, time.monotonic()) + 0.1 * opts.time_limit)
    served = {bid for r in plan.routes for bid in r.booking_ids()}
    plan.unserved = list(rejected.values())
    dropped = [b for b in bookings if b.id not in served]
    if dropped and opts.explain and search.intervals:
        # Fixed-interval day: the local search tried every gap and ejection, so a booking
        # some duty could serve on its own is left out because the suitable cars are busy.
        busy = [b for b in dropped if precheck(problem, b) is None
                and any(reachable(problem, b, search.by_id[vid])
                        for vid in allowed[b.id] if vid in search.by_id)]
        plan.unserved += [unserved("fleet_busy", b) for b in busy]
        gone = {b.id for b in busy}
        dropped = [b for b in dropped if b.id not in gone]
    if dropped:
        budget = t0 + max(opts.time_limit, 1.0) * (1 + opts.explain_share)
        plan.unserved += (explain_unserved(problem, plan, dropped, deadline=budget)
                          if opts.explain else [
            Unserved(b.id, "not_inserted", "not placed by the solver") for b in dropped])
    plan.meta.update({"seconds": time.monotonic() - t0, "log": search.log,
                      "engines": _engines(opts, search)})
    return plan
