"""Geofence (电子围栏) point-query throughput: FenceIndex vs a brute-force scan.

200 fences (100 polygons of 5–30 corners, 100 circles of 100 m–3 km) over a 60 km square
around Beijing; a stream of fixes, half uniform over the square and half near fences (where
the refine step actually works). Target: > 50,000 point queries/s on one core.

Run: ``.venv/bin/python bench/geo_fences.py [--queries N]``; prints a table and writes
``bench/results/geo_fences.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import shapely

from geo.fences import DebounceRule, Fence, FenceIndex, FenceTracker

TARGET_PER_S = 50_000
RESULTS = Path(__file__).resolve().parent / "results" / "geo_fences.json"
LAT0, LON0, SPAN = 39.65, 116.1, 0.55


def make_fences(n: int, rng: np.random.Generator) -> list[Fence]:
    """Half star-shaped polygons, half circles, scattered over the square."""
    fences: list[Fence] = []
    for i in range(n):
        lat, lon = LAT0 + SPAN * rng.random(), LON0 + SPAN * rng.random()
        if i % 2:
            fences.append(Fence.circle(f"c{i}", f"圆形围栏{i}", lat, lon,
                                       float(rng.uniform(100, 3000))))
            continue
        k = int(rng.integers(5, 31))
        ang = (np.arange(k) + rng.uniform(0.1, 0.9, k)) * (2 * np.pi / k)
        r = rng.uniform(0.005, 0.03, k)
        ring = list(zip(lon + r * np.cos(ang), lat + r * np.sin(ang), strict=True))
        fences.append(Fence.polygon(f"p{i}", f"多边形围栏{i}", ring))
    return fences


def make_fixes(n: int, fences: list[Fence], rng: np.random.Generator) -> list[tuple[float, float]]:
    """Half uniform over the square, half within ~3 km of a fence centre."""
    half = n // 2
    lats = list(LAT0 + SPAN * rng.random(half))
    lons = list(LON0 + SPAN * rng.random(half))
    centres = [f.centre for f in fences]
    for _ in range(n - half):
        clat, clon = centres[int(rng.integers(len(centres)))]
        lats.append(clat + rng.normal(0, 0.012))
        lons.append(clon + rng.normal(0, 0.015))
    return list(zip(lats, lons, strict=True))


def make_track(n: int, fences: list[Fence], rng: np.random.Generator) -> list[tuple[float, float]]:
    """One vehicle driving: 15 m steps with a wandering heading, GNSS noise σ = 5 m, starting
    at a fence and turning back when it leaves the square (so it crosses many boundaries)."""
    lat, lon = fences[0].centre
    heading = rng.uniform(0, 2 * np.pi)
    m_lat, m_lon = 1 / 111_000, 1 / (111_000 * np.cos(np.radians(lat)))
    steps = rng.normal(0, 0.15, n)
    noise = rng.normal(0, 5.0, (n, 2))
    out = []
    for i in range(n):
        heading += steps[i]
        lat += 15 * np.cos(heading) * m_lat
        lon += 15 * np.sin(heading) * m_lon
        if not (LAT0 < lat < LAT0 + SPAN and LON0 < lon < LON0 + SPAN):
            heading += np.pi
        out.append((float(lat + noise[i, 0] * m_lat), float(lon + noise[i, 1] * m_lon)))
    return out


def rate(fn: Callable[[], object], count: int, repeat: int = 3) -> tuple[float, float]:
    """Best-of-``repeat`` wall time for ``fn`` (which handles ``count`` items): (s, items/s)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, count / best


def run(queries: int, n_fences: int = 200, seed: int = 42) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    fences = make_fences(n_fences, rng)
    index = FenceIndex(fences)
    fixes = make_fixes(queries, fences, rng)
    lats = np.array([p[0] for p in fixes])
    lons = np.array([p[1] for p in fixes])
    track = make_track(queries, fences, rng)
    brute_n = max(1, queries // 50)

    def stream() -> None:
        for lat, lon in fixes:
            index.fences_containing(lat, lon)

    def brute() -> None:  # baseline: test every fence for every fix (prepared geometries)
        for lat, lon in fixes[:brute_n]:
            [f.id for f in fences if f.contains(lat, lon)]

    def batch() -> None:
        index.fences_containing_many(lats, lons)

    def tracked() -> None:
        tracker = FenceTracker(index, DebounceRule(min_fixes=3, hysteresis_m=20.0))
        t = datetime(2025, 3, 3, tzinfo=UTC)
        step = timedelta(seconds=5)
        for lat, lon in track:
            tracker.update(lat, lon, t)
            t += step

    hits = sum(bool(r) for r in index.fences_containing_many(lats, lons))
    cases = [
        ("brute-force scan (baseline)", brute, brute_n),
        ("FenceIndex.fences_containing", stream, queries),
        ("FenceIndex.fences_containing_many", batch, queries),
        ("FenceTracker.update (one vehicle's track)", tracked, queries),
    ]
    rows = []
    for name, fn, count in cases:
        seconds, per_s = rate(fn, count, repeat=1 if fn is brute else 3)
        rows.append({"case": name, "queries": count, "seconds": round(seconds, 4),
                     "per_s": round(per_s)})
    base = rows[0]["per_s"]
    for row in rows:
        row["ratio_vs_baseline"] = round(row["per_s"] / base, 1)  # type: ignore[operator]
    stream_rate = rows[1]["per_s"]
    return {
        "benchmark": "geo_fences",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(),
                    "shapely": shapely.__version__, "geos": shapely.geos_version_string},
        "fences": {"total": n_fences, "polygons": n_fences - n_fences // 2,
                   "circles": n_fences // 2},
        "fixes": queries,
        "fixes_inside_some_fence": hits,
        "target_per_s": TARGET_PER_S,
        "meets_target": bool(stream_rate >= TARGET_PER_S),  # type: ignore[operator]
        "results": rows,
    }


def print_table(report: dict[str, object]) -> None:
    rows = report["results"]
    print(f"geo fences: {report['fences']['total']} fences "  # type: ignore[index]
          f"({report['fences']['polygons']} polygons, "  # type: ignore[index]
          f"{report['fences']['circles']} circles), {report['fixes']} fixes, "  # type: ignore[index]
          f"{report['fixes_inside_some_fence']} inside some fence")
    print(f"{'case':<42} {'queries':>9} {'seconds':>9} {'per second':>12} {'× baseline':>11}")
    for r in rows:  # type: ignore[attr-defined]
        print(f"{r['case']:<42} {r['queries']:>9} {r['seconds']:>9.4f} {r['per_s']:>12,} "
              f"{r['ratio_vs_baseline']:>11}")
    verdict = "meets" if report["meets_target"] else "MISSES"
    print(f"streaming query target {TARGET_PER_S:,}/s: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--fences", type=int, default=200)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.queries, args.fences)
    print_table(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
