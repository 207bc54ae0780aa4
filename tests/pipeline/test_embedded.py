"""The embedded defaults end to end: amqtt broker, in-process store, SpatiaLite file.

And the README's demo command itself, started as a process and asked over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from fleet import migrate
from fleet.app import create_app
from fleet.broker import EmbeddedBroker
from fleet.db import make_engine, writing
from fleet.localservices import free_port, wait_port
from fleet.settings import EMBEDDED_REDIS, Settings
from fleet.store import redis_client
from gateway.runner import Gateway
from simulators.run import SimulationSpec, register_terminals, run_simulation
from telematics.writer import StreamWriter
from tests.conftest import SECRET


def test_embedded_pipeline_every_fix_once_via_api(tmp_path: Path) -> None:
    mqtt_port = free_port()
    settings = Settings(mode="test", secret_key=SECRET, data_dir=tmp_path,
                        mqtt_url=f"embedded://127.0.0.1:{mqtt_port}", redis_url=EMBEDDED_REDIS,
                        jt808_port=free_port())
    assert settings.is_sqlite
    engine = make_engine(settings)
    migrate.upgrade(engine)
    broker = EmbeddedBroker("127.0.0.1", mqtt_port).start()
    client = redis_client(EMBEDDED_REDIS)
    client.flushall()
    spec = SimulationSpec(terminals=3, protocol="nmea", minutes=3, speedup=0, duplicate=0.05,
                          reorder=0.02, seed=5,
                          start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1))
    register_terminals(engine, spec)
    gateway = Gateway(settings, engine, client, mqtt_client_id="embedded-test").start()
    writer = StreamWriter(client, engine, block_ms=100)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        truth_file = tmp_path / "truth.json"
        summary = run_simulation(settings, spec, str(truth_file), engine=engine)
        import json

        truth = json.loads(truth_file.read_text())
        app = create_app(settings, engine=engine)
        from fastapi.testclient import TestClient

        with TestClient(app) as http:
            from sqlalchemy.orm import Session

            from fleet.models import Role
            from tests import factories as f

            with Session(writing(engine)) as db:  # the writer commits meanwhile
                from fleet.models import Department

                dep = db.query(Department).filter_by(code="simulation").one()
                admin = f.user(db, Role.admin, dep)
                db.commit()
                db.refresh(admin)
            # the session is closed first: on SQLite an open transaction holds the write lock
            login = f.login(http, admin)
            deadline = time.monotonic() + 30
            live: list[dict[str, object]] = []
            while time.monotonic() < deadline:
                live = http.get("/api/live", headers=login.headers).json()
                if len(live) == 3:
                    break
                time.sleep(0.2)
            assert {row["terminal_id"] for row in live} == set(truth["terminals"])
            start = (spec.start - timedelta(minutes=1)).isoformat()
            end = (spec.start + timedelta(minutes=10)).isoformat()
            for row in live:
                tid = str(row["terminal_id"])
                expected = {s["time"] for s in truth["terminals"][tid]["sent"]}
                got: list[dict[str, object]] = []
                while time.monotonic() < deadline:
                    got = http.get(f"/api/vehicles/{row['vehicle_id']}/positions",
                                   params={"from": start, "to": end},
                                   headers=login.headers).json()
                    if len(got) >= len(expected):
                        break
                    time.sleep(0.2)
                times = [datetime.fromisoformat(str(p["time"]).replace("Z", "+00:00"))
                         for p in got]
                assert len(times) == len(set(times)), "a fix was stored twice"
                assert {t.isoformat() for t in times} == expected, "a fix was lost"
        assert summary["fixes_sent"] >= sum(len(t["sent"]) for t in truth["terminals"].values())
    finally:
        writer.stop()
        thread.join(5)
        gateway.stop()
        broker.stop()
        engine.dispose()


@pytest.mark.slow
def test_make_demo_command_serves_health_and_vehicles(tmp_path: Path) -> None:
    """`gongche demo` (what `make demo` runs) on embedded defaults, asked over real HTTP."""
    port = free_port()
    env = {**os.environ, "GONGCHE_PORT": str(port), "GONGCHE_DATA_DIR": str(tmp_path),
           "GONGCHE_MQTT_URL": f"embedded://127.0.0.1:{free_port()}",
           "GONGCHE_JT808_PORT": str(free_port()), "GONGCHE_MODE": "demo"}
    env.pop("GONGCHE_SECRET_KEY", None)
    env.pop("GONGCHE_DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", "demo", "--terminals", "6"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=90)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        token = httpx.post(f"{base}/api/auth/token",
                           data={"username": "admin", "password": "demo"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        vehicles = httpx.get(f"{base}/api/vehicles", headers=headers).json()
        assert vehicles["total"] == 30
        deadline = time.monotonic() + 60
        live: list[object] = []
        while time.monotonic() < deadline and len(live) < 6:
            live = httpx.get(f"{base}/api/live", headers=headers).json()
            time.sleep(0.5)
        assert len(live) == 6, "simulated terminals are not driving"
        ready = httpx.get(f"{base}/readyz").json()
        assert ready["status"] == "ok", ready
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert "admin" in out and "demo" in out  # the logins were printed


def test_simulate_geojson_route_with_garbage_counts_errors_keeps_fixes(tmp_path: Path) -> None:
    """`gongche simulate --route`: a GeoJSON route, garbage and bad checksums on the wire;
    every good fix still arrives, the bad sentences are counted."""
    from gateway import metrics

    mqtt_port = free_port()
    settings = Settings(mode="test", secret_key=SECRET, data_dir=tmp_path, jt808_port=0,
                        mqtt_url=f"embedded://127.0.0.1:{mqtt_port}", redis_url=EMBEDDED_REDIS)
    engine = make_engine(settings)
    migrate.upgrade(engine)
    broker = EmbeddedBroker("127.0.0.1", mqtt_port).start()
    client = redis_client(EMBEDDED_REDIS)
    client.flushall()
    route = {"type": "LineString", "coordinates": [[104.00, 30.60], [104.02, 30.60],
                                                   [104.02, 30.62]]}
    spec = SimulationSpec(terminals=2, protocol="nmea", minutes=20, speedup=0, garbage=0.1,
                          bad_checksum=0.05, route=route, seed=9, prefix="GJ",
                          start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2))
    register_terminals(engine, spec)
    before = metrics.DECODE_ERRORS.labels("nmea-mqtt", "checksum")._value.get()
    gateway = Gateway(settings, engine, client, mqtt_client_id="route-test").start()
    try:
        run_simulation(settings, spec, str(tmp_path / "truth.json"), engine=engine)
        time.sleep(1.0)
        import json

        truth = json.loads((tmp_path / "truth.json").read_text())
        assert truth["terminals"]["GJ0001"]["distance_m"] > 3000  # the route, driven
        sent = sum(len(t["sent"]) for t in truth["terminals"].values())
        def corrupted() -> float:
            return metrics.DECODE_ERRORS.labels("nmea-mqtt", "checksum")._value.get() - before

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and client.xlen("fixes") + corrupted() < sent:
            time.sleep(0.2)
        assert corrupted() > 0
        # each corrupted RMC loses its date, so that epoch is skipped — nothing else is lost
        assert client.xlen("fixes") + corrupted() >= sent
    finally:
        gateway.stop()
        broker.stop()
        engine.dispose()
