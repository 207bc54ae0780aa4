"""Observation model and NMEA rendering."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from functools import lru_cache

import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.fix import Fix
from geo.geodesy import distance_m
from simulators.city import build_city
from simulators.noise import NoiseConfig, fix_to_nmea, nmea_checksum, observe, to_nmea
from simulators.tracks import Track, Visit, simulate_itinerary, start_time


@lru_cache
def _track() -> Track:
    visits = [Visit("garage-central", 900), Visit("admin-centre", 900)]
    return simulate_itinerary(build_city(), visits, start_time(), seed=2)


def test_observe_is_deterministic() -> None:
    cfg = NoiseConfig(sigma_m=10, blind_areas=1, seed=4)
    a = [f.to_json() for f in observe(_track(), cfg)]
    b = [f.to_json() for f in observe(_track(), cfg)]
    assert a == b


def test_noise_statistics_and_artefacts() -> None:
    t = _track()
    cfg = NoiseConfig(sigma_m=5, drift_sigma_m=0.0, duplicate=0.02, reorder=0.02, seed=1,
                      outlier=0.0, invalid=0.0, blind_areas=1)
    fixes = observe(t, cfg)
    truth = {s.time: s for s in t.samples}
    errs = [distance_m(f.lat, f.lon, truth[f.time].lat, truth[f.time].lon) for f in fixes]
    rms = (sum(e * e for e in errs) / len(errs)) ** 0.5
    assert 5.0 < rms < 9.0  # 2-D rms of σ = 5 per axis ≈ 7.1 m
    seqs = Counter(f.extras["seq"] for f in fixes)
    assert any(c == 2 for c in seqs.values())  # duplicates share a sequence number
    unique = len(seqs)
    assert 0.90 * len(t.samples) < unique < 0.98 * len(t.samples)  # ~5 % dropouts
    times = [f.time for f in fixes]
    assert times != sorted(times)  # reordering and batch resends
    assert any(f.extras.get("batch") for f in fixes)
    assert all(f.hdop and f.satellites for f in fixes)
    assert all("mileage_km" in f.extras and "ignition" in f.extras for f in fixes)


def test_parked_drift_wanders() -> None:
    t = _track()
    parked = [s for s in t.samples if s.state == "park"][:900]
    cfg = NoiseConfig(sigma_m=1.0, drift_sigma_m=15.0, drift_tau_s=300.0, dropout=0.0,
                      outlier=0.0, invalid=0.0, duplicate=0.0, reorder=0.0, seed=3)
    fixes = [f for f in observe(Track(t.terminal_id, parked), cfg)]
    d = [distance_m(f.lat, f.lon, parked[0].lat, parked[0].lon) for f in fixes]
    assert max(d) > 10.0  # wanders by tens of metres...
    assert max(d) < 120.0  # ...but stays around the spot


@pytest.mark.parametrize("talker", ["GN", "BD"])
def test_nmea_rendering_parses_with_checksums(talker: str) -> None:
    fixes = sorted(observe(_track(), NoiseConfig(seed=2)), key=lambda f: f.time)[:300]
    lines = to_nmea(fixes, talker=talker)
    assert len(lines) == 2 * len(fixes)
    for line in lines:
        msg = pynmea2.parse(line, check=True)
        assert msg.talker == talker
    rmc = pynmea2.parse(lines[0])
    assert abs(rmc.latitude - fixes[0].lat) < 1e-6 and abs(rmc.longitude - fixes[0].lon) < 1e-6
    body = lines[0][1:lines[0].index("*")]
    assert lines[0].endswith(nmea_checksum(body))


def test_nmea_corruption() -> None:
    fixes = sorted(observe(_track(), NoiseConfig(seed=2)), key=lambda f: f.time)[:500]
    lines = to_nmea(fixes, bad_checksum=0.05, garbage=0.05, seed=9)
    bad = 0
    for line in lines:
        try:
            pynmea2.parse(line, check=True)
        except (pynmea2.ChecksumError, pynmea2.ParseError, ValueError, AttributeError):
            bad += 1
    assert 30 < bad < 150


@settings(max_examples=60, deadline=None)
@given(lat=st.floats(-89.9, 89.9), lon=st.floats(-179.9, 179.9),
       speed=st.floats(0, 250), course=st.floats(0, 359.9), talker=st.sampled_from(["GN", "BD"]))
def test_nmea_round_trip_property(lat: float, lon: float, speed: float, course: float,
                                  talker: str) -> None:
    fix = Fix("T", datetime(2024, 5, 6, 1, 2, 3, tzinfo=UTC), lat, lon, speed_kmh=speed,
              course=course, hdop=1.2, satellites=18, altitude_m=500.0)
    rmc, gga = fix_to_nmea(fix, talker)
    m = pynmea2.parse(rmc, check=True)
    g = pynmea2.parse(gga, check=True)
    assert abs(m.latitude - lat) < 1e-6 and abs(m.longitude - lon) < 1e-6
    assert abs(float(m.spd_over_grnd) * 1.852 - speed) < 0.02
    assert g.num_sats == "18"
