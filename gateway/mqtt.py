"""NMEA over MQTT (paho-mqtt 2): subscribe, decode, filter, hand on — then acknowledge.

QoS 1 with a persistent session: the broker keeps what arrives while the gateway is down.
Messages are acknowledged by hand (``manual_ack``) only after their fixes are in the Redis
stream, so a crash anywhere before that makes the broker redeliver: at-least-once end to end,
with duplicates removed by the (terminal, time) key downstream.

Messages are batched (up to ``batch`` or ``linger_s``) so one Redis round trip carries many.

Subscription (``subscription``):

* ``single`` (default): one gateway, an ordinary subscription to ``gongche/t/+/nmea`` in its
  persistent session. Mosquitto persists it, so a broker restart loses nothing: messages
  published before the gateway is back are queued for its session.
* ``shared``: ``$share/gateway/gongche/t/+/nmea``, several gateway processes split the load.
  Mosquitto 2.0 does *not* restore shared subscriptions from its persistence file, so what
  terminals publish between a broker restart and the gateways' re-subscription is dropped
  (``tests/reliability``). Use it only on a broker that keeps them (EMQX) or with the
  gateways stopped before the broker is restarted.

Why not the other ways to get rid of that loss: re-subscribing "before terminals publish"
cannot be guaranteed (terminals reconnect on their own schedule, often faster than the
gateway); a newer Mosquitto is not in Debian bookworm (what the Makefile installs); and
partitioning explicit per-terminal topics across gateways leaves a window in which a newly
registered terminal has no subscriber. One gateway process already outruns the writer's
share of two cores; scale further with EMQX and ``shared``.

The receive path is paho's client with three things changed for a flood of small QoS 1
messages (:class:`_BatchClient`): the socket is read 64 KiB at a time instead of three
``recv`` calls per packet, a PUBLISH becomes a plain tuple instead of an ``MQTTMessage`` (whose
``MQTTMessageInfo`` builds a ``threading.Condition`` per message), and everything read in one
burst is handed to the worker thread at once. The worker acknowledges a whole batch with one
write (the PUBACKs back to back) after the batch is in the stream.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from sqlalchemy.exc import SQLAlchemyError

from fleet.logging import get_logger
from gateway.ingest import Ingest

try:  # paho ≥ 2.2: the packet decoder on its own (else: paho's MQTTMessage path)
    from paho.mqtt._packet import decode_publish as _decode_publish
except ImportError:  # pragma: no cover - older paho
    _decode_publish = None

log = get_logger(__name__)

TOPIC = "gongche/t/+/nmea"
SHARED_TOPIC = "$share/gateway/" + TOPIC
Subscription = Literal["single", "shared"]

_READ_SIZE = 65536
_PUBACK = 0x40
_PUBACK_HEAD = b"\x40\x02"  # PUBACK, remaining length 2 (packet id); short form in MQTT 5 too

# (connection generation, packet id, QoS, topic bytes, payload bytes)
Received = tuple[int, int, int, bytes, bytes]


def terminal_from_topic(topic: str | bytes) -> str | None:
    """``gongche/t/{terminal_id}/nmea`` → terminal_id (None for anything else)."""
    if isinstance(topic, bytes):
        try:
            topic = topic.decode("utf-8")
        except UnicodeDecodeError:
            return None
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "gongche" and parts[1] == "t" and parts[3] == "nmea":
        return parts[2] or None
    return None


def subscription_topic(subscription: Subscription) -> str:
    if subscription == "single":
        return TOPIC
    if subscription == "shared":
        return SHARED_TOPIC
    raise ValueError(f"unknown MQTT subscription mode {subscription!r}")


@dataclass
class MqttConfig:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    protocol: str = "3.1.1"
    subscription: Subscription = "single"
    client_id: str = ""
    batch: int = 500
    linger_s: float = 0.02
    keepalive: int = 30


class _BatchClient(mqtt.Client):
    """paho's client, reading bursts of QoS 1 PUBLISHes cheaply (see the module's notes).

    Only the receive path's private hooks are overridden (``_sock_recv``, ``loop_read``,
    ``_handle_publish``); connecting, keepalive, reconnecting and sending stay paho's.
    ``deliver`` is called on the network thread with everything one read burst brought.
    """

    def __init__(self, *args: Any, deliver: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deliver = deliver
        self._rbuf = b""
        self._rpos = 0
        self._burst: list[Received] = []
        self._gen_lock = threading.Lock()
        self.generation = 0  # +1 per connection: packet ids are only valid on their own

    # --- receive ---------------------------------------------------------------------------
    def reconnect(self) -> mqtt.MQTTErrorCode:
        with self._gen_lock:  # acks of an older connection are never sent on this one
            self.generation += 1
        self._rbuf, self._rpos = b"", 0
        return super().reconnect()

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            data = super()._sock_recv(max(bufsize, _READ_SIZE))  # b"" = closed, as before
            if len(data) <= bufsize:
                self._rbuf, self._rpos = b"", 0
                return data
            self._rbuf, self._rpos = data, bufsize
            return data[:bufsize]
        self._rpos = pos + bufsize
        return buf[pos : pos + bufsize]

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read every packet the socket has (the broker's in-flight window bounds it)."""
        try:
            while True:
                if self._sock is None:
                    return mqtt.MQTTErrorCode.MQTT_ERR_NO_CONN
                rc = self._packet_read()
                if rc > 0:
                    return self._loop_rc_handle(rc)
                if rc == mqtt.MQTTErrorCode.MQTT_ERR_AGAIN and self._rpos >= len(self._rbuf):
                    return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            if self._burst:
                burst, self._burst = self._burst, []
                self._deliver(burst)

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        header = self._in_packet["command"]
        if _decode_publish is None or (header & 0x06) != 0x02:  # not QoS 1: paho's own path
            return super()._handle_publish()
        p = _decode_publish(header, self._in_packet["packet"], self._protocol)
        self._burst.append((self.generation, p.mid, 1, p.topic, bytes(p.payload)))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def take_message(self, msg: mqtt.MQTTMessage) -> None:
        """paho's path (QoS 0/2, older paho): the same tuple, from ``on_message``."""
        self._burst.append((self.generation, msg.mid, msg.qos, msg._topic, msg.payload))

    # --- acknowledge -----------------------------------------------------------------------
    def ack_batch(self, received: list[Received]) -> None:
        """PUBACK (PUBCOMP for QoS 2) for ``received``: QoS 1 in one write."""
        with self._gen_lock:
            gen = self.generation
            mids = [r[1] for r in received if r[2] == 1 and r[0] == gen]
            if mids:
                packet = b"".join([_PUBACK_HEAD + m.to_bytes(2, "big") for m in mids])
                self._packet_queue(_PUBACK, packet, 0, 0)
        for r in received:
            if r[2] == 2 and r[0] == gen:
                self.ack(r[1], 2)


class MqttIngest:
    """The MQTT side of the gateway. ``start()`` connects; ``stop()`` flushes and leaves."""

    def __init__(self, config: MqttConfig, ingest: Ingest) -> None:
        self.config = config
        self.ingest = ingest
        self.client_id = config.client_id or f"gongche-gw-{socket.gethostname()}"
        self.topic = subscription_topic(config.subscription)
        v5 = config.protocol == "5"
        self.client = _BatchClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False, manual_ack=True, deliver=self._on_burst,
        )
        if config.username:
            self.client.username_pw_set(config.username, config.password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        # bursts (lists); their total is bounded by the broker's in-flight window
        self._queue: queue.Queue[list[Received]] = queue.Queue(maxsize=10_000)
        self._carry: list[Received] = []  # the rest of a burst larger than a batch
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

    def stop(self, timeout: float = 10.0, leave: bool | None = None) -> None:
        """Stop taking, flush and acknowledge what was taken, disconnect.

        ``leave`` (default: for ``shared`` only) unsubscribes first. ``shared`` must leave the
        group — a persistent session that stays subscribed to ``$share/gateway/...`` keeps
        receiving its share of messages while nobody reads them. ``single`` stays subscribed,
        so the broker queues for the session while the gateway is down (a restart or deploy
        loses nothing); leave only when this gateway is retired for good (or in tests). After
        a crash the same client id resumes the session and its queue, so give every gateway
        instance a stable id.
        """
        if leave is None:
            leave = self.config.subscription == "shared"
        if leave and self.connected.is_set():
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
        log.info("mqtt_connected", host=self.config.host, port=self.config.port,
                 topic=self.topic)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            log.error("mqtt_subscribe_refused", topic=self.topic, reason=str(reasons))
            return
        self.connected.set()  # connected *and* subscribed: from now on nothing is missed

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("mqtt_disconnected", reason=str(reason))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.client.take_message(msg)

    def _on_burst(self, burst: list[Received]) -> None:
        self._queue.put(burst)  # blocks when full: back-pressure onto the broker

    # --- batching worker ---------------------------------------------------------------------
    def _drain(self) -> None:
        while not (self._stop.is_set() and self._queue.empty() and not self._carry):
            batch = self._take_batch()
            if batch:
                self._handle(batch)

    def _take_batch(self) -> list[Received]:
        """Up to ``batch`` messages: what the last burst left over, else what arrives within
        ``linger_s`` of the first. A burst can be the broker's whole in-flight window; it is
        cut to ``batch`` so each batch (and its latency) stays bounded."""
        size = self.config.batch
        if self._carry:
            batch, self._carry = self._carry, []
        else:
            try:
                batch = self._queue.get(timeout=0.1)
            except queue.Empty:
                return []
        deadline = time.monotonic() + self.config.linger_s
        while len(batch) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch += self._queue.get(timeout=left)
            except queue.Empty:
                break
        if len(batch) > size:
            batch, self._carry = batch[:size], batch[size:]
        return batch

    def _handle(self, batch: list[Received]) -> None:
        routed = []
        for _gen, _mid, _qos, topic, payload in batch:
            terminal = terminal_from_topic(topic)
            if terminal is None:
                log.info("mqtt_topic_ignored", topic=repr(topic)[:120])
                continue
            while True:
                try:
                    routed += self.ingest.route_nmea(terminal, payload)
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
        self.client.ack_batch(batch)  # only now: the fixes are in the stream
        self.handled += len(batch)
