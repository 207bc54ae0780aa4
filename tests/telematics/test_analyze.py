"""Offline analysis JSON shape and inputs (NMEA, JSON lines, injected parser/filter)."""

from __future__ import annotations

import json
from collections import Counter

from sim_cases import day_track

from fleet.fix import Fix
from simulators.noise import NoiseConfig, observe, to_nmea
from telematics.analyze import analyze_fixes, analyze_text, parse_nmea_log


def _fixes() -> list[Fix]:
    return observe(day_track(1), NoiseConfig(sigma_m=5, seed=11))


def _check_shape(out: dict) -> None:
    assert set(out) == {"distance_km", "trips", "stops", "rejected"}
    assert isinstance(out["distance_km"], float)
    for t in out["trips"]:
        assert set(t) == {"start", "end", "distance_km"}
        assert t["start"].endswith("Z") and t["start"] < t["end"]
    for s in out["stops"]:
        assert set(s) == {"start", "end", "lat", "lon"}
    assert all(isinstance(v, int) for v in out["rejected"].values())
    json.dumps(out)


def test_analyze_fixes_shape_and_values() -> None:
    track = day_track(1)
    out = analyze_fixes(_fixes())
    _check_shape(out)
    assert len(out["trips"]) == 3 and len(out["stops"]) == 4
    assert abs(out["distance_km"] * 1000 / track.distance_m - 1) < 0.01
    assert out["rejected"].get("duplicate", 0) > 0


def test_analyze_text_json_lines() -> None:
    text = "\n".join(json.dumps(f.to_json()) for f in _fixes()) + "\nnot json\n"
    out = analyze_text(text)
    _check_shape(out)
    assert out["rejected"]["garbage"] == 1
    assert out == {**analyze_fixes(_fixes(), rejected=Counter(garbage=1))}


def test_analyze_text_nmea_with_corruption() -> None:
    fixes = sorted(_fixes(), key=lambda f: f.time)
    text = "\n".join(to_nmea(fixes, talker="BD", bad_checksum=0.01, garbage=0.01, seed=3))
    out = analyze_text(text)
    _check_shape(out)
    assert out["rejected"]["checksum"] > 0 and out["rejected"]["garbage"] > 0
    assert len(out["trips"]) == 3
    ref = analyze_fixes(fixes)["distance_km"]
    assert abs(out["distance_km"] - ref) / ref < 0.01


def test_injected_parser_and_filter() -> None:
    fixes = sorted(_fixes(), key=lambda f: f.time)
    text = "\n".join(to_nmea(fixes))
    calls = []

    def parser(t: str):
        calls.append(1)
        return parse_nmea_log(t, "T-1")

    def slow_only(f: Fix):
        return (f.hdop is not None and f.hdop < 100), ("accuracy" if f.hdop else None)

    out = analyze_text(text, filter_fn=slow_only, parse_nmea=parser)
    _check_shape(out)
    assert calls == [1]

    def reject_all(f: Fix):
        return False, "static"

    out = analyze_fixes(fixes, filter_fn=reject_all)
    assert out["distance_km"] == 0.0 and out["rejected"] == {"static": len(fixes)}
