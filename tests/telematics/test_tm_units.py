"""Event rules, replay simplification, report bucketing and the analyze CLI (no database)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
from sim_cases import day_track
from typer.testing import CliRunner

from fleet.fix import Fix
from geo.fences import Fence, FenceIndex
from geo.geodesy import destination
from simulators.noise import NoiseConfig, observe, to_nmea
from telematics.cli import analyze, app
from telematics.events import (
    EventDetector,
    VehicleInfo,
    WorkCalendar,
    overnight_events,
)
from telematics.replay import simplify_indices
from telematics.reports import split
from telematics.segment import Stop

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Beijing
LAT, LON = 30.66, 104.06


def drive(n: int, speed: float, start: datetime = T0, lat: float = LAT, lon: float = LON,
          sats: int = 12, step_s: float = 1.0) -> list[Fix]:
    out = []
    for i in range(n):
        la, lo = destination(lat, lon, 90.0, speed / 3.6 * i * step_s)
        out.append(Fix("T", start + timedelta(seconds=i * step_s), la, lo, speed, 90.0,
                       satellites=sats))
    return out


def run(det: EventDetector, fixes: list[Fix]) -> list[str]:
    return [e.type for f in fixes for e in det.update(f)]


def test_overspeed_needs_minimal_duration_and_uses_category_limit() -> None:
    det = EventDetector("T", VehicleInfo(1, "general"), FenceIndex([]))
    assert run(det, drive(8, 130.0)) == []  # 7 s above the limit: too short
    det = EventDetector("T", VehicleInfo(1, "general"), FenceIndex([]))
    evs = [e for f in drive(60, 130.0) for e in det.update(f)]
    assert [e.type for e in evs] == ["overspeed"]  # one per episode
    assert evs[0].threshold == 120.0 and evs[0].time == T0
    det = EventDetector("T", VehicleInfo(1, "emergency"), FenceIndex([]))
    assert run(det, drive(60, 130.0)) == []  # emergency vehicles have a higher limit


def test_geofence_speed_limit_and_enter_exit() -> None:
    compound = Fence.circle(7, "行政中心", LAT, LON + 0.003, 150.0, speed_limit_kmh=20.0)
    det = EventDetector("T", VehicleInfo(1), FenceIndex([compound]))
    evs = [e for f in drive(120, 30.0) for e in det.update(f)]
    kinds = [e.type for e in evs]
    assert kinds == ["geofence_enter", "overspeed", "geofence_exit"]
    over = evs[1]
    assert over.threshold == 20.0 and over.fence_id == 7
    assert evs[0].fence_id == 7 and evs[0].key == "7"


def test_off_hours_weekend_holiday_and_makeup_workday() -> None:
    cal = WorkCalendar({date(2026, 3, 3): False, date(2026, 3, 7): True})
    det = EventDetector("T", VehicleInfo(1), FenceIndex([]), calendar=cal)
    assert run(det, drive(120, 40.0)) == []  # Monday 10:00: working time
    evening = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # 20:00 local
    assert run(det, drive(200, 40.0, evening)) == ["off_hours"]  # once per block
    assert run(det, drive(200, 40.0, evening + timedelta(minutes=30))) == []
    holiday = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)  # Tuesday, declared a holiday
    assert run(det, drive(90, 40.0, holiday)) == ["off_hours"]
    saturday_worked = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)  # 调休 working Saturday
    assert run(det, drive(90, 40.0, saturday_worked)) == []
    sunday = datetime(2026, 3, 8, 2, 0, tzinfo=UTC)
    assert run(det, drive(30, 40.0, sunday)) == []  # under a minute of driving


def test_jump_and_low_satellites() -> None:
    det = EventDetector("T", VehicleInfo(1), FenceIndex([]))
    fixes = drive(10, 30.0)
    far = Fix("T", fixes[-1].time + timedelta(seconds=1), LAT + 0.05, LON, 30.0, satellites=12)
    assert run(det, [*fixes, far]) == ["jump"]
    det = EventDetector("T", VehicleInfo(1), FenceIndex([]))
    assert run(det, drive(400, 20.0, sats=3)) == ["low_satellites"]
    det = EventDetector("T", VehicleInfo(1), FenceIndex([]))
    assert run(det, drive(200, 20.0, sats=3)) == []


def test_late_fix_is_ignored_by_detector() -> None:
    det = EventDetector("T", VehicleInfo(1), FenceIndex([]))
    fixes = drive(60, 130.0)
    run(det, fixes[30:])
    assert run(det, fixes[:30]) == []


def test_overnight_away_from_home() -> None:
    night = Stop(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), datetime(2026, 3, 3, 0, 0, tzinfo=UTC),
                 LAT + 0.02, LON)
    home = VehicleInfo(1, home=(LAT, LON))
    evs = overnight_events([night], home, "T")
    assert [e.type for e in evs] == ["overnight_away"]
    assert evs[0].time == datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # 02:00 Beijing
    at_home = Stop(night.start, night.end, LAT + 0.001, LON)
    assert overnight_events([at_home], home, "T") == []
    assert overnight_events([night], VehicleInfo(1), "T") == []  # no garage known


def test_simplify_keeps_ends_and_corners() -> None:
    lat = np.concatenate([np.full(500, LAT), LAT + np.linspace(0, 0.01, 500)])
    lon = np.concatenate([LON + np.linspace(0, 0.01, 500), np.full(500, LON + 0.01)])
    lat = lat + np.random.default_rng(1).normal(0, 2e-6, lat.size)
    idx = simplify_indices(lat, lon, 5.0)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) < 40
    assert np.any(np.abs(idx - 499) <= 2)


def test_split_by_local_day_and_month() -> None:
    a = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)  # 23:00 local
    b = a + timedelta(hours=2)
    assert list(split(a, b, "day")) == [("2026-03-31", 3600.0), ("2026-04-01", 3600.0)]
    assert list(split(a, b, "month")) == [("2026-03", 3600.0), ("2026-04", 3600.0)]


def test_analyze_cli_nmea_and_json_lines(tmp_path) -> None:  # type: ignore[no-untyped-def]
    track = day_track(1)
    fixes = observe(track, NoiseConfig(seed=3, dropout=0.0, duplicate=0.0, reorder=0.0))
    fixes.sort(key=lambda f: f.time)
    log = tmp_path / "day.nmea"
    log.write_text("\n".join(to_nmea(fixes)) + "\ngarbage line\n")
    result = CliRunner().invoke(app, ["analyze", str(log)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert set(out) == {"distance_km", "trips", "stops", "rejected"}
    assert abs(out["distance_km"] - track.distance_m / 1000.0) < 0.03 * track.distance_m / 1000
    assert len(out["trips"]) == 3
    assert sum(out["rejected"].values()) >= 1
    jl = "\n".join(json.dumps(f.to_json()) for f in fixes)
    out2 = analyze(jl)
    assert len(out2["trips"]) == 3
    result = CliRunner().invoke(app, ["analyze", "-"], input=jl)
    assert result.exit_code == 0 and json.loads(result.output)["trips"] == out2["trips"]


# --------------------------------------------------------------------------- settings
def test_trip_and_event_parameters_come_from_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from pydantic import ValidationError

    from fleet.settings import Settings
    from telematics.processing import processor_config

    monkeypatch.setenv("GONGCHE_TRIP_MIN_DISTANCE_M", "250")
    monkeypatch.setenv("GONGCHE_TRIP_USE_IGNITION", "true")
    monkeypatch.setenv("GONGCHE_EVENT_WORK_START", "07:30")
    monkeypatch.setenv("GONGCHE_EVENT_WORK_END", "17:30")
    monkeypatch.setenv("GONGCHE_EVENT_SPEED_LIMITS_KMH", '{"general": 80, "bus": 90}')
    monkeypatch.setenv("GONGCHE_EVENT_OFFLINE_AFTER_S", "1200")
    config = processor_config(Settings(mode="test"))
    assert config.segment.min_trip_distance_m == 250.0 and config.segment.use_ignition
    assert config.segment.min_parking_s == 300.0  # untouched defaults stay
    ev = config.events
    assert (ev.work_start.hour, ev.work_start.minute, ev.work_end.hour) == (7, 30, 17)
    assert ev.category_limits_kmh["general"] == 80.0 and ev.category_limits_kmh["bus"] == 90.0
    assert ev.category_limits_kmh["emergency"] == 150.0  # built-in ones not overridden stay
    assert ev.offline_after_s == 1200.0

    # The detector's calendar follows: 07:45 on a Monday is working time now, not by default.
    monday_0745 = datetime(2026, 3, 1, 23, 45, tzinfo=UTC)
    assert EventDetector("T1", None, FenceIndex([]), ev).calendar.off_hours_block(
        monday_0745) is None
    assert WorkCalendar().off_hours_block(monday_0745) == "2026-03-02:am"

    monkeypatch.setenv("GONGCHE_TRIP_MIN_PARKING_S", "-5")
    with pytest.raises(ValidationError, match="trip_min_parking_s"):
        Settings(mode="test")
