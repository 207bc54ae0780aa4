"""Tiny hand-made scheduling problems for the scheduler tests."""

from __future__ import annotations

import numpy as np

from scheduler.model import Booking, Driver, Problem, Vehicle

KM = 1000.0
SPEED = 10.0  # m/s: one kilometre takes 100 s


def line_problem(positions_km: list[float], bookings: list[Booking], vehicles: list[Vehicle],
                 drivers: list[Driver] | None = None) -> Problem:
    """Nodes on a straight line; distances in metres, durations at 36 km/h."""
    x = np.array(positions_km, dtype=float) * KM
    dist = np.abs(x[:, None] - x[None, :])
    return Problem(distances=dist, durations=dist / SPEED, bookings=bookings,
                   vehicles=vehicles, drivers=drivers or [],
                   nodes=[(float(p), 0.0) for p in positions_km], name="line")


def two_trips(**vehicle_kw: object) -> Problem:
    """Depot at 0 km; trip a: 1 → 2 km, trip b: 3 → 4 km; one car.

    The optimum is 0→1→2→3→4→0 = 8 km.
    """
    bookings = [Booking("a", 1, 2, passengers=2), Booking("b", 3, 4, passengers=2)]
    kw: dict = {"seats": 4, **vehicle_kw}
    return line_problem([0, 1, 2, 3, 4], bookings, [Vehicle("car1", **kw)])


def city_day(n_bookings: int, n_vehicles: int, seed: int = 7) -> Problem:
    """A synthetic city day: random points in 30 × 30 km, 30 km/h, 07:00–20:00.

    Pickup windows are 30 min wide; the delivery window allows a detour of 20 min.
    """
    rng = np.random.default_rng(seed)
    n_nodes = 1 + 2 * n_bookings
    xy = rng.uniform(0, 30_000, size=(n_nodes, 2))
    xy[0] = (15_000, 15_000)
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2)) * 1.3
    dur = dist / (30 / 3.6)
    bookings = []
    for k in range(n_bookings):
        p, d = 1 + 2 * k, 2 + 2 * k
        t = float(rng.uniform(7 * 3600, 18 * 3600))
        direct = float(dur[p, d])
        bookings.append(Booking(f"b{k}", p, d, pickup_window=(t, t + 1800),
                                delivery_window=(t, t + 1800 + direct + 1200),
                                pickup_service=120, delivery_service=60,
                                passengers=int(rng.integers(1, 4))))
    vehicles = [Vehicle(f"v{k}", seats=4 if k % 5 else 7, window=(6 * 3600, 21 * 3600))
                for k in range(n_vehicles)]
    return Problem(distances=dist, durations=dur, bookings=bookings, vehicles=vehicles,
                   nodes=[(float(a), float(b)) for a, b in xy], name=f"city{n_bookings}")


def append_plan(p: Problem):
    """A quick feasible plan: each booking appended to the first car that can take it."""
    from scheduler.model import Plan, Unserved, plan_totals
    from scheduler.timing import schedule

    seqs: dict[str, list] = {v.id: [] for v in p.vehicles}
    routes = {}
    unserved = []
    for b in sorted(p.bookings, key=lambda b: b.pickup_window[0]):
        for v in p.vehicles:
            trial = seqs[v.id] + [(b, "pickup"), (b, "delivery")]
            r = schedule(p, v, trial)
            if r is not None:
                seqs[v.id] = trial
                routes[v.id] = r
                break
        else:
            unserved.append(Unserved(b.id, "not_inserted", "not placed"))
    plan = Plan(routes=list(routes.values()), unserved=unserved)
    plan_totals(p, plan)
    return plan
