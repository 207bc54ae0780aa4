"""Parsers for public benchmark instances into the problem model.

* Li & Lim PDPTW (``lilim100``, ``lilim200``)
* Solomon VRPTW (``solomon100``): customers become delivery-only bookings
* Cordeau DARP ("a" instances): pickup/delivery pairs with a maximum ride time

Distances are Euclidean in double precision (the literature's convention for the
hierarchical vehicles-then-distance BKS tables); travel time equals distance.  Benchmark
vehicles carry a large fixed cost so that any solver minimises vehicles first.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scheduler.model import Booking, Problem, Vehicle

#: Fixed cost of a benchmark vehicle, in distance units: larger than any route can save.
BENCH_VEHICLE_COST = 100_000


def benchmarks_dir() -> Path:
    """``<repo>/../shared/benchmarks`` (the ``shared`` directory beside the repository)."""
    repo = Path(__file__).resolve().parents[1]
    return repo.parent / "shared" / "benchmarks"


def euclidean(xy: np.ndarray) -> np.ndarray:
    """Full Euclidean distance matrix in double precision."""
    diff = xy[:, None, :] - xy[None, :, :]
    return np.sqrt((diff**2).sum(axis=2))


@dataclass(frozen=True)
class BKS:
    """Best known solution: vehicles first, then distance."""

    vehicles: int
    distance: float


def read_bks(set_name: str) -> dict[str, BKS]:
    """Read ``<set>/bks.csv`` (columns instance, vehicles, distance)."""
    path = benchmarks_dir() / set_name / "bks.csv"
    out: dict[str, BKS] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["instance"].lower()] = BKS(int(row["vehicles"]), float(row["distance"]))
    return out


def list_instances(set_name: str) -> list[str]:
    """Instance names (file stems) of a benchmark set, sorted."""
    return sorted(p.stem for p in (benchmarks_dir() / set_name).glob("*.txt"))


def _numeric_rows(path: Path) -> list[list[float]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            continue
    return rows


def _fleet(n: int, capacity: int, horizon: tuple[float, float]) -> list[Vehicle]:
    return [
        Vehicle(id=f"v{k}", seats=capacity, start=0, end=0, window=horizon,
                fixed_cost=BENCH_VEHICLE_COST)
        for k in range(n)
    ]


def parse_lilim(path: str | Path) -> Problem:
    """Li & Lim PDPTW: ``K Q S`` then ``id x y demand e l s p d`` per node (0 = depot)."""
    path = Path(path)
    rows = _numeric_rows(path)
    k, q = int(rows[0][0]), int(rows[0][1])
    nodes = rows[1:]
    xy = np.array([[r[1], r[2]] for r in nodes], dtype=float)
    dist = euclidean(xy)
    bookings = []
    by_id = {int(r[0]): r for r in nodes}
    for r in nodes[1:]:
        if r[3] <= 0:  # deliveries are reached from their pickup
            continue
        pid, did = int(r[0]), int(r[8])
        d = by_id[did]
        bookings.append(Booking(
            id=str(pid), pickup=pid, delivery=did,
            pickup_window=(r[4], r[5]), delivery_window=(d[4], d[5]),
            pickup_service=r[6], delivery_service=d[6], passengers=int(r[3]),
        ))
    depot = nodes[0]
    return Problem(distances=dist, durations=dist.copy(), bookings=bookings,
                   vehicles=_fleet(k, q, (depot[4], depot[5])),
                   nodes=[tuple(p) for p in xy.tolist()], name=path.stem)


def parse_solomon(path: str | Path) -> Problem:
    """Solomon VRPTW: each customer is a delivery-only booking loaded at the depot."""
    path = Path(path)
    rows = _numeric_rows(path)
    k, q = int(rows[0][0]), int(rows[0][1])
    nodes = [r for r in rows[1:] if len(r) >= 7]
    xy = np.array([[r[1], r[2]] for r in nodes], dtype=float)
    dist = euclidean(xy)
    bookings = [
        Booking(id=str(int(r[0])), pickup=None, delivery=int(r[0]),
                delivery_window=(r[4], r[5]), delivery_service=r[6], passengers=int(r[3]))
        for r in nodes[1:]
    ]
    depot = nodes[0]
    return Problem(distances=dist, durations=dist.copy(), bookings=bookings,
                   vehicles=_fleet(k, q, (depot[4], depot[5])),
                   nodes=[tuple(p) for p in xy.tolist()], name=path.stem)


def parse_cordeau(path: str | Path) -> Problem:
    """Cordeau DARP: ``K n T Q L``; nodes ``id x y service load e l``; depots 0 and 2n+1.

    The maximum ride time ``L`` becomes the bookings' ``max_ride``; the maximum route
    duration ``T`` is not modelled (vehicles get the depot's window).
    """
    path = Path(path)
    rows = _numeric_rows(path)
    k, n, _t_max, q, ride = rows[0][:5]
    nodes = rows[1:]
    n = int(n)
    xy = np.array([[r[1], r[2]] for r in nodes], dtype=float)
    dist = euclidean(xy)
    bookings = []
    for i in range(1, n + 1):
        p, d = nodes[i], nodes[i + n]
        bookings.append(Booking(
            id=str(i), pickup=i, delivery=i + n,
            pickup_window=(p[5], p[6]), delivery_window=(d[5], d[6]),
            pickup_service=p[3], delivery_service=d[3], passengers=int(p[4]),
            max_ride=float(ride),
        ))
    depot = nodes[0]
    vehicles = [
        Vehicle(id=f"v{j}", seats=int(q), start=0, end=2 * n + 1,
                window=(depot[5], depot[6]))
        for j in range(int(k))
    ]
    return Problem(distances=dist, durations=dist.copy(), bookings=bookings,
                   vehicles=vehicles, nodes=[tuple(p) for p in xy.tolist()], name=path.stem)


PARSERS = {"lilim100": parse_lilim, "lilim200": parse_lilim, "solomon100": parse_solomon,
           "cordeau_darp": parse_cordeau}


def load(set_name: str, instance: str) -> Problem:
    """Parse ``<benchmarks>/<set_name>/<instance>.txt``."""
    return PARSERS[set_name](benchmarks_dir() / set_name / f"{instance}.txt")
