"""NMEA over MQTT (paho-mqtt 2): subscribe, decode, filter, hand on — then acknowledge.

QoS 1 with a persistent session: the broker keeps what arrives while the gateway is down.
Messages are acknowledged by hand (``manual_ack``) only after their fixes are in the Redis
stream, so a crash anywhere before that makes the broker redeliver: at-least-once end to end,
with duplicates removed by the (terminal, time) key downstream.

Messages are batched (up to ``batch`` or ``linger_s``) so one Redis round trip carries many.
Several gateway processes share the load through ``$share/gateway/...`` on Mosquitto/EMQX.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy.exc import SQLAlchemyError

from fleet.logging import get_logger
from gateway.ingest import Ingest

log = get_logger(__name__)

TOPIC = "gongche/t/+/nmea"
SHARED_TOPIC = "$share/gateway/" + TOPIC


def terminal_from_topic(topic: str) -> str | None:
    """``gongche/t/{terminal_id}/nmea`` → terminal_id (None for anything else)."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "gongche" and parts[1] == "t" and parts[3] == "nmea":
        return parts[2] or None
    return None


@dataclass
class MqttConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    protocol: str = "3.1.1"
    shared: bool = True
    client_id: str = ""
    batch: int = 500
    linger_s: float = 0.02
    keepalive: int = 30


class MqttIngest:
    """The MQTT side of the gateway. ``start()`` connects; ``stop()`` flushes and leaves."""

    def __init__(self, config: MqttConfig, ingest: Ingest) -> None:
        self.config = config
        self.ingest = ingest
        self.client_id = config.client_id or f"gongche-gw-{socket.gethostname()}"
        self.topic = SHARED_TOPIC if config.shared else TOPIC
        v5 = config.protocol == "5"
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False, manual_ack=True,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._queue: queue.Queue[mqtt.MQTTMessage] = queue.Queue(maxsize=50_000)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._drain, name="mqtt-ingest", daemon=True)
        self.connected = threading.Event()
        self.handled = 0

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> MqttIngest:
        props = None
        if self.config.protocol == "5":
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 7 * 24 * 3600
        self._worker.start()
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive,
                                  clean_start=False if props else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                                  properties=props)
        self.client.reconnect_delay_set(0.2, 5)
        self.client.loop_start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Leave the shared group, flush what was taken, acknowledge it, disconnect.

        Unsubscribing first matters: a persistent session that stays subscribed to
        ``$share/gateway/...`` keeps receiving its share of messages while nobody reads them.
        After a crash (no unsubscribe) the same client id resumes the session and its queue,
        so give every gateway instance a stable id.
        """
        if self.connected.is_set():
            self.client.unsubscribe(self.topic)
            time.sleep(0.3)  # let the UNSUBACK and any in-flight deliveries arrive
        self._stop.set()
        self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (network thread) -------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("mqtt_connect_refused", reason=str(reason))
            return
        client.subscribe(self.topic, qos=1)
        self.connected.set()
        log.info("mqtt_connected", host=self.config.host, port=self.config.port,
                 topic=self.topic)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("mqtt_disconnected", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(msg)  # blocks when full: back-pressure onto the broker

    # --- batching worker ---------------------------------------------------------------------
    def _drain(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._take_batch()
            if batch:
                self._handle(batch)

    def _take_batch(self) -> list[mqtt.MQTTMessage]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.config.linger_s
        while len(batch) < self.config.batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _handle(self, batch: list[mqtt.MQTTMessage]) -> None:
        routed = []
        for msg in batch:
            terminal = terminal_from_topic(msg.topic)
            if terminal is None:
                continue
            while True:
                try:
                    routed += self.ingest.route_nmea(terminal, msg.payload)
                    break
                except (SQLAlchemyError, OSError) as exc:  # the directory is unreachable:
                    # transient — retry; never acknowledge a message whose fixes are not
                    # in the stream (on shutdown it stays unacked and the broker redelivers)
                    log.warning("directory_unavailable", terminal=terminal,
                                error=str(exc)[:200])
                    if self._stop.wait(0.5):
                        return
                except Exception as exc:  # a poison payload must never stop the gateway
                    log.error("nmea_payload_failed", terminal=terminal, error=str(exc)[:200])
                    break
        while not self._stop.is_set() or routed:
            try:
                self.ingest.sink.put(routed)
                break
            except Exception as exc:  # Redis down: keep the batch, retry, do not ack
                log.warning("sink_unavailable", error=str(exc)[:200])
                if self._stop.wait(0.5):
                    return  # shutting down unacknowledged: the broker redelivers
        for msg in batch:
            self.client.ack(msg.mid, msg.qos)
        self.handled += len(batch)
