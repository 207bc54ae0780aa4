"""Simulated terminals → Mosquitto (project config, ACL) → gateway → Redis → writer → DB."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
import redis
from sqlalchemy import Engine, text

from fleet.fix import Fix
from fleet.settings import Settings
from gateway.directory import TerminalDirectory
from gateway.ingest import Ingest
from gateway.mqtt import MqttConfig, MqttIngest, terminal_from_topic
from gateway.sink import RedisSink
from simulators.noise import fix_to_nmea
from telematics.writer import StreamWriter
from tests.pipeline.conftest import Fleet
from tests.services import Mosquitto

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def broker(mqtt_server: Mosquitto) -> Mosquitto:
    for tid in ("N1", "N2", "U1"):
        mqtt_server.users[tid] = f"secret-{tid}"
    mqtt_server.reload()
    return mqtt_server


def terminal_client(broker: Mosquitto, tid: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"term-{tid}-{time.time_ns()}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(tid, broker.users[tid])
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def payload(tid: str, i: int) -> str:
    fix = Fix(tid, T0 + timedelta(seconds=i), 30.66 + i * 1e-4, 104.06 + i * 5e-5,
              speed_kmh=36.0, course=45.0, altitude_m=500.0, hdop=0.9, satellites=12)
    return "\r\n".join(fix_to_nmea(fix, talker="BD" if i % 2 else "GN")) + "\r\n"


@pytest.fixture
def gateway(broker: Mosquitto, engine: Engine, redis_url: str) -> Iterator[MqttIngest]:
    client = redis.Redis.from_url(redis_url)
    ingest = Ingest(TerminalDirectory(engine, ttl_s=0.5), RedisSink(client))
    gw = MqttIngest(MqttConfig("127.0.0.1", broker.port, "gateway", broker.users["gateway"],
                               client_id="gw-test"), ingest).start()  # stable id: resumes
    assert gw.connected.wait(10)
    yield gw
    gw.stop(leave=True)  # its persistent session must not queue other tests' traffic
    client.close()


def stored(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT terminal_id, count(*) FROM positions "
                                 "GROUP BY terminal_id")).all()
    return {t: int(n) for t, n in rows}


def wait_for(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_topic_parsing() -> None:
    assert terminal_from_topic("gongche/t/N1/nmea") == "N1"
    assert terminal_from_topic("gongche/t//nmea") is None
    assert terminal_from_topic("gongche/t/N1/status") is None


def test_every_fix_arrives_exactly_once(fleet: Fleet, gateway: MqttIngest, broker: Mosquitto,
                                        engine: Engine, redis_url: str,
                                        settings: Settings) -> None:
    n = 150
    clients = {tid: terminal_client(broker, tid) for tid in ("N1", "N2", "U1")}
    for i in range(n):
        for tid in ("N1", "N2"):
            clients[tid].publish(f"gongche/t/{tid}/nmea", payload(tid, i), qos=1)
    # the same epochs again (a terminal resending after reconnect) and garbage in between
    for i in range(0, n, 3):
        clients["N1"].publish("gongche/t/N1/nmea", payload("N1", i), qos=1)
    clients["N1"].publish("gongche/t/N1/nmea", b"$GNRMC,garbage*00\r\n\xff\xfe", qos=1)
    # an unbound terminal is authenticated by the broker but dropped by the gateway
    clients["U1"].publish("gongche/t/U1/nmea", payload("U1", 0), qos=1).wait_for_publish(5)
    for c in clients.values():
        c.loop_stop()
        c.disconnect()

    writer = StreamWriter(redis.Redis.from_url(redis_url), engine, block_ms=100)
    writer.ensure_group()
    assert wait_for(lambda: (writer.drain() or True) and stored(engine) == {"N1": n, "N2": n})
    with engine.connect() as conn:
        row = conn.execute(text("SELECT vehicle_id, speed_kmh, satellites, valid FROM positions "
                                "WHERE terminal_id='N2' ORDER BY time LIMIT 1")).one()
    assert row.vehicle_id == fleet.vehicles[1]
    assert abs(row.speed_kmh - 36.0) < 0.05 and row.satellites == 12 and row.valid
    # and through the API, as a user would see it: each epoch exactly once, none missing
    from fastapi.testclient import TestClient
    from sqlalchemy.orm import Session

    from fleet.app import create_app
    from fleet.models import Department, Role
    from tests import factories as f

    with Session(engine) as db:
        admin = f.user(db, Role.admin, db.query(Department).filter_by(code="pipe").one())
        db.commit()
        db.refresh(admin)
    with TestClient(create_app(settings, engine=engine)) as http:
        login = f.login(http, admin)
        for tid, vid in (("N1", fleet.vehicles[0]), ("N2", fleet.vehicles[1])):
            got = http.get(f"/api/vehicles/{vid}/positions", headers=login.headers,
                           params={"from": (T0 - timedelta(minutes=1)).isoformat(),
                                   "to": (T0 + timedelta(hours=1)).isoformat()}).json()
            times = [p["time"] for p in got]
            assert len(times) == len(set(times)) == n, tid
            assert all(p["terminal_id"] == tid for p in got)


def test_terminal_cannot_publish_as_another(fleet: Fleet, gateway: MqttIngest,
                                            broker: Mosquitto, engine: Engine,
                                            redis_url: str) -> None:
    """The broker ACL refuses N1 publishing under N2's topic; N1's own topic works."""
    c = terminal_client(broker, "N1")
    c.publish("gongche/t/N2/nmea", payload("N2", 0), qos=1).wait_for_publish(5)
    c.publish("gongche/t/N1/nmea", payload("N1", 0), qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()
    writer = StreamWriter(redis.Redis.from_url(redis_url), engine, block_ms=100)
    writer.ensure_group()
    assert wait_for(lambda: (writer.drain() or True) and stored(engine).get("N1") == 1)
    time.sleep(0.5)
    writer.drain()
    assert stored(engine) == {"N1": 1}


def test_wrong_password_is_refused_by_the_broker(broker: Mosquitto) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set("N1", "wrong-password")
    results = []
    c.on_connect = lambda *a: results.append(a[3])
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert wait_for(lambda: bool(results), 5)
    c.loop_stop()
    assert results[0].is_failure


def test_mqtt5_gateway(fleet: Fleet, broker: Mosquitto, engine: Engine, redis_url: str) -> None:
    """MQTT 5 is a setting: the same pipeline over a v5 session."""
    client = redis.Redis.from_url(redis_url)
    ingest = Ingest(TerminalDirectory(engine), RedisSink(client))
    gw = MqttIngest(MqttConfig("127.0.0.1", broker.port, "gateway", broker.users["gateway"],
                               protocol="5", client_id="gw-test-v5"), ingest).start()
    try:
        assert gw.connected.wait(10)
        c = terminal_client(broker, "N2")
        for i in range(20):
            c.publish("gongche/t/N2/nmea", payload("N2", i), qos=1).wait_for_publish(5)
        c.loop_stop()
        c.disconnect()
        writer = StreamWriter(client, engine, block_ms=100)
        writer.ensure_group()
        assert wait_for(lambda: (writer.drain() or True) and stored(engine) == {"N2": 20})
    finally:
        gw.stop(leave=True)
        client.close()


def test_filters_from_settings_reject_and_count(fleet: Fleet, engine: Engine,
                                                redis_url: str) -> None:
    from fleet.settings import Settings
    from gateway.runner import filter_chain
    from tests.conftest import SECRET

    chain = filter_chain(Settings(mode="test", secret_key=SECRET, filter_max_hdop=2.0,
                                  filter_future_s=60))
    ingest = Ingest(TerminalDirectory(engine), RedisSink(redis.Redis.from_url(redis_url)),
                    chain)
    bad_hdop = Fix("N1", T0, 30.6, 104.0, hdop=5.0)
    future = Fix("N1", datetime.now(UTC) + timedelta(minutes=10), 30.6, 104.0, hdop=1.0)
    good = Fix("N1", T0 + timedelta(seconds=1), 30.6, 104.0, hdop=1.0)
    text = "".join("\r\n".join(fix_to_nmea(f)) + "\r\n" for f in (bad_hdop, future, good))
    routed = ingest.route_nmea("N1", text)
    assert [r.fix.time for r in routed] == [good.time]
    assert chain.counts == {"accuracy": 1, "future": 1}
    assert ingest.route_nmea("U1", text) == []  # unbound terminal: dropped


def test_rejected_fixes_kept_for_audit_when_configured(fleet: Fleet, engine: Engine,
                                                      redis_url: str) -> None:
    from gateway.ingest import RejectedAudit

    client = redis.Redis.from_url(redis_url)
    ingest = Ingest(TerminalDirectory(engine), RedisSink(client),
                    keep_rejected=RejectedAudit(100, client))
    zero = Fix("N1", T0, 0.0, 0.0, hdop=1.0)
    good = Fix("N1", T0 + timedelta(seconds=1), 30.6, 104.0, hdop=1.0)
    text = "".join("\r\n".join(fix_to_nmea(f)) + "\r\n" for f in (zero, good))
    assert len(ingest.route_nmea("N1", text)) == 1
    kept = client.xrange(RejectedAudit.STREAM)
    assert len(kept) == 1 and kept[0][1][b"reason"] == b"zero"
