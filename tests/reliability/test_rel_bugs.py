"""Minimal, deterministic reproductions of the data-loss bugs the fault scenario found.

Each is marked ``xfail(strict=True)`` naming the bug: when it is fixed the test passes, the
strict xfail fails, and the marker must be removed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest

from bench.faults import start_mosquitto, stop_mosquitto
from fleet.fix import Fix
from fleet.models import TerminalProtocol
from gateway.directory import Entry
from gateway.ingest import Ingest
from gateway.mqtt import MqttConfig, MqttIngest, subscription_topic
from gateway.sink import Routed
from simulators.noise import fix_to_nmea
from tests.services import Mosquitto

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


class _Directory:
    """A terminal directory whose database is down for the first ``failures`` lookups."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.entry_nmea = Entry("N1", 1, TerminalProtocol.nmea_mqtt, None)
        self.entry_jt = Entry("J1", 2, TerminalProtocol.jt808, "code")

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("database is down")

    def by_id(self, terminal_id: str) -> Entry | None:
        self._maybe_fail()
        return self.entry_nmea if terminal_id == "N1" else None

    def by_phone(self, phone: str) -> Entry | None:
        self._maybe_fail()
        return self.entry_jt if phone.lstrip("0") == "13800000001" else None


class _Sink:
    """A stream that is down for the first ``failures`` puts."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.items: list[Routed] = []

    def put(self, items: Sequence[Routed]) -> None:
        if self.failures > 0 and items:
            self.failures -= 1
            raise ConnectionError("Redis is down")
        self.items += items


def test_jt808_resend_after_sink_failure_is_stored() -> None:
    sink = _Sink(failures=1)
    ingest = Ingest(_Directory(), sink)  # type: ignore[arg-type]
    fix = Fix("013800000001", T0, 30.6, 104.0, speed_kmh=30.0)
    with pytest.raises(ConnectionError):
        ingest.put_jt808([fix])  # the server answers result 1: "resend"
    ingest.put_jt808([fix])  # the terminal's resend after reconnecting
    assert [i.fix.time for i in sink.items] == [T0]


def test_mqtt_message_not_acked_when_directory_lookup_fails() -> None:
    sink = _Sink()
    ingest = Ingest(_Directory(failures=1), sink)  # type: ignore[arg-type]
    gw = MqttIngest(MqttConfig("127.0.0.1", 1, client_id="bug-repro"), ingest)
    acked: list[int] = []
    gw.client.ack_batch = lambda batch: acked.extend(r[1] for r in batch)  # type: ignore[method-assign]
    payload = ("\r\n".join(fix_to_nmea(Fix("N1", T0, 30.6, 104.0, speed_kmh=30.0)))
               + "\r\n").encode()
    msg = (gw.client.generation, 7, 1, b"gongche/t/N1/nmea", payload)
    worker = threading.Thread(target=gw._handle, args=([msg],), daemon=True)
    worker.start()
    worker.join(5)
    gw._stop.set()
    worker.join(5)
    # acknowledged only once its fix is in the stream — or not at all (redelivered later)
    assert not acked or [i.fix.time for i in sink.items] == [T0]


# Was a strict xfail: with ``$share/gateway/...`` Mosquitto 2.0.11 does not restore the
# subscription from its persistence file, so what terminals publish after a broker restart and
# before the gateway re-subscribes is dropped. The gateway's default is now an ordinary
# subscription in its persistent session (gateway/mqtt.py explains the choice), which
# Mosquitto restores: the same sequence loses nothing.
def test_mosquitto_restart_keeps_messages_for_the_gateway_session() -> None:
    mq = Mosquitto()
    mq.users["N1"] = "pw-N1"
    mq.start()
    got: list[bytes] = []
    try:
        def gateway_client() -> mqtt.Client:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-shared-repro",
                            protocol=mqtt.MQTTv311, clean_session=False)
            c.username_pw_set("gateway", mq.users["gateway"])
            c.on_message = lambda _c, _u, m: got.append(m.payload)
            c.connect("127.0.0.1", mq.port)
            c.loop_start()
            return c

        gw = gateway_client()
        gw.subscribe(subscription_topic(MqttConfig("", 0).subscription), qos=1)
        time.sleep(0.5)
        gw.loop_stop()  # the gateway goes away without unsubscribing (crash)
        gw.socket().close()
        time.sleep(0.5)
        stop_mosquitto(mq)  # a clean restart: Mosquitto saves its persistence file
        start_mosquitto(mq)
        term = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="term-N1-repro",
                           protocol=mqtt.MQTTv311, clean_session=False)
        term.username_pw_set("N1", "pw-N1")
        term.connect("127.0.0.1", mq.port)
        term.loop_start()
        for i in range(3):
            term.publish("gongche/t/N1/nmea", f"m{i}", qos=1).wait_for_publish(5)
        term.loop_stop()
        gw2 = gateway_client()  # the gateway comes back with the same client id
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        gw2.loop_stop()
    finally:
        mq.stop()
    assert got == [b"m0", b"m1", b"m2"]
