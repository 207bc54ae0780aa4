"""Mileage benchmark (里程精度): gongche against ground truth and the naive segment sum.

Scenarios: urban itineraries, an expressway, stop-and-go queues, long parking with drift,
heavy dropouts + reordering + duplicates + blind-area resends; σ 5 and 10 m.  For each we
report gongche's distance error, the naive sum-of-segments error, the position-only smoother's
error (no reported speed: the fallback path) and the distance accrued *inside* true stops
(which must be exactly 0).

Run: ``python -m bench.mileage [out.json]`` (default ``bench/results/mileage.json``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from simulators.city import City, build_city
from simulators.noise import NoiseConfig, observe
from simulators.tracks import (
    Track,
    Visit,
    simulate_itinerary,
    simulate_parked,
    simulate_route,
    start_time,
    synthetic_highway,
)
from telematics.mileage import MileageParams, naive_distance_m
from telematics.segment import DiameterSegmenter, Segmentation, SegmentParams


@dataclass(frozen=True, slots=True)
class Scenario:
    """One benchmark case: a ground-truth builder and a noise model."""

    name: str
    kind: str
    noise: NoiseConfig
    seed: int


URBAN_DAY: list[Visit] = [
    Visit("garage-central", 1200), Visit("admin-centre", 2400), Visit("district-east", 900),
    Visit("hotel-tianfu", 1800), Visit("district-west", 600), Visit("garage-central", 3600),
]


def _truth(s: Scenario, city: City) -> Track:
    t0 = start_time()
    if s.kind == "urban":
        return simulate_itinerary(city, URBAN_DAY, t0, seed=s.seed)
    if s.kind == "stop_and_go":
        return simulate_itinerary(city, URBAN_DAY[:4], t0, seed=s.seed, queues_per_km=3.0)
    if s.kind == "highway":
        return simulate_route(synthetic_highway(seed=s.seed), t0, seed=s.seed,
                              dwell_before_s=900, dwell_after_s=900)
    if s.kind == "parking":
        return simulate_parked(30.66, 104.06, t0, 8 * 3600.0)
    raise ValueError(s.kind)


def scenarios() -> list[Scenario]:
    """The benchmark's scenario list (deterministic)."""
    base_drop = NoiseConfig(dropout=0.10, dropout_burst_s=6.0, duplicate=0.03, reorder=0.05,
                            blind_areas=3)
    out: list[Scenario] = []
    for sigma in (5.0, 10.0):
        for seed in (1, 2):
            cfg = NoiseConfig(sigma_m=sigma, seed=seed)
            out.append(Scenario(f"urban σ{sigma:g} s{seed}", "urban", cfg, seed))
            out.append(Scenario(f"highway σ{sigma:g} s{seed}", "highway", cfg, seed))
            out.append(Scenario(f"stop-and-go σ{sigma:g} s{seed}", "stop_and_go", cfg, seed))
            out.append(Scenario(f"dropouts+reorder σ{sigma:g} s{seed}", "urban",
                                replace(base_drop, sigma_m=sigma, seed=seed + 10), seed))
        out.append(Scenario(f"parking 8h drift σ{sigma:g}", "parking",
                            NoiseConfig(sigma_m=sigma, drift_sigma_m=15.0, seed=int(sigma)), 0))
    return out


def in_stop_m(track: Track, seg: Segmentation, margin_s: float = 60.0) -> float:
    """Distance gongche accrued inside true stops (margin trimmed at both ends)."""
    total = 0.0
    times = [f.time for f in seg.fixes]
    cum = seg.cumulative_m
    for st in track.stops:
        a, b = st.start + timedelta(seconds=margin_s), st.end - timedelta(seconds=margin_s)
        idx = [i for i, t in enumerate(times) if a <= t <= b]
        if len(idx) >= 2:
            total += float(cum[idx[-1]] - cum[idx[0]])
    return total


def run_scenario(s: Scenario, city: City) -> dict[str, Any]:
    """One row of the table."""
    track = _truth(s, city)
    fixes = observe(track, s.noise)
    t0 = time.perf_counter()
    seg = DiameterSegmenter().segment(fixes)
    elapsed = time.perf_counter() - t0
    pos_only = DiameterSegmenter(SegmentParams(mileage=MileageParams(use_reported_speed=False)))
    seg_pos = pos_only.segment(fixes)
    naive = naive_distance_m(fixes)
    true_m = track.distance_m
    row: dict[str, Any] = {
        "scenario": s.name, "sigma_m": s.noise.sigma_m, "fixes": len(fixes),
        "true_km": round(true_m / 1000, 4), "gongche_km": round(seg.distance_m / 1000, 4),
        "naive_km": round(naive / 1000, 4), "position_only_km": round(seg_pos.distance_m / 1000, 4),
        "trips_true": len(track.trips), "trips_found": len(seg.trips),
        "in_stop_km": round(in_stop_m(track, seg) / 1000, 6), "seconds": round(elapsed, 3),
    }
    if true_m > 0:
        row["error_pct"] = round(100 * (seg.distance_m / true_m - 1), 3)
        row["naive_error_pct"] = round(100 * (naive / true_m - 1), 1)
        row["position_only_error_pct"] = round(100 * (seg_pos.distance_m / true_m - 1), 3)
    else:
        row["parked_km"] = round(seg.distance_m / 1000, 6)
    return row


def run(json_path: str | None = None) -> dict[str, Any]:
    """Run all scenarios, print the table, write JSON (if ``json_path``) and return it."""
    city = build_city()
    rows = [run_scenario(s, city) for s in scenarios()]
    moving = [r for r in rows if "error_pct" in r]
    parked = [r for r in rows if "parked_km" in r]
    result = {
        "scenarios": rows,
        "max_error_pct": max(abs(r["error_pct"]) for r in moving),
        "parked_drift_km": max([r["parked_km"] for r in parked]
                               + [abs(r["in_stop_km"]) for r in rows]),
        "naive_max_error_pct": max(abs(r["naive_error_pct"]) for r in moving),
        "position_only_max_error_pct": max(abs(r["position_only_error_pct"]) for r in moving),
    }
    _print_table(rows, result)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, ensure_ascii=False, indent=2))
    return result


def _print_table(rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    head = (f"{'scenario':28} {'true km':>8} {'gongche':>8} {'err %':>7} {'naive %':>8} "
            f"{'pos-only %':>10} {'in-stop km':>10} {'trips':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        err = f"{r['error_pct']:.3f}" if "error_pct" in r else f"parked {r['parked_km']:.3f}"
        naive = f"{r.get('naive_error_pct', float('nan')):.1f}" if "error_pct" in r \
            else f"{r['naive_km']:.2f}km"
        pos = f"{r['position_only_error_pct']:.3f}" if "error_pct" in r else "-"
        print(f"{r['scenario']:28} {r['true_km']:8.3f} {r['gongche_km']:8.3f} {err:>7} "
              f"{naive:>8} {pos:>10} {r['in_stop_km']:10.6f} "
              f"{r['trips_found']:>2}/{r['trips_true']:<3}")
    print(f"max |error| {result['max_error_pct']:.3f} %   parked drift "
          f"{result['parked_drift_km']:.6f} km   naive max |error| "
          f"{result['naive_max_error_pct']:.1f} %   position-only max |error| "
          f"{result['position_only_max_error_pct']:.3f} %")


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "bench/results/mileage.json")
