"""Ground-truth tracks: determinism and internal consistency."""

from __future__ import annotations

from functools import lru_cache

from geo.geodesy import distance_m, path_length_m
from simulators.city import build_city
from simulators.tracks import (
    Track,
    Visit,
    simulate_itinerary,
    simulate_parked,
    simulate_route,
    start_time,
    synthetic_highway,
)


@lru_cache
def _day(seed: int = 1, parked_rate_hz: float | None = None) -> Track:
    city = build_city()
    visits = [Visit("garage-central", 600), Visit("admin-centre", 1200),
              Visit("district-east", 120), Visit("hotel-jinjiang", 900)]
    return simulate_itinerary(city, visits, start_time(), seed=seed,
                              parked_rate_hz=parked_rate_hz, queues_per_km=0.5)


def test_tracks_are_deterministic() -> None:
    city = build_city()
    visits = [Visit("garage-central", 60), Visit("admin-centre", 60)]
    a = simulate_itinerary(city, visits, start_time(), seed=5)
    b = simulate_itinerary(city, visits, start_time(), seed=5)
    assert a.samples == b.samples and a.trips == b.trips and a.stops == b.stops


def test_ground_truth_consistency() -> None:
    t = _day()
    times = [s.time for s in t.samples]
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert all(abs((b - a).total_seconds() - 1.0) < 1e-6 for a, b in zip(times, times[1:],
                                                                          strict=False))
    odo = [s.odometer_m for s in t.samples]
    assert all(b >= a for a, b in zip(odo, odo[1:], strict=False))
    # The odometer is the integral of speed; sampled positions trace the same path
    # (1 Hz samples cut corners by a few metres at most).
    sampled = path_length_m([s.lat for s in t.samples], [s.lon for s in t.samples])
    assert abs(sampled - t.distance_m) / t.distance_m < 0.002
    assert abs(sum(tr.distance_m for tr in t.trips) - t.distance_m) < 1e-6
    assert len(t.trips) == 3 and len(t.stops) == 4
    for tr, st in zip(t.trips, t.stops[1:], strict=True):
        assert tr.end == st.start  # a trip ends where the stop at its destination begins
    for st in t.stops:
        inside = [s for s in t.samples if st.start <= s.time <= st.end]
        assert all(s.speed_kmh == 0.0 for s in inside)
        assert all(distance_m(s.lat, s.lon, st.lat, st.lon) < 1e-6 for s in inside)
    vmax = max(s.speed_kmh for s in t.samples)
    assert vmax <= 80.0 + 1e-6  # expressway limit in the city


def test_speed_limits_lights_and_kinematics() -> None:
    t = _day()
    speeds = [s.speed_kmh / 3.6 for s in t.samples]
    acc = [b - a for a, b in zip(speeds, speeds[1:], strict=False)]
    assert max(acc) <= 2.0 and min(acc) >= -4.5  # comfortable accel / braking per second
    assert any(s.state == "halt" for s in t.samples)  # lights or queues


def test_parked_rate_and_parking() -> None:
    t = _day(1, 1 / 30)
    gaps = {round((b.time - a.time).total_seconds()) for a, b in zip(t.samples, t.samples[1:],
                                                                      strict=False)}
    assert gaps <= {1, 30}
    p = simulate_parked(30.66, 104.06, start_time(), 3600)
    assert p.distance_m == 0.0 and len(p.stops) == 1 and len(p.samples) == 3601


def test_linestring_route() -> None:
    hw = synthetic_highway(length_m=5000, seed=2)
    t = simulate_route(hw, start_time(), dwell_before_s=60, dwell_after_s=60)
    assert abs(t.distance_m - 5000.0) < 1.0
    assert max(s.speed_kmh for s in t.samples) > 90.0
