"""Translate a :class:`Problem` to PyVRP (hybrid genetic search) and back.

PyVRP 0.14 handles pickup-and-delivery *shipments*, delivery-only clients, capacities and
time windows, but not per-booking vehicle restrictions, maximum ride times, frozen legs or
drivers.  :func:`applicable` says when a problem fits; the solver's portfolio uses PyVRP
only then (benchmarks and unconstrained days), OR-Tools otherwise.  Integer matrices with
``scale`` as for vroom: durations rounded up, distances to nearest.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from pyvrp import Model, Solution
from pyvrp._pyvrp import Activity, ActivityType, ProblemData
from pyvrp._pyvrp import Route as PRoute
from pyvrp.stop import FirstFeasible, MaxRuntime, MultipleCriteria

from scheduler.model import Booking, Problem, Vehicle
from scheduler.timing import Visit


def applicable(problem: Problem, bookings: Sequence[Booking]) -> bool:
    """True when PyVRP can express every constraint of the problem."""
    if problem.frozen or problem.drivers:
        return False
    return all(b.max_ride is None and b.category is None and b.allowed_vehicles is None
               and b.licence is None for b in bookings)


def _int(x: float, scale: float, up: bool = False) -> int:
    return int(math.ceil(x * scale - 1e-7)) if up else int(math.floor(x * scale + 1e-7))


class PyVRPInstance:
    """A built PyVRP model with maps between its indices and our bookings/vehicles."""

    def __init__(self, problem: Problem, bookings: Sequence[Booking],
                 vehicles: Sequence[Vehicle], scale: float) -> None:
        self.problem, self.bookings, self.scale = problem, list(bookings), scale
        m = Model()
        n = problem.distances.shape[0]
        locs = [m.add_location(x=0, y=0) for _ in range(n)]
        depot_nodes = sorted({v.origin for v in vehicles} | {v.destination for v in vehicles})
        depots = {}
        for node in depot_nodes:
            depots[node] = m.add_depot(locs[node])
        # one vehicle type per distinct vehicle signature
        self.type_vehicles: list[list[Vehicle]] = []
        sig: dict[tuple, int] = {}
        for v in vehicles:
            key = (v.seats, v.origin, v.destination, v.window, v.fixed_cost)
            if key not in sig:
                sig[key] = len(self.type_vehicles)
                self.type_vehicles.append([])
            self.type_vehicles[sig[key]].append(v)
        for group in self.type_vehicles:
            v = group[0]
            m.add_vehicle_type(num_available=len(group), capacity=v.seats,
                               start_depot=depots[v.origin], end_depot=depots[v.destination],
                               fixed_cost=_int(v.fixed_cost, scale),
                               tw_early=_int(v.window[0], scale, up=True),
                               tw_late=_int(v.window[1], scale))
        self.clients: list[Booking] = []
        self.shipments: list[Booking] = []
        for b in self.bookings:
            if b.pickup is None:
                self.clients.append(b)
                m.add_client(locs[b.delivery], delivery=b.passengers,
                             service_duration=_int(b.delivery_service, scale, up=True),
                             tw_early=_int(b.delivery_window[0], scale, up=True),
                             tw_late=_int(b.delivery_window[1], scale))
            else:
                self.shipments.append(b)
                m.add_shipment(locs[b.pickup], locs[b.delivery],
                               _int(b.pickup_window[0], scale, up=True),
                               _int(b.pickup_window[1], scale),
                               _int(b.pickup_service, scale, up=True),
                               _int(b.delivery_window[0], scale, up=True),
                               _int(b.delivery_window[1], scale),
                               _int(b.delivery_service, scale, up=True), amount=b.passengers)
        dist = np.rint(problem.distances * scale).astype(np.int64)
        dur = np.ceil(problem.durations * scale - 1e-7).astype(np.int64)
        for i in range(n):
            for j in range(n):
                if i != j:
                    m.add_edge(locs[i], locs[j], distance=int(dist[i, j]),
                               duration=int(dur[i, j]))
        self.model = m
        self.data: ProblemData = m.data()
        self.client_pos = {b.id: k for k, b in enumerate(self.clients)}
        self.ship_pos = {b.id: k for k, b in enumerate(self.shipments)}
        self.n_depots = len(depot_nodes)

    def _activity(self, b: Booking, kind: str) -> Activity:
        if b.pickup is None:
            return Activity(ActivityType.CLIENT, self.client_pos[b.id])
        t = ActivityType.PICKUP if kind == "pickup" else ActivityType.DELIVERY
        return Activity(t, self.ship_pos[b.id])

    def to_solution(self, routes: dict[str, list[Visit]]) -> Solution:
        """Our routes → a PyVRP solution (for warm starts)."""
        type_of = {v.id: k for k, g in enumerate(self.type_vehicles) for v in g}
        proutes = [PRoute(self.data, [self._activity(b, k) for b, k in seq], type_of[vid])
                   for vid, seq in routes.items() if seq]
        return Solution(self.data, proutes)

    def from_solution(self, sol: Solution) -> dict[str, list[Visit]]:
        """PyVRP solution → our routes, vehicles taken in order within each type."""
        free = [list(g) for g in self.type_vehicles]
        out: dict[str, list[Visit]] = {}
        for route in sol.routes():
            v = free[route.vehicle_type()].pop(0)
            seq: list[Visit] = []
            for act in route:
                if act.is_depot():
                    continue
                if act.is_client():
                    seq.append((self.clients[act.idx], "delivery"))
                elif act.is_pickup():
                    seq.append((self.shipments[act.idx], "pickup"))
                else:
                    seq.append((self.shipments[act.idx], "delivery"))
            if seq:
                out[v.id] = seq
        return out

    def solve(self, seconds: float, initial: dict[str, list[Visit]] | None = None,
              seed: int = 0, first_feasible: bool = False) -> dict[str, list[Visit]] | None:
        """Run HGS for ``seconds`` (or until the first feasible solution when asked);
        None when no feasible solution was found."""
        init = None
        if initial:
            try:
                init = self.to_solution(initial)
            except Exception:  # a warm start is a hint; never fail on it
                init = None
        runtime = MaxRuntime(max(0.05, seconds))
        stop: MaxRuntime | MultipleCriteria = runtime
        if first_feasible:
            stop = MultipleCriteria([FirstFeasible(), runtime])
        with warnings.catch_warnings():
            # PyVRP warns when penalties saturate, which is expected when a smaller fleet
            # is being tried and turns out infeasible.
            warnings.simplefilter("ignore")
            res = self.model.solve(stop=stop, seed=seed, display=False, collect_stats=False,
                                   initial_solution=init)
        if not res.best.is_feasible():
            return None
        return self.from_solution(res.best)
