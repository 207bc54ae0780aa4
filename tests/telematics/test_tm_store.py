"""Stored trips, stops, mileage, geofences, events, replay and reports through the API,
on both backends, from simulated terminals with known routes (committed data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import fakeredis
import pytest
from fastapi.testclient import TestClient
from geoalchemy2.shape import from_shape
from shapely import Point
from sim_cases import city, day_track
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fleet.app import create_app
from fleet.fix import Fix
from fleet.models import Department, Role, Terminal, TerminalProtocol, Vehicle
from fleet.settings import Settings
from gateway.sink import Routed
from simulators.noise import NoiseConfig, observe
from simulators.tracks import simulate_parked, start_time
from telematics.processing import EVENTS_CHANNEL, TelematicsProcessor, check_offline
from telematics.segment import DiameterSegmenter
from telematics.writer import store_positions
from tests import factories as f

TABLES = ["events", "trips", "stops", "geofences", "holidays", "positions", "terminal_bindings",
          "terminals", "audit_log", "vehicles", "drivers", "users", "departments"]
TOL_S = 30.0


def wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for t in TABLES:
            conn.execute(text(f"DELETE FROM {t}"))


@dataclass
class World:
    engine: Engine
    client: TestClient
    admin: dict[str, str]
    staff_other: dict[str, str]
    staff_own: dict[str, str]
    vehicle_id: int
    terminal: str = "SIM-0001"


@pytest.fixture
def world(settings: Settings, engine: Engine,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    import telematics.api

    # Only the kernel's and our routers: sibling domains are built in parallel.
    monkeypatch.setattr("fleet.app.domain_routers", lambda: [telematics.api.router])
    wipe(engine)
    garage = city().place("garage-central")
    with Session(engine, expire_on_commit=False) as db:
        dep = Department(code="tm", name="测试局")
        other = Department(code="tm2", name="其他单位")
        db.add_all([dep, other])
        db.flush()
        admin = f.user(db, Role.admin, dep)
        staff_other = f.user(db, Role.staff, other)
        staff_own = f.user(db, Role.staff, dep)
        v = Vehicle(plate="川A99999", vin="LFV00000000099999", category="general", seats=5,
                    energy_type="electric", department_id=dep.id,
                    home_garage=from_shape(Point(garage.lon, garage.lat), srid=4326))
        db.add(v)
        db.flush()
        db.add(Terminal(id="SIM-0001", protocol=TerminalProtocol.nmea_mqtt, vehicle_id=v.id))
        db.commit()
        ids = (admin, staff_other, staff_own, v.id)
    app = create_app(settings, engine=engine)  # real commits: the processor shares the data
    with TestClient(app) as client:
        yield World(engine, client, f.login(client, ids[0]).headers,
                    f.login(client, ids[1]).headers, f.login(client, ids[2]).headers, ids[3])
    wipe(engine)


def feed(engine: Engine, proc: TelematicsProcessor, fixes: list[Fix], vehicle_id: int,
         batch: int = 100) -> int:
    late = 0
    for i in range(0, len(fixes), batch):
        items = [Routed(x, vehicle_id) for x in fixes[i:i + batch]]
        store_positions(engine, items)
        late += proc.process(items).late
    return late


def _iso(t) -> str:  # type: ignore[no-untyped-def]
    return t.isoformat().replace("+00:00", "Z")


def test_day_incremental_recompute_fences_events_replay_reports(world: World) -> None:
    c, h = world.client, world.admin
    admin_centre = city().place("admin-centre")
    # A compound fence with a 20 km/h limit around the administrative centre.
    compound = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [
        admin_centre.lon, admin_centre.lat]}, "properties": {
        "name": "行政中心大院", "radius_m": 250, "speed_limit_kmh": 20, "tags": ["compound"]}}
    r = c.post("/api/geofences", json=compound, headers=h)
    assert r.status_code == 201, r.text
    fence_id = r.json()["id"]
    assert c.post("/api/geofences", json=compound, headers=world.staff_own).status_code == 403
    bad = {**compound, "properties": {"name": "x"}}
    assert c.post("/api/geofences", json=bad, headers=h).status_code == 422
    assert c.get("/api/geofences", headers=world.staff_own).json()["features"][0]["id"] \
        == fence_id

    track = day_track(1)
    fixes = observe(track, NoiseConfig(sigma_m=5.0, seed=11, blind_areas=2))
    rclient = fakeredis.FakeRedis()
    sub = rclient.pubsub()
    sub.subscribe(EVENTS_CHANNEL)
    sub.get_message(timeout=0.1)
    proc = TelematicsProcessor(world.engine, rclient)
    late = feed(world.engine, proc, fixes, world.vehicle_id)
    assert late > 0  # blind-area resends and reordered fixes arrived late
    end = max(x.time for x in fixes)
    proc.tick(end + timedelta(seconds=5))

    start_q, end_q = _iso(track.samples[0].time - timedelta(hours=1)), _iso(end + timedelta(1))
    q = {"from": start_q, "to": end_q}
    trips = c.get(f"/api/vehicles/{world.vehicle_id}/trips", params=q, headers=h).json()
    truth = []
    for tr in track.trips:  # a 120 s dwell is shorter than a stop: merged into one trip
        if truth and (tr.start - truth[-1][1]).total_seconds() < 300:
            truth[-1] = (truth[-1][0], tr.end, truth[-1][2] + tr.distance_m)
        else:
            truth.append((tr.start, tr.end, tr.distance_m))
    assert len(trips) == len(truth) == 3
    for got, (t0, t1, dist) in zip(trips, truth, strict=True):
        assert abs(_dt(got["start_time"]) - t0.timestamp()) <= TOL_S
        assert abs(_dt(got["end_time"]) - t1.timestamp()) <= TOL_S
        assert abs(got["distance_m"] - dist) <= 0.02 * dist + 20
        assert got["closed"] and not got["provisional"] and not got["odometer_flag"]
        assert got["odometer_m"] is not None
    # Incremental (with late fixes) equals a batch segmentation of everything.
    batch = DiameterSegmenter().segment(fixes)
    assert [(_dt(t["start_time"]), round(t["distance_m"], 3)) for t in trips] == \
        [(t.start.timestamp(), round(t.distance_m, 3)) for t in batch.trips]
    stops = c.get(f"/api/vehicles/{world.vehicle_id}/stops", params=q, headers=h).json()
    assert len(stops) == 4 and stops[-1]["provisional"] and not stops[0]["provisional"]

    # Recomputation of any period gives the same trips.
    r = c.post(f"/api/vehicles/{world.vehicle_id}/recompute", params=q, headers=h)
    assert r.status_code == 200 and r.json()["trips"] == 3
    again = c.get(f"/api/vehicles/{world.vehicle_id}/trips", params=q, headers=h).json()
    assert [(t["start_time"], round(t["distance_m"], 3)) for t in again] == \
        [(t["start_time"], round(t["distance_m"], 3)) for t in trips]
    mid = {"from": _iso(track.trips[1].start), "to": _iso(track.trips[1].end)}
    assert c.post(f"/api/vehicles/{world.vehicle_id}/recompute", params=mid,
                  headers=h).status_code == 200
    again = c.get(f"/api/vehicles/{world.vehicle_id}/trips", params=q, headers=h).json()
    assert [t["start_time"] for t in again] == [t["start_time"] for t in trips]
    assert c.post(f"/api/vehicles/{world.vehicle_id}/recompute", params=q,
                  headers=world.staff_own).status_code == 403

    # Mileage from stored positions against truth and the terminal odometer.
    m = c.get(f"/api/vehicles/{world.vehicle_id}/mileage", params=q, headers=h).json()
    assert abs(m["total_km"] * 1000 - track.distance_m) <= 0.02 * track.distance_m
    assert not m["odometer"]["flagged"] and m["trips"] == 3
    assert sum(m["per_day_km"].values()) == pytest.approx(m["total_km"], abs=0.01)

    # Events: entering/leaving the compound (debounced: once each), its speed limit.
    ev = c.get("/api/events", params={"vehicle_id": world.vehicle_id}, headers=h).json()
    kinds = sorted(e["type"] for e in ev["items"])
    assert kinds.count("geofence_enter") == 1 and kinds.count("geofence_exit") == 1
    assert "overspeed" in kinds
    over = [e for e in ev["items"] if e["type"] == "overspeed"]
    assert all(e["threshold"] == 20.0 and e["fence_id"] == fence_id for e in over)
    only = c.get("/api/events", params={"type": "geofence_enter"}, headers=h).json()
    assert only["total"] == 1
    assert c.get("/api/events", headers=world.staff_other).json()["total"] == 0
    assert c.get("/api/events", headers=world.staff_own).json()["total"] == ev["total"]
    assert c.get("/api/events", params={"type": "nope"}, headers=h).status_code == 422
    published = []
    while (msg := sub.get_message(timeout=0.05)) is not None:
        published.append(json.loads(msg["data"])["type"])
    assert sorted(published) == kinds

    # Terminal offline: a periodic check, stored once however often it runs.
    off = check_offline(world.engine, end + timedelta(minutes=30))
    assert [e.type for e in off] == ["offline"]
    assert check_offline(world.engine, end + timedelta(minutes=40)) == []

    # Replay: GeoJSON with times, simplified, GPX and CSV.
    tq = {"from": _iso(track.samples[0].time), "to": _iso(end + timedelta(seconds=1))}
    feat = c.get(f"/api/vehicles/{world.vehicle_id}/track", params=tq, headers=h).json()
    n = feat["properties"]["count"]
    assert feat["geometry"]["type"] == "LineString" and n == len(feat["properties"]["times"])
    assert n == len({x.time for x in fixes if x.valid})
    simple = c.get(f"/api/vehicles/{world.vehicle_id}/track", params={**tq, "simplify": 10},
                   headers=h).json()
    assert 10 < simple["properties"]["count"] < n / 2
    gpx = c.get(f"/api/vehicles/{world.vehicle_id}/track", params={**tq, "format": "gpx"},
                headers=h)
    assert gpx.headers["content-type"].startswith("application/gpx+xml")
    assert gpx.text.count("<trkpt") == n
    csv_ = c.get(f"/api/vehicles/{world.vehicle_id}/track", params={**tq, "format": "csv"},
                 headers=h)
    assert csv_.text.splitlines()[0] == "time,lat,lon,speed_kmh,course"
    assert len(csv_.text.splitlines()) == n + 1
    assert c.get(f"/api/vehicles/{world.vehicle_id}/track", params=tq,
                 headers=world.staff_other).status_code == 404

    # Reports per vehicle/day and department/month.
    rep = c.get("/api/reports/mileage", params={**q, "group": "vehicle", "period": "day"},
                headers=h).json()
    assert len(rep) == 1 and rep[0]["trips"] == 3
    assert rep[0]["km"] == pytest.approx(sum(t["distance_m"] for t in trips) / 1000, abs=0.01)
    assert rep[0]["events"]["geofence_enter"] == 1 and rep[0]["parked_s"] > 0
    dep = c.get("/api/reports/mileage", params={**q, "group": "department", "period": "month"},
                headers=h).json()
    assert dep[0]["group"] == "测试局" and dep[0]["km"] == rep[0]["km"]
    assert c.get("/api/reports/mileage", params=q, headers=world.staff_other).json() == []

    # Fence CRUD: update, delete; the processor rebuilds its index.
    upd = {**compound, "properties": {**compound["properties"], "name": "大院"}}
    r = c.put(f"/api/geofences/{fence_id}", json=upd, headers=h)
    assert r.status_code == 200 and r.json()["properties"]["name"] == "大院"
    assert c.delete(f"/api/geofences/{fence_id}", headers=h).status_code == 204
    assert c.get(f"/api/geofences/{fence_id}", headers=h).status_code == 404


def _dt(s: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def test_parked_drift_on_fence_boundary_does_not_flap(world: World) -> None:
    """A car parked on a fence's edge for two hours: drift must not flap enter/exit."""
    garage = city().place("garage-central")
    edge = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [
        garage.lon, garage.lat + 0.0009]}, "properties": {"name": "边界", "radius_m": 100}}
    assert world.client.post("/api/geofences", json=edge, headers=world.admin).status_code == 201
    track = simulate_parked(garage.lat, garage.lon, start_time(hour=9), 7200)
    fixes = observe(track, NoiseConfig(sigma_m=8.0, drift_sigma_m=15.0, seed=4))
    proc = TelematicsProcessor(world.engine)
    feed(world.engine, proc, fixes, world.vehicle_id, batch=500)
    ev = world.client.get("/api/events", params={"vehicle_id": world.vehicle_id},
                          headers=world.admin).json()
    fence_events = [e for e in ev["items"] if e["type"].startswith("geofence")]
    assert len(fence_events) <= 2
    q = {"from": _iso(fixes[0].time - timedelta(hours=1)), "to": _iso(fixes[-1].time)}
    trips = world.client.get(f"/api/vehicles/{world.vehicle_id}/trips", params=q,
                             headers=world.admin).json()
    assert trips == []  # drift is no trip


def test_late_blind_area_after_restart_resegments(world: World) -> None:
    """A blind area delivered after a processor restart: stored, re-segmented, no events."""
    track = day_track(2)
    fixes = sorted(observe(track, NoiseConfig(sigma_m=5.0, seed=2)), key=lambda x: x.time)
    hole = [x for x in fixes if track.trips[1].start <= x.time <= track.trips[1].end]
    live = [x for x in fixes if x not in hole]
    proc = TelematicsProcessor(world.engine)
    feed(world.engine, proc, live, world.vehicle_id)
    restarted = TelematicsProcessor(world.engine)  # in-memory state lost
    for x in hole:
        x.extras["batch"] = True
    late = feed(world.engine, restarted, hole, world.vehicle_id, batch=1000)
    assert late == len(hole)
    restarted.tick(fixes[-1].time + timedelta(seconds=5))
    q = {"from": _iso(fixes[0].time - timedelta(hours=1)),
         "to": _iso(fixes[-1].time + timedelta(hours=1))}
    trips = world.client.get(f"/api/vehicles/{world.vehicle_id}/trips", params=q,
                             headers=world.admin).json()
    batch = DiameterSegmenter().segment(fixes)
    assert [(_dt(t["start_time"]), round(t["distance_m"], 3)) for t in trips] == \
        [(t.start.timestamp(), round(t.distance_m, 3)) for t in batch.trips]
    assert len(trips) == 3


def test_holiday_calendar_api(world: World) -> None:
    c = world.client
    r = c.put("/api/holidays/2026-10-01", json={"name": "国庆节"}, headers=world.admin)
    assert r.status_code == 200 and r.json() == {"day": "2026-10-01", "name": "国庆节",
                                                  "workday": False}
    assert c.put("/api/holidays/2026-10-11", json={"name": "调休", "workday": True},
                 headers=world.staff_own).status_code == 403
    assert [h["day"] for h in c.get("/api/holidays", params={"year": 2026},
                                    headers=world.staff_own).json()] == ["2026-10-01"]
    assert c.delete("/api/holidays/2026-10-01", headers=world.admin).status_code == 204
