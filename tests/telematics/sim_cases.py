"""Shared simulated days for telematics tests (cached: simulation is the slow part)."""

from __future__ import annotations

from functools import lru_cache

from simulators.city import City, build_city
from simulators.tracks import Track, Visit, simulate_itinerary, start_time

DAY = [Visit("garage-central", 1200), Visit("admin-centre", 1800), Visit("district-east", 600),
       Visit("hotel-tianfu", 120), Visit("garage-central", 1800)]


@lru_cache
def city() -> City:
    return build_city()


@lru_cache
def day_track(seed: int = 1, queues_per_km: float = 0.0) -> Track:
    return simulate_itinerary(city(), DAY, start_time(), seed=seed, queues_per_km=queues_per_km)
