"""Travel-time providers: the great-circle default, and OSRM/Valhalla over real HTTP.

The OSRM and Valhalla tests run a tiny ``http.server`` on 127.0.0.1 that answers with JSON
shaped like the real APIs (OSRM ``/table`` and ``/route`` v1; Valhalla ``/sources_to_targets``
in both its verbose and compact forms). httpx talks to it for real — nothing is mocked.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.geodesy import haversine_m
from geo.travel import (
    DEFAULT_SPEED_PROFILE,
    GreatCircleProvider,
    OsrmProvider,
    TravelMatrix,
    TravelTimeError,
    TravelTimeProvider,
    ValhallaProvider,
    provider_from_settings,
)

SHANGHAI = timezone(timedelta(hours=8))
POINTS = [(39.9042, 116.4074), (39.9163, 116.3972), (39.99, 116.31), (39.87, 116.46),
          (40.08, 116.59), (39.95, 116.33), (39.80, 116.50)]


# --------------------------------------------------------------------------- great circle


def test_great_circle_matrix_shape_and_values() -> None:
    p = GreatCircleProvider()
    m = p.matrix(POINTS)
    assert isinstance(m, TravelMatrix) and len(m) == 7
    assert m.distances_m.dtype == np.int64 and m.durations_s.dtype == np.int64
    assert (np.diag(m.distances_m) == 0).all() and (np.diag(m.durations_s) == 0).all()
    assert (m.distances_m == m.distances_m.T).all()
    expect = haversine_m(*POINTS[0], *POINTS[2]) * 1.3
    assert m.distances_m[0, 2] == round(expect)
    assert p.route(POINTS[0], POINTS[2]) == (m.distances_m[0, 2], m.durations_s[0, 2])
    assert isinstance(p, TravelTimeProvider)


def test_peak_hours_are_slower_than_night() -> None:
    p = GreatCircleProvider()
    a, b = POINTS[0], POINTS[4]
    peak = p.route(a, b, datetime(2025, 3, 3, 8, 0, tzinfo=SHANGHAI))[1]
    night = p.route(a, b, datetime(2025, 3, 3, 2, 0, tzinfo=SHANGHAI))[1]
    evening = p.route(a, b, datetime(2025, 3, 3, 18, 0, tzinfo=SHANGHAI))[1]
    assert peak > 1.5 * night and evening > 1.5 * night


def test_local_hours_are_asia_shanghai() -> None:
    p = GreatCircleProvider()
    utc_midnight = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)  # 08:00 in Beijing
    assert p.speed_kmh(utc_midnight) == DEFAULT_SPEED_PROFILE[8]
    assert p.speed_kmh(datetime(2025, 3, 3, 0, 0)) == DEFAULT_SPEED_PROFILE[8]  # naive = UTC
    assert p.speed_kmh(None) == DEFAULT_SPEED_PROFILE[10]


def test_trip_across_hours_is_integrated() -> None:
    p = GreatCircleProvider(speed_profile={6: 36.0, 7: 18.0})
    # leave 06:30: half an hour at 36 km/h (18 km) then half an hour at 18 km/h (9 km)
    dur = p.durations_for(np.array([27_000.0]), datetime(2025, 3, 3, 6, 30, tzinfo=SHANGHAI))
    assert dur[0] == pytest.approx(3600.0)
    assert p.speed_profile[6] == 36.0 and p.speed_profile[9] == DEFAULT_SPEED_PROFILE[9]


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 24 * 3600 - 1), st.floats(0, 3600), st.floats(0, 300_000))
def test_leaving_later_never_arrives_earlier(start_s: float, wait_s: float, dist: float) -> None:
    p = GreatCircleProvider()
    t1 = datetime(2025, 3, 3, tzinfo=SHANGHAI) + timedelta(seconds=start_s)
    t2 = t1 + timedelta(seconds=wait_s)
    d = np.array([dist])
    arrive1 = p.durations_for(d, t1)[0]
    arrive2 = wait_s + p.durations_for(d, t2)[0]
    assert arrive2 >= arrive1 - 1e-6


def test_custom_detour_and_validation() -> None:
    assert GreatCircleProvider(detour_factor=1.0).route(POINTS[0], POINTS[1])[0] == round(
        haversine_m(*POINTS[0], *POINTS[1]))
    with pytest.raises(ValueError, match="detour_factor"):
        GreatCircleProvider(detour_factor=0.5)
    with pytest.raises(ValueError, match="hour"):
        GreatCircleProvider(speed_profile={24: 30.0})
    with pytest.raises(ValueError, match="> 0 km/h"):
        GreatCircleProvider(speed_profile={3: 0.0})
    with pytest.raises(ValueError, match="lat"):
        GreatCircleProvider().matrix([(116.4, 39.9)])  # (lon, lat) by mistake: lat > 90


def test_empty_and_single_point() -> None:
    p = GreatCircleProvider()
    assert p.matrix([]).distances_m.shape == (0, 0)
    one = p.matrix([POINTS[0]])
    assert one.distances_m.tolist() == [[0]] and one.durations_s.tolist() == [[0]]


def test_1200_point_matrix_is_fast() -> None:
    rng = np.random.default_rng(0)
    pts = list(zip((39.6 + 0.6 * rng.random(1200)).tolist(),
                   (116.1 + 0.6 * rng.random(1200)).tolist(), strict=True))
    p = GreatCircleProvider()
    start = time.perf_counter()
    m = p.matrix(pts, datetime(2025, 3, 3, 9, 0, tzinfo=UTC))
    elapsed = time.perf_counter() - start
    assert m.durations_s.shape == (1200, 1200)
    assert elapsed < 1.0


# --------------------------------------------------------------------------- fake servers


@dataclass
class FakeServer:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    handler: Callable[[dict[str, Any]], tuple[int, Any]] | None = None
    delay_s: float = 0.0


@pytest.fixture
def server() -> Iterator[FakeServer]:
    state = FakeServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            req = {"method": method, "path": parts.path, "query": parse_qs(parts.query),
                   "json": json.loads(raw) if raw else None}
            state.requests.append(req)
            if state.delay_s:
                time.sleep(state.delay_s)
            assert state.handler is not None
            status, body = state.handler(req)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("POST")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def road_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """What the fake engines call the road distance: 1.4 × great circle."""
    return 1.4 * haversine_m(a[0], a[1], b[0], b[1])


def road_s(a: tuple[float, float], b: tuple[float, float]) -> float:
    return road_m(a, b) / 10.0  # 36 km/h


def osrm_table(
    req: dict[str, Any], unroutable: frozenset[tuple[float, float]] = frozenset()
) -> Any:
    """An OSRM /table/v1 answer computed from the coordinates in the URL."""
    coords = req["path"].split("/", 4)[4].split(";")
    pts = [(float(c.split(",")[1]), float(c.split(",")[0])) for c in coords]
    q = req["query"]
    src = [int(i) for i in q["sources"][0].split(";")] if "sources" in q else range(len(pts))
    dst = [int(i) for i in q["destinations"][0].split(";")] if "destinations" in q \
        else range(len(pts))
    loc = [{"hint": "", "distance": 0.0, "name": "", "location": [p[1], p[0]]} for p in pts]

    def cell(fn: Callable, i: int, j: int) -> float | None:
        if (round(pts[i][0], 4), round(pts[j][0], 4)) in unroutable:
            return None
        return round(fn(pts[i], pts[j]), 1)

    return {
        "code": "Ok",
        "durations": [[cell(road_s, i, j) for j in dst] for i in src],
        "distances": [[cell(road_m, i, j) for j in dst] for i in src],
        "sources": [loc[i] for i in src],
        "destinations": [loc[j] for j in dst],
    }


# --------------------------------------------------------------------------- OSRM


def test_osrm_table_in_blocks(server: FakeServer) -> None:
    server.handler = lambda req: (200, osrm_table(req))
    osrm = OsrmProvider(server.url, max_table_size=3)
    m = osrm.matrix(POINTS)
    assert len(server.requests) == 9  # 7 points in blocks of 3 → 3 × 3 requests
    for i, a in enumerate(POINTS):
        for j, b in enumerate(POINTS):
            want_m = round(road_m(a, b), 1) if i != j else 0.0
            want_s = road_s(a, b) if i != j else 0.0
            assert abs(m.distances_m[i, j] - want_m) <= 0.5
            assert abs(m.durations_s[i, j] - want_s) <= 1
    assert m.estimated is None
    first = server.requests[0]
    assert first["path"].startswith("/table/v1/driving/116.407400,39.904200;")
    assert first["query"]["annotations"] == ["duration,distance"]
    assert "sources" not in first["query"]  # diagonal block: one coordinate list
    off = server.requests[1]["query"]
    assert off["sources"] == ["0;1;2"] and off["destinations"] == ["3;4;5"]


def test_osrm_unroutable_cells_get_estimates(server: FakeServer) -> None:
    bad = frozenset({(round(POINTS[0][0], 4), round(POINTS[2][0], 4))})
    server.handler = lambda req: (200, osrm_table(req, bad))
    m = OsrmProvider(server.url).matrix(POINTS, datetime(2025, 3, 3, tzinfo=UTC))
    assert m.estimated is not None and m.estimated.sum() == 1 and m.estimated[0, 2]
    est = GreatCircleProvider().matrix(POINTS, datetime(2025, 3, 3, tzinfo=UTC))
    assert m.distances_m[0, 2] == est.distances_m[0, 2]
    assert m.durations_s[0, 2] == est.durations_s[0, 2]


def test_osrm_route(server: FakeServer) -> None:
    server.handler = lambda req: (200, {
        "code": "Ok", "waypoints": [],
        "routes": [{"distance": 12345.6, "duration": 1234.4, "weight": 1234.4,
                    "weight_name": "routability", "legs": []}],
    })
    assert OsrmProvider(server.url).route(POINTS[0], POINTS[1]) == (12346, 1234)
    req = server.requests[0]
    assert req["path"] == "/route/v1/driving/116.407400,39.904200;116.397200,39.916300"
    assert req["query"]["overview"] == ["false"]


def test_osrm_errors_are_clear(server: FakeServer) -> None:
    osrm = OsrmProvider(server.url)
    server.handler = lambda req: (400, {"code": "InvalidQuery",
                                        "message": "Query string malformed"})
    with pytest.raises(TravelTimeError, match="HTTP 400: InvalidQuery: Query string malformed"):
        osrm.matrix(POINTS[:2])
    server.handler = lambda req: (200, {"code": "NoRoute", "message": "Impossible route"})
    with pytest.raises(TravelTimeError, match="OSRM route failed: NoRoute"):
        osrm.route(POINTS[0], POINTS[1])
    server.handler = lambda req: (502, "<html>bad gateway</html>")
    with pytest.raises(TravelTimeError, match="HTTP 502"):
        osrm.route(POINTS[0], POINTS[1])
    server.handler = lambda req: (200, {"code": "Ok", "durations": [[0, 1], [1, 0]]})
    with pytest.raises(TravelTimeError, match="no 'distances'"):
        osrm.matrix(POINTS[:2])


def test_osrm_timeout(server: FakeServer) -> None:
    server.handler = lambda req: (200, osrm_table(req))
    server.delay_s = 1.0
    with pytest.raises(TravelTimeError, match=r"timed out after 0\.2 s"):
        OsrmProvider(server.url, timeout_s=0.2).matrix(POINTS[:2])


def test_unreachable_server() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TravelTimeError, match="cannot reach OSRM"):
        OsrmProvider(f"http://127.0.0.1:{port}", timeout_s=2).route(POINTS[0], POINTS[1])


# --------------------------------------------------------------------------- Valhalla


def valhalla_verbose(req: dict[str, Any]) -> Any:
    body = req["json"]
    src = [(s["lat"], s["lon"]) for s in body["sources"]]
    dst = [(t["lat"], t["lon"]) for t in body["targets"]]
    rows = [[{"distance": round(road_m(a, b) / 1000.0, 3), "time": round(road_s(a, b)),
              "from_index": i, "to_index": j} for j, b in enumerate(dst)]
            for i, a in enumerate(src)]
    return {"sources_to_targets": rows, "sources": [body["sources"]],
            "targets": [body["targets"]], "units": "kilometers"}


def valhalla_compact(req: dict[str, Any]) -> Any:
    body = req["json"]
    src = [(s["lat"], s["lon"]) for s in body["sources"]]
    dst = [(t["lat"], t["lon"]) for t in body["targets"]]
    return {"sources_to_targets": {
        "distances": [[round(road_m(a, b) / 1000.0, 3) for b in dst] for a in src],
        "durations": [[round(road_s(a, b)) for b in dst] for a in src]},
        "units": "kilometers"}


@pytest.mark.parametrize("answer", [valhalla_verbose, valhalla_compact])
def test_valhalla_matrix(server: FakeServer, answer: Callable) -> None:
    server.handler = lambda req: (200, answer(req))
    v = ValhallaProvider(server.url, max_locations=4)
    m = v.matrix(POINTS, datetime(2025, 3, 3, 0, 30, tzinfo=UTC))
    assert len(server.requests) == 4  # 7 points in blocks of 4 → 2 × 2
    for i, a in enumerate(POINTS):
        for j, b in enumerate(POINTS):
            if i != j:
                assert abs(m.distances_m[i, j] - road_m(a, b)) <= 1
                assert abs(m.durations_s[i, j] - road_s(a, b)) <= 1
    req = server.requests[0]
    assert req["method"] == "POST" and req["path"] == "/sources_to_targets"
    assert req["json"]["costing"] == "auto"
    assert req["json"]["date_time"] == {"type": 1, "value": "2025-03-03T08:30"}  # local time
    assert req["json"]["sources"][0] == {"lat": POINTS[0][0], "lon": POINTS[0][1]}


def test_valhalla_route_and_errors(server: FakeServer) -> None:
    server.handler = lambda req: (200, valhalla_verbose(req))
    v = ValhallaProvider(server.url)
    dist, dur = v.route(POINTS[0], POINTS[3])
    assert abs(dist - road_m(POINTS[0], POINTS[3])) <= 1
    assert "date_time" not in server.requests[0]["json"]
    server.handler = lambda req: (400, {"error_code": 171, "error": "No suitable edges near "
                                        "location", "status_code": 400, "status": "Bad Request"})
    with pytest.raises(TravelTimeError, match="HTTP 400: 171 No suitable edges"):
        v.route(POINTS[0], POINTS[3])
    server.handler = lambda req: (200, {"sources_to_targets": [[{"distance": None,
                                                                  "time": None}]]})
    with pytest.raises(TravelTimeError, match="no route"):
        v.route(POINTS[0], POINTS[3])
    server.handler = lambda req: (200, {"units": "kilometers"})
    with pytest.raises(TravelTimeError, match="no 'sources_to_targets'"):
        v.route(POINTS[0], POINTS[3])


# --------------------------------------------------------------------------- factory


def test_provider_from_settings() -> None:
    assert isinstance(provider_from_settings(None), GreatCircleProvider)
    assert isinstance(provider_from_settings(""), GreatCircleProvider)
    gc = provider_from_settings(None, detour_factor=1.5)
    assert isinstance(gc, GreatCircleProvider) and gc.detour_factor == 1.5
    osrm = provider_from_settings("http://osrm:5000/", timeout_s=3)
    assert isinstance(osrm, OsrmProvider) and osrm.base_url == "http://osrm:5000"
    assert osrm.timeout_s == 3
    assert isinstance(provider_from_settings("http://valhalla:8002", "Valhalla"), ValhallaProvider)
    with pytest.raises(ValueError, match="unknown routing engine kind"):
        provider_from_settings("http://x", "graphhopper")
    with pytest.raises(ValueError, match="base_url"):
        OsrmProvider("osrm:5000")
    for p in (osrm, gc):
        assert isinstance(p, TravelTimeProvider)
    assert math.isfinite(gc.speed_kmh(None))
