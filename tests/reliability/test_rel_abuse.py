"""Abuse against the running Gateway: oversized payloads, slow-loris connections, connection
floods from one address (JT/T 808) and message floods on one MQTT topic are bounded, and a
second, well-behaved terminal still gets every fix through meanwhile.

The well-behaved JT/T 808 terminal connects from 127.0.0.2 (all of 127/8 is loopback), the
abusers from 127.0.0.1, as two different addresses on a real network.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
import redis
from sqlalchemy import Engine

from fleet.fix import Fix
from fleet.settings import Settings
from gateway.jt808 import codec
from gateway.runner import Gateway
from gateway.sink import STREAM, decode_entry
from simulators.noise import fix_to_nmea
from simulators.terminals import Jt808Terminal
from tests.pipeline.conftest import Fleet, fleet  # noqa: F401  (the committed fleet fixture)
from tests.services import Mosquitto

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
PER_IP = 64  # GONGCHE_JT808_MAX_CONNECTIONS_PER_IP for these tests (default 256)


@pytest.fixture
def gw(fleet: Fleet, settings: Settings, engine: Engine, redis_url: str,  # noqa: F811
       mqtt_server: Mosquitto) -> Iterator[Gateway]:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the gateway's limits do not depend on the database backend")
    for tid in ("N1", "N2"):
        mqtt_server.users[tid] = f"secret-{tid}"
    mqtt_server.reload()
    s = settings.model_copy(update={"mqtt_url": mqtt_server.url("gateway"),
                                    "redis_url": redis_url,
                                    "jt808_max_connections_per_ip": PER_IP})
    client = redis.Redis.from_url(redis_url)
    g = Gateway(s, engine, client, mqtt_client_id="gw-abuse-test", jt808_port=0).start()
    assert g.mqtt.connected.wait(10)
    time.sleep(0.3)
    yield g
    g.stop(leave_mqtt=True)  # its persistent session must not queue later traffic
    client.close()


class GoodTerminal(Jt808Terminal):
    """A JT/T 808 terminal connecting from another loopback address."""

    def __init__(self, phone: str, port: int, source: str = "127.0.0.2") -> None:
        self.phone = phone
        self.version = 2013
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                             source_address=(source, 0))
        self.splitter = codec.FrameSplitter()
        self.serial = 0
        self.auth_code = None
        self._lock = threading.Lock()


def _fix(i: int) -> Fix:
    return Fix("x", T0 + timedelta(seconds=i), 30.6 + i * 1e-4, 104.0, speed_kmh=36.0)


def _stream_times(redis_url: str, terminal: str) -> set[datetime]:
    c = redis.Redis.from_url(redis_url)
    try:
        return {r.fix.time for r in (decode_entry(f) for _, f in c.xrange(STREAM))
                if r.fix.terminal_id == terminal}
    finally:
        c.close()


def _good_jt808_run(port: int, n: int, latencies: list[float]) -> None:
    t = GoodTerminal("13800000002", port)
    t.register()
    assert t.authenticate() == 0
    for i in range(n):
        start = time.monotonic()
        assert t.send(_fix(i)) == 0
        latencies.append(time.monotonic() - start)
    t.close()


def _mqtt(broker: Mosquitto, tid: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"abuse-{tid}-{time.time_ns()}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(tid, broker.users[tid])
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


def _wait(cond, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------- JT/T 808
def test_connection_flood_from_one_address_is_capped(gw: Gateway, redis_url: str) -> None:
    port = gw.jt808_port
    flood: list[socket.socket] = []
    try:
        for _ in range(PER_IP + 40):
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        assert _wait(lambda: gw.jt808.stats.connections_refused >= 40, 10)  # type: ignore[union-attr]
        assert gw.jt808.stats.connections_open <= PER_IP + 1  # type: ignore[union-attr]
        latencies: list[float] = []
        _good_jt808_run(port, 20, latencies)  # another address is still served
        assert max(latencies) < 2.0, latencies
    finally:
        for s in flood:
            s.close()
    assert _stream_times(redis_url, "J2") == {_fix(i).time for i in range(20)}


def test_slow_loris_connections_do_not_starve_others(gw: Gateway, redis_url: str) -> None:
    port = gw.jt808_port
    stop = threading.Event()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]

    def trickle() -> None:  # a byte at a time, a flag and never the end of a frame
        frame = b"\x7e" + b"\x02\x00" * 2000
        i = 0
        while not stop.is_set() and i < len(frame):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.send(frame[i:i + 1])
            i += 1
            stop.wait(0.05)

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    try:
        latencies: list[float] = []
        _good_jt808_run(port, 20, latencies)
        assert max(latencies) < 2.0, latencies
    finally:
        stop.set()
        th.join(5)
        for s in socks:
            s.close()
    assert _stream_times(redis_url, "J2") == {_fix(i).time for i in range(20)}


def test_oversized_frames_dropped_connection_goes_on(gw: Gateway, redis_url: str) -> None:
    port = gw.jt808_port
    bad = Jt808Terminal("013800000001", "127.0.0.1", port)
    bad.register()
    assert bad.authenticate() == 0
    for _ in range(5):  # 200 KiB between two flags, again and again
        bad.sock.sendall(b"\x7e" + b"\x11" * 200_000 + b"\x7e")
    assert bad.send(_fix(1000)) == 0  # the same connection, a good frame: decoded
    bad.close()
    latencies: list[float] = []
    _good_jt808_run(port, 10, latencies)
    assert gw.jt808.stats.frames_oversize >= 5  # type: ignore[union-attr]
    assert _fix(1000).time in _stream_times(redis_url, "J1")
    assert _stream_times(redis_url, "J2") == {_fix(i).time for i in range(10)}


# --------------------------------------------------------------------------- MQTT
def test_mqtt_flood_and_oversized_payloads_do_not_starve_others(
        gw: Gateway, mqtt_server: Mosquitto, redis_url: str) -> None:
    flooder = _mqtt(mqtt_server, "N1")
    good = _mqtt(mqtt_server, "N2")
    stop = threading.Event()
    sent = [0]

    def flood() -> None:
        junk = b"$GNRMC,junk*00\r\n" * 20  # bad sentences (each one is logged: see report)
        while not stop.is_set() and sent[0] < 3000:
            flooder.publish("gongche/t/N1/nmea", junk, qos=0)
            sent[0] += 1
            if sent[0] % 200 == 0:
                time.sleep(0.01)

    th = threading.Thread(target=flood, daemon=True)
    th.start()
    try:
        # too big for the broker (max_packet_size 64 KiB): that client is disconnected
        big = _mqtt(mqtt_server, "N1")
        big.publish("gongche/t/N1/nmea", b"$" * 200_000, qos=1)
        # just under the limit: decoded as errors, nothing else happens
        flooder.publish("gongche/t/N1/nmea", (b"$GPGGA," + b"9" * 60_000 + b"\r\n"), qos=1)
        for i in range(30):
            body = "\r\n".join(fix_to_nmea(Fix("N2", T0 + timedelta(seconds=i), 30.6 + i * 1e-4,
                                               104.0, speed_kmh=36.0))) + "\r\n"
            good.publish("gongche/t/N2/nmea", body, qos=1)
        want = {T0 + timedelta(seconds=i) for i in range(30)}
        assert _wait(lambda: _stream_times(redis_url, "N2") == want, 30)
        assert gw.mqtt._queue.qsize() <= gw.mqtt._queue.maxsize  # bounded hand-over queue
    finally:
        stop.set()
        th.join(10)
        for c in (flooder, good):
            c.loop_stop()
            c.disconnect()
        with contextlib.suppress(Exception):
            big.loop_stop()
    assert sent[0] > 100
    assert gw.mqtt.connected.is_set()  # the gateway itself was never thrown off
