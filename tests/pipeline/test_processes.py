"""`gongche gateway` and `gongche worker` as real processes: they work and stop cleanly on
SIGTERM (after flushing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import redis
from sqlalchemy import Engine, text

from fleet.fix import Fix
from fleet.localservices import Mosquitto, free_port, wait_port
from fleet.settings import Settings
from gateway.sink import RedisSink, Routed
from simulators.terminals import Jt808Terminal
from tests.pipeline.conftest import Fleet


def _env(settings: Settings, redis_url: str, mqtt: Mosquitto, **extra: str) -> dict[str, str]:
    return {**os.environ, "GONGCHE_MODE": "test", "GONGCHE_SECRET_KEY": settings.secret_key,
            "GONGCHE_DATABASE_URL": settings.database_url, "GONGCHE_REDIS_URL": redis_url,
            "GONGCHE_MQTT_URL": mqtt.url("gateway"), **extra}


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM positions")).scalar() or 0)


def test_worker_stores_and_stops_on_sigterm(fleet: Fleet, settings: Settings, engine: Engine,
                                            redis_url: str, mqtt_server: Mosquitto) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    RedisSink(redis.Redis.from_url(redis_url)).put(
        [Routed(Fix("N1", t0 + timedelta(seconds=i), 30.6, 104.0), fleet.vehicles[0])
         for i in range(50)])
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", "worker"],
                            env=_env(settings, redis_url, mqtt_server),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _count(engine) < 50:
            time.sleep(0.2)
        assert _count(engine) == 50
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
        mqtt_server.forget_session("gw-process-test")  # it would queue later tests' traffic
    assert proc.returncode == 0, out[-2000:]
    assert "writer_stopped" in out


def test_gateway_serves_jt808_and_stops_on_sigterm(fleet: Fleet, settings: Settings,
                                                   redis_url: str,
                                                   mqtt_server: Mosquitto) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fleet.cli", "gateway",
                             "--jt808-port", str(port), "--client-id", "gw-process-test"],
                            env=_env(settings, redis_url, mqtt_server, GONGCHE_HOST="127.0.0.1"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=60)
        t = Jt808Terminal("013800000001", "127.0.0.1", port)
        t.register()
        assert t.authenticate() == 0
        assert t.send(Fix("x", datetime.now(UTC) - timedelta(minutes=1), 30.6, 104.0)) == 0
        t.close()
        assert redis.Redis.from_url(redis_url).xlen("fixes") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, out[-2000:]
    assert "gateway_stopped" in out
