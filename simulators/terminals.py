"""Simulated terminals that speak the real protocols: NMEA over MQTT and JT/T 808 over TCP.

They send Fixes produced by the track simulator (``simulators.tracks`` + ``simulators.noise``);
``simulators.run.drive`` paces them (real time for the demo, as fast as the peer takes them
for tests and benchmarks).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Sequence
from datetime import UTC

import paho.mqtt.client as mqtt

from fleet.fix import Fix
from gateway.jt808 import codec, messages
from gateway.jt808.messages import (
    STATUS_ACC,
    STATUS_LOCATED,
    STATUS_SOUTH,
    STATUS_WEST,
    Authentication,
    BatchLocation,
    Location,
    Registration,
)
from simulators.noise import fix_to_nmea


# --------------------------------------------------------------------------- NMEA over MQTT
class MqttTerminal:
    """One terminal publishing RMC+GGA epochs to ``gongche/t/{id}/nmea`` at QoS 1."""

    def __init__(self, terminal_id: str, host: str, port: int, password: str | None = None,
                 talker: str = "GN") -> None:
        self.terminal_id = terminal_id
        self.topic = f"gongche/t/{terminal_id}/nmea"
        self.talker = talker
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"terminal-{terminal_id}", protocol=mqtt.MQTTv311,
                                  clean_session=False)
        if password is not None:
            self.client.username_pw_set(terminal_id, password)
        self.client.max_inflight_messages_set(200)
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def send(self, fix: Fix) -> mqtt.MQTTMessageInfo:
        body = "\r\n".join(fix_to_nmea(fix, self.talker)) + "\r\n"
        return self.client.publish(self.topic, body, qos=1)

    def send_raw(self, payload: bytes | str) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.topic, payload, qos=1)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# --------------------------------------------------------------------------- JT/T 808
def fix_to_location(fix: Fix, acc_on: bool = True) -> Location:
    """A 0x0200 body for a Fix (mileage from ``extras['mileage_km']`` when present)."""
    status = (STATUS_LOCATED if fix.valid else 0) | (STATUS_ACC if acc_on else 0)
    status |= STATUS_SOUTH if fix.lat < 0 else 0
    status |= STATUS_WEST if fix.lon < 0 else 0
    items: list[tuple[int, bytes]] = []
    if "mileage_km" in fix.extras:
        items.append((0x01, struct.pack(">I", int(round(fix.extras["mileage_km"] * 10)))))
    if fix.satellites is not None:
        items.append((0x31, struct.pack(">B", min(fix.satellites, 255))))
    return Location(alarm=fix.alarm, status=status, lat_raw=int(round(abs(fix.lat) * 1e6)),
                    lon_raw=int(round(abs(fix.lon) * 1e6)),
                    altitude_m=int(round(fix.altitude_m or 0)),
                    speed_raw=int(round(fix.speed_kmh * 10)), direction=int(fix.course) % 360,
                    time=fix.time.astimezone(UTC), items=items)


class Jt808Terminal:
    """A JT/T 808 terminal: registers (0x0100), authenticates (0x0102), reports positions.

    Blocking socket client; ``send`` waits for the platform's 0x8001 so a test knows the
    gateway has the fix in the stream when it returns.
    """

    def __init__(self, phone: str, host: str, port: int, version: int = 2013,
                 timeout: float = 10.0) -> None:
        self.phone = phone
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.splitter = codec.FrameSplitter()
        self.serial = 0
        self.auth_code: str | None = None
        self._lock = threading.Lock()

    def _header(self, msg_id: int) -> codec.Header:
        self.serial = (self.serial + 1) & 0xFFFF
        return codec.Header(msg_id=msg_id, phone=self.phone, serial=self.serial,
                            version=self.version)

    def request(self, msg: messages.Message) -> messages.Message:
        """Send one message and return the platform's reply to it."""
        with self._lock:
            header = self._header(messages.message_id(msg))
            self.sock.sendall(codec.encode_frame(header, messages.encode_body(msg, self.version)))
            return self._reply(header.serial)

    def _reply(self, serial: int) -> messages.Message:
        while True:
            for packet in self.splitter.feed(self._recv()):
                reply = messages.decode_packet(packet)
                if getattr(reply, "reply_serial", None) == serial:
                    return reply

    def _recv(self) -> bytes:
        data = self.sock.recv(4096)
        if not data:
            raise ConnectionError("platform closed the connection")
        return data

    def register(self, plate: str = "川A00000") -> str:
        reply = self.request(Registration(province=51, city=100, maker_id="GCSIM",
                                          model="SIM-1", device_id=self.phone[-7:],
                                          plate_colour=1, plate=plate))
        result = getattr(reply, "result", 1)
        if result != 0:
            raise PermissionError(f"registration refused (result {result})")
        self.auth_code = reply.auth_code  # type: ignore[union-attr]
        return self.auth_code

    def authenticate(self, code: str | None = None) -> int:
        reply = self.request(Authentication(auth_code=code or self.auth_code or "",
                                            imei="860000000000000", software_version="1.0"))
        return int(getattr(reply, "result", 1))

    def send(self, fix: Fix) -> int:
        return int(getattr(self.request(fix_to_location(fix)), "result", 1))

    def send_batch(self, fixes: Sequence[Fix], blind_area: bool = False) -> int:
        msg = BatchLocation(batch_type=1 if blind_area else 0,
                            locations=[fix_to_location(f) for f in fixes])
        return int(getattr(self.request(msg), "result", 1))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
