"""Mileage against ground truth: noise, drift, dropouts, odometer comparison."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sim_cases import day_track

from fleet.fix import Fix
from simulators.noise import NoiseConfig, observe
from simulators.tracks import simulate_parked, start_time
from telematics.mileage import (
    clean_fixes,
    compute_mileage,
    daily_mileage,
    naive_distance_m,
    odometer_check,
    span_cumulative_m,
    vehicle_mileage,
)


@pytest.mark.parametrize(("seed", "sigma"), [(1, 5.0), (2, 10.0), (3, 10.0), (4, 7.0)])
def test_distance_within_one_percent(seed: int, sigma: float) -> None:
    track = day_track(seed)
    cfg = NoiseConfig(sigma_m=sigma, seed=seed + 20, dropout=0.05, duplicate=0.02,
                      reorder=0.03, blind_areas=2)
    fixes = observe(track, cfg)
    res = compute_mileage(fixes)
    err = res.total_m / track.distance_m - 1
    assert abs(err) < 0.01, err
    assert naive_distance_m(fixes) > 1.5 * track.distance_m  # what we beat


@pytest.mark.parametrize("sigma", [5.0, 10.0])
def test_parked_hours_accrue_exactly_zero(sigma: float) -> None:
    track = simulate_parked(30.66, 104.06, start_time(), 4 * 3600)
    fixes = observe(track, NoiseConfig(sigma_m=sigma, drift_sigma_m=20.0, drift_tau_s=900,
                                       seed=int(sigma)))
    res = compute_mileage(fixes)
    assert res.total_m == 0.0
    assert naive_distance_m(fixes) > 10_000


def test_zero_inside_true_stops() -> None:
    track = day_track(2)
    res = compute_mileage(observe(track, NoiseConfig(sigma_m=10, drift_sigma_m=15, seed=4)))
    times = [f.time for f in res.fixes]
    for st in track.stops:
        a, b = st.start + timedelta(seconds=60), st.end - timedelta(seconds=60)
        inside = [c for t, c in zip(times, res.cumulative_m, strict=True) if a <= t <= b]
        assert inside and max(inside) == min(inside)


def test_cleaning_rejects_spikes_duplicates_and_invalid() -> None:
    t0 = start_time()
    fixes = [Fix("T", t0 + timedelta(seconds=i), 30.66 + i * 0.00007, 104.06, speed_kmh=28)
             for i in range(60)]
    spike = Fix("T", fixes[30].time, 30.66 + 30 * 0.00007, 104.07)  # duplicate time, jump
    fixes[31] = Fix("T", fixes[31].time, fixes[31].lat, 104.065)  # ~480 m sideways
    bad = Fix("T", t0 + timedelta(seconds=100), 0.0, 0.0)
    invalid = Fix("T", t0 + timedelta(seconds=101), 30.6, 104.0, valid=False)
    res = clean_fixes(fixes + [spike, bad, invalid])
    assert res.rejected["duplicate"] == 1
    assert res.rejected["outlier_speed"] + res.rejected["outlier_spike"] == 1
    assert res.rejected["zero"] == 1 and res.rejected["invalid"] == 1
    assert all(f.lon == 104.06 for f in res.fixes)
    cum = span_cumulative_m(res.fixes)
    true = 59 * 0.00007 * 111_000
    assert abs(cum[-1] - true) / true < 0.02


def test_odometer_disagreement_flag() -> None:
    track = day_track(1)
    honest = observe(track, NoiseConfig(seed=1))
    res = compute_mileage(honest)
    ok = odometer_check(honest, res.total_m)
    assert ok.odometer_km is not None and not ok.flagged and abs(ok.diff_pct) < 2
    bogus = observe(track, NoiseConfig(seed=1, odometer_scale=1.25))
    chk = odometer_check(bogus, compute_mileage(bogus).total_m)
    assert chk.flagged and chk.diff_pct > 20
    small = odometer_check(bogus, chk.computed_km * 1000, tolerance_km=100.0)
    assert not small.flagged  # both tolerances must be exceeded
    assert not odometer_check([], 1000.0).flagged


def test_daily_and_vehicle_aggregation() -> None:
    track = day_track(1)
    fixes = observe(track, NoiseConfig(seed=3))
    res = compute_mileage(fixes)
    days = daily_mileage(res)
    assert abs(sum(days.values()) - res.total_m) < 1e-6
    assert list(days)[0].isoformat() == "2024-05-06"  # Beijing day of an 08:00 start
    by_vehicle = vehicle_mileage({"A": fixes, "B": []})
    assert by_vehicle["B"] == 0.0 and abs(by_vehicle["A"] - res.total_m) < 1e-6


def test_position_only_fallback_is_reasonable() -> None:
    from telematics.mileage import MileageParams
    from telematics.segment import DiameterSegmenter, SegmentParams

    track = day_track(1)
    fixes = observe(track, NoiseConfig(sigma_m=5, seed=6))
    for f in fixes:
        f.speed_kmh = 0.0
    seg = DiameterSegmenter(SegmentParams(mileage=MileageParams())).segment(fixes)
    assert abs(seg.distance_m / track.distance_m - 1) < 0.03
