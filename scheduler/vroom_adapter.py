"""Translate a :class:`Problem` to pyvroom and back.

Used twice: as a peer solver in the benchmark and as a *seed* (first solution) for the
OR-Tools search in :mod:`scheduler.solver` — a portfolio.  vroom works with integer
durations and costs, so matrices are multiplied by ``scale``; durations are rounded *up*
so that every vroom-feasible route is feasible with the real-valued matrix too.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import vroom

from scheduler.model import PRIORITY_RANK, Booking, Problem, Vehicle
from scheduler.timing import Visit

_VROOM_PRIORITY = {0: 0, 1: 50, 2: 100}


def scaled_durations(problem: Problem, scale: float) -> np.ndarray:
    """Integer durations, rounded up (conservative for time windows)."""
    return np.ceil(problem.durations * scale - 1e-7).astype(np.int64)


def scaled_distances(problem: Problem, scale: float) -> np.ndarray:
    """Integer distances, rounded to nearest (cost only)."""
    return np.rint(problem.distances * scale).astype(np.int64)


def _tw(window: tuple[float, float], scale: float) -> vroom.TimeWindow:
    return vroom.TimeWindow(int(math.ceil(window[0] * scale - 1e-7)),
                            int(math.floor(window[1] * scale + 1e-7)))


def _skills(problem: Problem, vehicles: list[Vehicle], bookings: list[Booking],
            allowed: dict[str, list[str]] | None) -> tuple[dict[str, set[int]],
                                                          dict[str, set[int]]]:
    """Encode 'which vehicles may serve which booking' as vroom skills.

    Each distinct allowed set gets one skill id; vehicles in the set carry it.  ``allowed``
    (booking id → vehicle ids) overrides the static compatibility, e.g. after drivers have
    been paired and licences restrict further.
    """
    from scheduler.compat import allowed_vehicle_ids  # local: avoids an import cycle

    veh_skills: dict[str, set[int]] = {v.id: set() for v in vehicles}
    job_skills: dict[str, set[int]] = {}
    by_set: dict[frozenset[str], int] = {}
    all_ids = frozenset(v.id for v in vehicles)
    for b in bookings:
        ids = allowed[b.id] if allowed is not None else allowed_vehicle_ids(problem, b, vehicles)
        ok = frozenset(ids) & all_ids
        if ok == all_ids:
            continue
        sid = by_set.setdefault(ok, len(by_set) + 1)
        job_skills[b.id] = {sid}
        for vid in ok:
            veh_skills[vid].add(sid)
    return veh_skills, job_skills


def build_input(problem: Problem, scale: float, vehicles: list[Vehicle] | None = None,
                bookings: list[Booking] | None = None,
                allowed: dict[str, list[str]] | None = None,
                extra: np.ndarray | None = None,
                max_travel: dict[str, float] | None = None) -> vroom.Input:
    """A vroom Input over the problem's nodes (vroom location index = problem node).

    ``extra`` (integer, scaled) is added to every travel duration, e.g. the allowance for
    drivers' breaks that the OR-Tools model charges too.  ``max_travel`` (vehicle id →
    seconds) is the paired driver's daily driving limit, vroom's ``max_travel_time``.
    """
    vehicles = problem.vehicles if vehicles is None else vehicles
    bookings = problem.bookings if bookings is None else bookings
    inp = vroom.Input()
    durations = scaled_durations(problem, scale)
    if extra is not None:
        durations = durations + extra
    inp.set_durations_matrix(profile="car", matrix_input=durations)
    inp.set_costs_matrix(profile="car", matrix_input=scaled_distances(problem, scale))
    veh_skills, job_skills = _skills(problem, vehicles, bookings, allowed)
    for k, v in enumerate(vehicles):
        inp.add_vehicle(vroom.Vehicle(
            k, start=v.origin, end=v.destination, capacity=[v.seats],
            skills=veh_skills[v.id], time_window=_tw(v.window, scale),
            costs=vroom.VehicleCosts(fixed=int(v.fixed_cost * scale)),
            max_travel_time=(int(max_travel[v.id] * scale) if max_travel and v.id in max_travel
                             else None)))
    for j, b in enumerate(bookings):
        skills = job_skills.get(b.id, set())
        prio = _VROOM_PRIORITY[PRIORITY_RANK[b.priority]]
        if b.pickup is None:
            inp.add_job(vroom.Job(
                j, location=b.delivery, default_service=int(round(b.delivery_service * scale)),
                delivery=vroom.Amount([b.passengers]), skills=skills, priority=prio,
                time_windows=[_tw(b.delivery_window, scale)]))
            continue
        inp.add_shipment(
            vroom.ShipmentStep(j, location=b.pickup,
                               default_service=int(round(b.pickup_service * scale)),
                               time_windows=[_tw(b.pickup_window, scale)]),
            vroom.ShipmentStep(j, location=b.delivery,
                               default_service=int(round(b.delivery_service * scale)),
                               time_windows=[_tw(b.delivery_window, scale)]),
            amount=vroom.Amount([b.passengers]), skills=skills, priority=prio)
    return inp


def solve_vroom(problem: Problem, scale: float = 1.0, exploration: int = 5, threads: int = 2,
                vehicles: list[Vehicle] | None = None,
                bookings: list[Booking] | None = None,
                timeout: float | None = None,
                allowed: dict[str, list[str]] | None = None,
                extra: np.ndarray | None = None,
                max_travel: dict[str, float] | None = None) -> dict[str, list[Visit]]:
    """Solve with vroom; return visit sequences per vehicle id (only non-empty routes).

    ``timeout`` (seconds) caps vroom's search; by default it runs to completion.
    """
    vehicles = problem.vehicles if vehicles is None else vehicles
    bookings = problem.bookings if bookings is None else bookings
    if not bookings:
        return {}
    limit = None if timeout is None else timedelta(seconds=max(0.01, timeout))
    sol = build_input(problem, scale, vehicles, bookings, allowed, extra, max_travel).solve(
        exploration_level=exploration, nb_threads=threads, timeout=limit)
    routes: dict[str, list[Visit]] = {}
    df = sol.routes
    kinds = {"pickup": "pickup", "delivery": "delivery", "job": "delivery"}
    for vid, typ, jid in zip(df["vehicle_id"], df["type"], df["id"], strict=True):
        if typ not in kinds:
            continue
        routes.setdefault(vehicles[int(vid)].id, []).append((bookings[int(jid)], kinds[typ]))
    return routes
