"""JT/T 808 terminals → gateway (TCP) → Redis → writer → DB, with registration and auth."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from sqlalchemy import Engine, text

from fleet.fix import Fix
from fleet.settings import Settings
from gateway.runner import Gateway
from simulators.terminals import Jt808Terminal
from telematics.writer import StreamWriter
from tests.pipeline.conftest import Fleet
from tests.services import Mosquitto

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


@pytest.fixture
def gateway(settings: Settings, engine: Engine, redis_url: str,
            mqtt_server: Mosquitto) -> Iterator[Gateway]:
    s = settings.model_copy(update={"mqtt_url": mqtt_server.url("gateway"), "redis_url": redis_url})
    client = redis.Redis.from_url(redis_url)
    gw = Gateway(s, engine, client, mqtt_client_id="gw-jt808-test", jt808_port=0).start()
    yield gw
    gw.stop(leave_mqtt=True)  # its persistent session must not queue other tests' traffic
    client.close()


def track(n: int, start: datetime = T0) -> list[Fix]:
    return [Fix("x", start + timedelta(seconds=i), 30.6 + i * 1e-4, 104.0 - i * 1e-4,
                speed_kmh=42.5, course=270, altitude_m=480, satellites=9,
                extras={"mileage_km": 1000 + i * 0.1}) for i in range(n)]


def stored(engine: Engine, redis_url: str) -> dict[str, int]:
    writer = StreamWriter(redis.Redis.from_url(redis_url), engine, block_ms=50)
    writer.ensure_group()
    writer.drain()
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT terminal_id, count(*) FROM positions "
                                 "GROUP BY terminal_id")).all()
    return {t: int(n) for t, n in rows}


def test_register_authenticate_report(fleet: Fleet, gateway: Gateway, engine: Engine,
                                      redis_url: str) -> None:
    t = Jt808Terminal("013800000001", "127.0.0.1", gateway.jt808_port)
    code = t.register()
    assert code and t.authenticate() == 0
    fixes = track(30)
    for f in fixes[:10]:
        assert t.send(f) == 0
    assert t.send_batch(fixes[10:20]) == 0
    assert t.send_batch(fixes[20:], blind_area=True) == 0
    assert t.send_batch(fixes[:15], blind_area=True) == 0  # a re-upload: no duplicates
    t.close()
    assert stored(engine, redis_url) == {"J1": 30}
    with engine.connect() as conn:
        row = conn.execute(text("SELECT vehicle_id, speed_kmh, lon, extras FROM positions "
                                "WHERE terminal_id='J1' ORDER BY time DESC LIMIT 1")).one()
    assert row.vehicle_id == fleet.vehicles[2]
    assert abs(row.speed_kmh - 42.5) < 1e-6 and abs(row.lon - fixes[-1].lon) < 1e-6
    extras = row.extras if isinstance(row.extras, dict) else __import__("json").loads(row.extras)
    assert extras["blind_area"] is True and abs(extras["mileage_km"] - 1002.9) < 1e-6


def test_2019_terminal_and_auth_code_shared_across_connections(
        fleet: Fleet, gateway: Gateway, engine: Engine, redis_url: str) -> None:
    first = Jt808Terminal("13800000002", "127.0.0.1", gateway.jt808_port, version=2019)
    code = first.register()
    first.close()
    again = Jt808Terminal("13800000002", "127.0.0.1", gateway.jt808_port, version=2019)
    assert again.authenticate(code) == 0  # a reconnect authenticates without registering
    assert again.send(track(1)[0]) == 0
    again.close()
    assert stored(engine, redis_url) == {"J2": 1}


def test_unauthenticated_unknown_and_wrong_code_are_refused(
        fleet: Fleet, gateway: Gateway, engine: Engine, redis_url: str) -> None:
    t = Jt808Terminal("013800000001", "127.0.0.1", gateway.jt808_port)
    assert t.send(track(1)[0]) == 1  # location before authentication
    t.register()
    assert t.authenticate("not-the-code") != 0
    assert t.send(track(1)[0]) == 1
    t.close()
    stranger = Jt808Terminal("019999999999", "127.0.0.1", gateway.jt808_port)
    with pytest.raises(PermissionError):
        stranger.register()
    stranger.close()
    time.sleep(0.2)
    assert stored(engine, redis_url) == {}
    assert gateway.jt808 is not None and gateway.jt808.stats.as_dict()
