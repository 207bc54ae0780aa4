"""A realistic official-car day (模拟用车需求) over the synthetic city, seeded.

Default size: 1,000 bookings, 200 cars of mixed categories and seat counts in four garages
and the district offices, 250 drivers in three shifts with licence classes (the roster of
:func:`scheduler.dayplan.roster` gives every car a first duty and the spare drivers second,
late duties on cars whose first duty ends early), plus ``urgent``
emergency bookings (防汛/应急) that arrive during the day and are inserted one by one.

Demand shape (what a municipal car pool sees):

* pickups at the administrative centre, district offices and hotels (60 %) or anywhere in
  the city (40 %); morning and early-afternoon peaks, quarter-hour starts;
* 60 % return trips (the car waits and brings the party back), 40 % one-way drops;
* mostly 1–3 passengers, some 4–6 (an MPV), a few delegations of 7–30 (minibus, coach);
* most bookings accept any car; some ask for a category (law enforcement, emergency,
  confidential) and a handful for special technical vehicles the fleet does not have;
* 3 % emergency and 10 % leadership priority.

``city_day(...)`` returns a :class:`CityDay` whose ``day.problem`` is exactly what the
planning service would solve (see :mod:`scheduler.dayplan`).

    python -m simulators.demand --bookings 1000 --seed 7
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from geo.travel import GreatCircleProvider
from scheduler.dayplan import Car, Crew, Day, LatLon, Trip, build_day
from simulators.city import City, build_city

HOUR = 3600
T = TypeVar("T")
#: (share, category, passenger seats, licence class needed) of the fleet
FLEET_MIX: list[tuple[float, str, int, str]] = [
    (0.50, "general", 4, "C2"),  # sedan
    (0.15, "general", 6, "C2"),  # MPV
    (0.05, "general", 14, "B1"),  # minibus
    (0.02, "general", 32, "A1"),  # coach
    (0.13, "law_enforcement", 4, "C2"),
    (0.08, "emergency", 6, "C2"),
    (0.07, "confidential", 4, "C2"),
]
#: licence class → classes it covers (as dispatch.service.COVERS)
COVERS = {"A1": frozenset({"A1", "A3", "B1", "B2", "C1", "C2"}),
          "B1": frozenset({"B1", "C1", "C2"}), "C1": frozenset({"C1", "C2"})}
SHIFTS: list[tuple[float, tuple[float, float]]] = [
    (0.40, (7 * HOUR, 17 * HOUR)), (0.35, (8.5 * HOUR, 18.5 * HOUR)),
    (0.25, (12 * HOUR, 22 * HOUR))]


@dataclass
class CityDay:
    """A generated day: the planning problem and urgent bookings to insert later."""

    day: Day
    urgent: list[Trip]
    city: City


def _pick(rng: random.Random, table: Sequence[tuple[float, T]]) -> T:
    x = rng.random() * sum(w for w, _ in table)
    for w, item in table:
        x -= w
        if x <= 0:
            return item
    return table[-1][1]


def great_circle_matrix(points: Sequence[LatLon]) -> tuple[np.ndarray, np.ndarray]:
    """The service's default travel model (great circle × 1.3, 10:00 speeds)."""
    m = GreatCircleProvider().matrix(points)
    return m.distances_m, m.durations_s


def _start_time(rng: random.Random) -> float:
    lo, hi = _pick(rng, [(0.45, (8.0, 10.5)), (0.15, (10.5, 13.0)), (0.30, (13.5, 16.0)),
                         (0.10, (16.0, 19.0))])
    return round(rng.uniform(lo, hi) * 4) / 4 * HOUR


def _trip(rng: random.Random, ident: str, city: City, hubs: list[LatLon],
          nodes: list[LatLon], dur_of, priority: str | None = None) -> Trip:
    def place() -> LatLon:
        return rng.choice(hubs) if rng.random() < 0.6 else rng.choice(nodes)

    pickup = place()
    dest = place()
    while dest == pickup:
        dest = rng.choice(nodes)
    start = _start_time(rng) if priority != "emergency" else rng.uniform(8, 19) * HOUR // 60 * 60
    passengers = _pick(rng, [(0.80, 1), (0.15, 4), (0.04, 7), (0.01, 15)])
    if passengers > 1:
        passengers = rng.randint(passengers, {1: 3, 4: 6, 7: 14, 15: 30}[passengers])
    elif rng.random() < 0.5:
        passengers = rng.randint(1, 3)
    category: str | None = _pick(rng, [(0.70, None), (0.12, "general"), (0.09, "law_enforcement"),
                           (0.05, "emergency"), (0.035, "confidential"),
                           (0.005, "special_technical")])
    if passengers > 6:
        category = None if rng.random() < 0.7 else "general"
    prio: str = priority or _pick(rng, [(0.87, "ordinary"), (0.10, "leadership"),
                                   (0.03, "emergency")])
    dist_m, drive_s = dur_of(pickup, dest)
    if rng.random() < 0.6:  # return trip: meeting of 30 min – 2.5 h at the destination
        stay = rng.choice([0.5, 0.75, 1.0, 1.0, 1.5, 2.0, 2.5]) * HOUR
        end_s = start + 2 * drive_s + stay
        end, tour = pickup, 2 * dist_m
    else:  # one-way drop
        end_s = start + drive_s + 15 * 60
        end, tour = dest, dist_m
    end_s = float(np.ceil(end_s / 900) * 900)
    return Trip(ident, pickup, end, float(start), end_s, passengers, category,
                prio, float(tour))  # type: ignore[arg-type]


def city_day(n_bookings: int = 1000, n_vehicles: int = 200, n_drivers: int = 250,
             n_urgent: int = 50, seed: int = 7) -> CityDay:
    """Generate the day (deterministic for a seed)."""
    rng = random.Random(seed)
    city = build_city()
    nodes = [(n.lat, n.lon) for n in city.nodes.values()]
    places = list(city.places.values())
    hubs = [(p.lat, p.lon) for p in places if p.kind != "garage"]
    garages = [(p.lat, p.lon) for p in places if p.kind == "garage"]
    offices = [(p.lat, p.lon) for p in places if p.kind == "district_office"]
    provider = GreatCircleProvider()

    def dur_of(a: LatLon, b: LatLon) -> tuple[float, float]:
        d, t = provider.route(a, b)
        return float(d), float(t)

    cars: list[Car] = []
    for i in range(n_vehicles):
        cat, cap, lic = _pick(rng, [(w, (c, s, li)) for w, c, s, li in FLEET_MIX])
        garage = rng.choice(garages) if rng.random() < 0.75 else rng.choice(offices)
        cars.append(Car(f"V{i:03d}", garage, cap, cat, lic))
    crew: list[Crew] = []
    for i in range(n_drivers):
        lic = _pick(rng, [(0.75, "C1"), (0.18, "B1"), (0.07, "A1")])
        shift = _pick(rng, SHIFTS)
        crew.append(Crew(f"D{i:03d}", COVERS[lic], (shift,)))
    trips = [_trip(rng, f"B{i:04d}", city, hubs, nodes, dur_of) for i in range(n_bookings)]
    urgent = [_trip(rng, f"U{i:03d}", city, hubs, nodes, dur_of, priority="emergency")
              for i in range(n_urgent)]
    extra = [x for t in urgent for x in (t.pickup, t.end)]
    day = build_day(trips, cars, crew, great_circle_matrix, extra_points=extra,
                    name=f"cityday-{n_bookings}-s{seed}")
    return CityDay(day, urgent, city)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Generate a city day and print its shape.")
    ap.add_argument("--bookings", type=int, default=1000)
    ap.add_argument("--vehicles", type=int, default=200)
    ap.add_argument("--drivers", type=int, default=250)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    cd = city_day(a.bookings, a.vehicles, a.drivers, seed=a.seed)
    p = cd.day.problem
    print(f"{p.name}: {len(p.bookings)} bookings (+{len(cd.day.rejected)} rejected up front), "
          f"{len(cd.day.cars)} cars in {len(p.vehicles)} duties, {len(p.drivers)} drivers, "
          f"{len(p.nodes)} nodes, "
          f"{len(cd.urgent)} urgent")


if __name__ == "__main__":
    main()
