"""Static compatibility between bookings, vehicles and drivers (no solver involved)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scheduler.model import Booking, Driver, Problem, Vehicle


def vehicle_fits(b: Booking, v: Vehicle, driver: Driver | None = None) -> bool:
    """Category, explicit vehicle list, seats and (if paired) the driver's licence."""
    if b.category is not None and b.category != v.category:
        return False
    if b.allowed_vehicles is not None and v.id not in b.allowed_vehicles:
        return False
    if b.passengers > v.seats:
        return False
    return not (b.licence is not None and driver is not None
                and b.licence not in driver.licences)


def allowed_vehicle_ids(problem: Problem, b: Booking, vehicles: Sequence[Vehicle] | None = None,
                        pairing: Mapping[str, Driver] | None = None) -> list[str]:
    """Ids of the vehicles that may serve ``b`` (given an optional vehicle→driver pairing)."""
    vehicles = problem.vehicles if vehicles is None else vehicles
    out = []
    for v in vehicles:
        d = pairing.get(v.id) if pairing is not None else None
        if pairing is not None and problem.drivers and d is None:
            continue
        if vehicle_fits(b, v, d):
            out.append(v.id)
    return out


def driver_can_drive(d: Driver, v: Vehicle) -> bool:
    """A driver may take a car when holding the car's licence class (if any)."""
    return v.licence is None or v.licence in d.licences


def overlap(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float] | None:
    """Intersection of two windows, or ``None``."""
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo < hi else None
