"""Geofences (电子围栏): metric circles, polygons, index, debounced tracker, GeoJSON."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import MultiPolygon, Polygon

from geo.fences import (
    DebounceRule,
    Fence,
    FenceError,
    FenceEvent,
    FenceIndex,
    FenceTracker,
    circle_polygon,
    fence_from_geojson,
    fence_to_geojson,
    fences_from_geojson,
    fences_to_geojson,
)
from geo.geodesy import destination

T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


def square(fid: str, lat: float, lon: float, half_deg: float, **kw: object) -> Fence:
    h = half_deg
    ring = [(lon - h, lat - h), (lon + h, lat - h), (lon + h, lat + h), (lon - h, lat + h)]
    return Fence.polygon(fid, fid, ring, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Fence


@pytest.mark.parametrize("centre", [(39.9042, 116.4074), (45.75, 126.65), (18.25, 109.5)])
@pytest.mark.parametrize("bearing", [0.0, 45.0, 90.0, 135.0, 200.0, 270.0])
def test_circle_is_metric(centre: tuple[float, float], bearing: float) -> None:
    # Harbin (45.75°N) would be badly wrong with a buffer in degrees: a degree of longitude
    # there is 0.7 of one of latitude.
    f = Fence.circle("c", "机关大院", *centre, radius_m=500)
    assert f.contains(*destination(*centre, bearing, 499.0))
    assert not f.contains(*destination(*centre, bearing, 501.0))
    # within the haversine uncertainty band: decided by the exact ellipsoidal distance
    assert f.contains(*destination(*centre, bearing, 499.95))
    assert not f.contains(*destination(*centre, bearing, 500.05))
    assert f.signed_distance_m(*destination(*centre, bearing, 530.0)) == pytest.approx(30, abs=1e-6)
    assert f.signed_distance_m(*centre) == pytest.approx(-500)


def test_polygon_contains_boundary_and_holes() -> None:
    outer = [(116.0, 39.0), (117.0, 39.0), (117.0, 40.0), (116.0, 40.0)]
    hole = [(116.4, 39.4), (116.6, 39.4), (116.6, 39.6), (116.4, 39.6)]
    f = Fence.polygon("p", "市区", outer, holes=[hole], speed_limit_kmh=60, tags=["城区"])
    assert f.contains(39.2, 116.2)
    assert f.contains(39.0, 116.5)  # on the boundary
    assert not f.contains(39.5, 116.5)  # in the hole
    assert not f.contains(41.0, 116.5)
    assert f.speed_limit_kmh == 60 and f.tags == frozenset({"城区"})
    assert isinstance(f.geometry, Polygon)


def test_polygon_signed_distance_in_metres() -> None:
    f = square("p", 39.9, 116.4, 0.01)
    # north edge at 39.91; 0.001° of latitude ≈ 111 m
    north_out = f.signed_distance_m(39.911, 116.4)
    assert north_out == pytest.approx(111.0, rel=0.01)
    assert f.signed_distance_m(39.909, 116.4) == pytest.approx(-111.0, rel=0.01)
    # east edge: 0.001° of longitude at 39.9°N ≈ 85.4 m
    assert f.signed_distance_m(39.9, 116.411) == pytest.approx(85.4, rel=0.01)


def test_multipolygon_fence() -> None:
    a = Polygon([(116.0, 39.0), (116.1, 39.0), (116.1, 39.1), (116.0, 39.1)])
    b = Polygon([(117.0, 39.0), (117.1, 39.0), (117.1, 39.1), (117.0, 39.1)])
    f = Fence("m", "两个院区", "polygon", MultiPolygon([a, b]))
    assert f.contains(39.05, 116.05) and f.contains(39.05, 117.05)
    assert not f.contains(39.05, 116.5)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Fence.polygon("x", "bow", [(0, 0), (1, 1), (1, 0), (0, 1)]), "self-intersecting"),
        (lambda: Fence.circle("x", "c", 39.9, 116.4, 0), "radius_m must be > 0"),
        (lambda: Fence.circle("x", "c", 39.9, 116.4, -5), "radius_m must be > 0"),
        (lambda: Fence.circle("x", "c", 39.9, 116.4, math.nan), "radius_m must be > 0"),
        (lambda: Fence.circle("x", "c", 95.0, 116.4, 100), "latitude 95.0 out of range"),
        (lambda: Fence.polygon("x", "p", [(200, 0), (201, 0), (201, 1)]), "longitude 200.0"),
        (lambda: Fence.polygon("x", "p", [(0, 0), (1, 0)]), "at least 3 distinct corners"),
        (lambda: Fence.polygon("x", "p", [(0, 0), (1, 0), (2, 0)]),
         "self-intersecting|invalid|zero area"),
        (lambda: square("x", 39.9, 116.4, 0.01, speed_limit_kmh=0), "speed_limit_kmh"),
        (lambda: Fence.circle("", "c", 39.9, 116.4, 100), "id must not be empty"),
        (lambda: Fence("x", "c", "hexagon", Polygon()), "kind must be"),  # type: ignore[arg-type]
        (lambda: Fence.circle("x", "c", 89.99, 0.0, 5000), "pole"),
    ],
)
def test_validation_errors_name_the_problem(build: object, message: str) -> None:
    with pytest.raises(FenceError, match=message) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- index


def random_fences(n: int, seed: int) -> list[Fence]:
    rng = np.random.default_rng(seed)
    out: list[Fence] = []
    for i in range(n):
        lat, lon = 39.6 + 0.6 * rng.random(), 116.1 + 0.6 * rng.random()
        if i % 2:
            out.append(Fence.circle(f"c{i}", f"圆{i}", lat, lon, float(rng.uniform(100, 5000))))
        else:
            k = int(rng.integers(5, 30))
            # jittered even angles keep the polygon star-shaped, hence simple
            ang = (np.arange(k) + rng.uniform(0.1, 0.9, k)) * (2 * np.pi / k)
            r = rng.uniform(0.005, 0.05, k)
            ring = list(zip(lon + r * np.cos(ang), lat + r * np.sin(ang), strict=True))
            out.append(Fence.polygon(f"p{i}", f"多边形{i}", ring))
    return out


def test_index_matches_brute_force() -> None:
    fences = random_fences(120, seed=1)
    index = FenceIndex(fences)
    rng = np.random.default_rng(2)
    lats, lons = 39.6 + 0.6 * rng.random(3000), 116.1 + 0.6 * rng.random(3000)
    many = index.fences_containing_many(lats, lons)
    hits = 0
    for lat, lon, batch in zip(lats.tolist(), lons.tolist(), many, strict=True):
        expect = [f.id for f in fences if f.contains(lat, lon)]
        assert index.fences_containing(lat, lon) == expect
        assert batch == expect
        hits += bool(expect)
    assert hits > 300  # the test exercised real containment


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 359.99), st.floats(0.0, 2.0))
def test_index_circle_edge(bearing: float, frac: float) -> None:
    f = Fence.circle("c", "c", 31.23, 121.47, 1000.0)
    index = FenceIndex([f])
    lat, lon = destination(31.23, 121.47, bearing, 1000.0 * frac)
    expect = ["c"] if f.contains(lat, lon) else []
    assert index.fences_containing(lat, lon) == expect
    assert index.fences_containing_many([lat], [lon]) == [expect]
    assert (frac < 0.999) <= bool(expect) and (frac > 1.001) <= (not expect)


def test_index_points_outside_or_invalid() -> None:
    index = FenceIndex(random_fences(10, seed=6))
    assert index.fences_containing(math.nan, 116.4) == []
    assert index.fences_containing(31.2, 121.5) == []  # far outside every fence
    assert index.fences_containing(-39.9, -116.4) == []
    # the corners of a fence's bounding box are inside the coarse grid, and answered exactly
    f = square("sq", 39.9, 116.4, 0.01)
    one = FenceIndex([f])
    assert one.fences_containing(39.91, 116.41) == ["sq"]
    assert one.fences_containing(39.89, 116.39) == ["sq"]
    assert one.fences_containing(39.9100001, 116.41) == []


def test_index_basics() -> None:
    fences = random_fences(4, seed=3)
    index = FenceIndex(fences)
    assert len(index) == 4 and list(index) == fences
    assert "p0" in index and index.get("p0") is fences[0] and index.get("nope") is None
    assert FenceIndex([]).fences_containing(39.9, 116.4) == []
    assert FenceIndex([]).fences_containing_many([39.9], [116.4]) == [[]]
    with pytest.raises(FenceError, match="duplicate fence id"):
        FenceIndex([fences[0], fences[0]])


def test_index_throughput_smoke() -> None:
    # The benchmark (bench/geo_fences.py) measures properly; this only guards regressions.
    index = FenceIndex(random_fences(200, seed=4))
    rng = np.random.default_rng(5)
    pts = list(zip((39.6 + 0.6 * rng.random(20_000)).tolist(),
                   (116.1 + 0.6 * rng.random(20_000)).tolist(), strict=True))
    start = time.perf_counter()
    for lat, lon in pts:
        index.fences_containing(lat, lon)
    rate = len(pts) / (time.perf_counter() - start)
    assert rate > 10_000


# --------------------------------------------------------------------------- tracker


def feed(tracker: FenceTracker, points: list[tuple[float, float]], step_s: float = 10.0,
         start: datetime = T0) -> list[FenceEvent]:
    events: list[FenceEvent] = []
    for i, (lat, lon) in enumerate(points):
        events += tracker.update(lat, lon, start + timedelta(seconds=i * step_s))
    return events


CIRCLE = Fence.circle("yard", "车场", 39.9, 116.4, 200.0)
INSIDE = (39.9, 116.4)
OUTSIDE = (39.91, 116.4)  # ~1.1 km north


def test_tracker_needs_consecutive_fixes() -> None:
    tracker = FenceTracker(FenceIndex([CIRCLE]), DebounceRule(min_fixes=3))
    assert feed(tracker, [INSIDE, INSIDE, OUTSIDE, INSIDE, INSIDE]) == []
    events = tracker.update(*INSIDE, T0 + timedelta(seconds=50))
    assert [(e.fence_id, e.transition) for e in events] == [("yard", "enter")]
    assert events[0].since == T0 + timedelta(seconds=30)  # the run started at the 4th fix
    assert events[0].time == T0 + timedelta(seconds=50)
    assert tracker.inside == {"yard"}
    out = feed(tracker, [OUTSIDE] * 3, start=T0 + timedelta(minutes=5))
    assert [(e.fence_id, e.transition) for e in out] == [("yard", "exit")]
    assert tracker.inside == frozenset()


def test_tracker_events_carry_terminal_id() -> None:
    tracker = FenceTracker(FenceIndex([CIRCLE]), DebounceRule(min_fixes=1), terminal_id="京A12345")
    (event,) = tracker.update(*INSIDE, T0)
    assert event == FenceEvent("yard", "enter", T0, T0, *INSIDE, terminal_id="京A12345")


def test_speed_limit_is_the_strictest_containing_fence() -> None:
    city = square("city", 39.9, 116.4, 0.2, speed_limit_kmh=60)
    school = Fence.circle("school", "学校", 39.9, 116.4, 300.0, speed_limit_kmh=30)
    free = Fence.circle("free", "无限速", 39.95, 116.45, 300.0)
    index = FenceIndex([city, school, free])
    assert index.speed_limit_kmh(39.9, 116.4) == 30
    assert index.speed_limit_kmh(39.85, 116.35) == 60
    assert index.speed_limit_kmh(39.95, 116.45) == 60
    assert index.speed_limit_kmh(41.0, 116.4) is None


def test_tracker_min_seconds_all_and_any() -> None:
    idx = FenceIndex([CIRCLE])
    both = FenceTracker(idx, DebounceRule(min_fixes=2, min_seconds=60))
    assert feed(both, [INSIDE] * 6, step_s=10) == []  # 6 fixes but only 50 s
    assert [e.transition for e in both.update(*INSIDE, T0 + timedelta(seconds=60))] == ["enter"]
    either = FenceTracker(idx, DebounceRule(min_fixes=5, min_seconds=30, mode="any"))
    events = feed(either, [INSIDE] * 4, step_s=15)  # 4 fixes, 45 s: time rule fires first
    assert [e.time for e in events] == [T0 + timedelta(seconds=30)]


def test_tracker_hysteresis_stops_boundary_flapping() -> None:
    rng = np.random.default_rng(11)
    idx = FenceIndex([CIRCLE])
    # a car parked right on the 200 m boundary, GNSS noise σ = 6 m
    jitter = [destination(39.9, 116.4, 90.0, 200.0 + float(rng.normal(0, 6))) for _ in range(500)]
    naive = FenceTracker(idx, DebounceRule(min_fixes=1))
    assert len(feed(naive, jitter)) > 50  # without debouncing it flaps
    robust = FenceTracker(idx, DebounceRule(min_fixes=2, hysteresis_m=25.0))
    assert feed(robust, jitter) == []
    robust_in = FenceTracker(idx, DebounceRule(min_fixes=2, hysteresis_m=25.0),
                             initially_inside=["yard"])
    assert feed(robust_in, jitter) == []
    # clearly leaving still exits
    away = [destination(39.9, 116.4, 90.0, d) for d in (240.0, 260.0, 300.0)]
    events = feed(robust_in, away, start=T0 + timedelta(hours=2))
    assert [e.transition for e in events] == ["exit"]


def test_tracker_hysteresis_on_polygons() -> None:
    f = square("sq", 39.9, 116.4, 0.01)  # north edge at 39.91
    tracker = FenceTracker(FenceIndex([f]), DebounceRule(min_fixes=1, hysteresis_m=50.0))
    assert tracker.update(39.9097, 116.4, T0) == []  # 33 m inside: not deep enough
    assert [e.transition for e in tracker.update(39.9094, 116.4, T0 + timedelta(seconds=1))] == [
        "enter"]
    assert tracker.update(39.9103, 116.4, T0 + timedelta(seconds=2)) == []  # 33 m outside
    assert [e.transition for e in tracker.update(39.9106, 116.4, T0 + timedelta(seconds=3))] == [
        "exit"]


def test_tracker_initial_state_order_and_reindex() -> None:
    a, b = CIRCLE, square("sq", 39.9, 116.4, 0.01)
    tracker = FenceTracker(FenceIndex([a, b]), DebounceRule(min_fixes=1),
                           initially_inside=["yard", "unknown"])
    assert tracker.inside == {"yard"}
    assert [(e.fence_id, e.transition) for e in tracker.update(*INSIDE, T0)] == [("sq", "enter")]
    assert tracker.update(*OUTSIDE, T0 - timedelta(seconds=5)) == []  # older fix ignored
    tracker.set_index(FenceIndex([b]))
    assert tracker.inside == {"sq"}
    far = (39.95, 116.4)
    assert [e.transition for e in tracker.update(*far, T0 + timedelta(seconds=5))] == ["exit"]


def test_debounce_rule_validation() -> None:
    with pytest.raises(ValueError):
        DebounceRule(min_fixes=0)
    with pytest.raises(ValueError):
        DebounceRule(hysteresis_m=-1)
    with pytest.raises(ValueError):
        DebounceRule(mode="some")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- GeoJSON


def test_geojson_round_trip_polygon_and_circle() -> None:
    p = Fence.polygon("p1", "禁行区", [(116.0, 39.0), (116.1, 39.0), (116.1, 39.1)],
                      holes=[[(116.04, 39.04), (116.06, 39.04), (116.06, 39.06)]],
                      speed_limit_kmh=40, tags={"禁行", "市区"})
    c = Fence.circle(7, "单位驻地", 31.23, 121.47, 300.0)
    for f in (p, c):
        doc = json.loads(json.dumps(fence_to_geojson(f)))
        back = fence_from_geojson(doc)
        assert back == f
        assert fence_from_geojson(json.dumps(doc)) == f
    assert fence_to_geojson(c)["geometry"] == {"type": "Point", "coordinates": [121.47, 31.23]}
    assert fence_to_geojson(p)["properties"]["tags"] == ["市区", "禁行"]


def test_geojson_circle_as_polygon_for_maps() -> None:
    c = Fence.circle("c", "c", 31.23, 121.47, 1000.0)
    doc = fence_to_geojson(c, circle_as_polygon=True, segments=128)
    assert doc["geometry"]["type"] == "Polygon"
    assert doc["properties"]["radius_m"] == 1000.0
    ring = doc["geometry"]["coordinates"][0]
    assert len(ring) == 129
    poly = circle_polygon(31.23, 121.47, 1000.0, 16)
    for lon, lat in list(poly.exterior.coords)[:-1]:
        assert abs(c.signed_distance_m(lat, lon)) < 1e-6


def test_geojson_feature_collection() -> None:
    fences = random_fences(6, seed=9)
    fc = json.loads(json.dumps(fences_to_geojson(fences)))
    assert fc["type"] == "FeatureCollection"
    assert fences_from_geojson(fc) == fences


def test_geojson_id_from_properties_and_3d_positions() -> None:
    doc = {"type": "Feature", "properties": {"id": "a", "name": "A"},
           "geometry": {"type": "Polygon",
                        "coordinates": [[[0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 0, 5]]]}}
    f = fence_from_geojson(doc)
    assert f.id == "a" and f.kind == "polygon" and f.contains(0.2, 0.5)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"type": "Polygon", "coordinates": []}, "expected a GeoJSON Feature"),
        ("{not json", "not valid JSON"),
        ({"type": "Feature", "properties": {}, "geometry": None}, "no id"),
        ({"type": "Feature", "id": 1, "geometry": None}, "no geometry"),
        ({"type": "Feature", "id": 1, "geometry": {"type": "Point", "coordinates": [116, 39]}},
         "needs properties.radius_m"),
        ({"type": "Feature", "id": 1, "properties": {"radius_m": -1},
          "geometry": {"type": "Point", "coordinates": [116, 39]}}, "radius_m must be > 0"),
        ({"type": "Feature", "id": 1, "properties": {"radius_m": 10},
          "geometry": {"type": "Point", "coordinates": [116, 91]}}, "latitude 91.0"),
        ({"type": "Feature", "id": 1, "geometry": {"type": "LineString", "coordinates": []}},
         "unsupported geometry type 'LineString'"),
        ({"type": "Feature", "id": 1, "geometry": {
            "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}},
         "not closed"),
        ({"type": "Feature", "id": 1, "geometry": {
            "type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}},
         "self-intersecting"),
        ({"type": "Feature", "id": 1, "properties": {"tags": "a,b"}, "geometry": {
            "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}},
         "tags must be a list"),
        ({"type": "Feature", "id": 1, "properties": {"speed_limit_kmh": "fast"}, "geometry": {
            "type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}},
         "speed_limit_kmh must be a number"),
    ],
)
def test_geojson_errors(doc: object, message: str) -> None:
    with pytest.raises(FenceError, match=message):
        fence_from_geojson(doc)  # type: ignore[arg-type]


def test_feature_collection_errors() -> None:
    with pytest.raises(FenceError, match="FeatureCollection"):
        fences_from_geojson({"type": "Feature"})
