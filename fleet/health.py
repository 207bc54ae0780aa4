"""Readiness checks of the services gongche depends on (database, store, broker)."""

from __future__ import annotations

import socket
import struct
import time

import redis
from sqlalchemy import Engine

from fleet.db import ping


def check_database(engine: Engine) -> str:
    ping(engine)
    return "ok"


def check_redis(client: redis.Redis) -> str:
    if not client.ping():
        raise RuntimeError("no PONG")
    return "ok"


def _mqtt_connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = struct.pack("!H", len(client_id)) + client_id.encode()
    if username is not None:
        flags |= 0x80
        payload += struct.pack("!H", len(username)) + username.encode()
        if password is not None:
            flags |= 0x40
            payload += struct.pack("!H", len(password)) + password.encode()
    variable = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", 10)
    body = variable + payload
    length, remaining = bytearray(), len(body)
    while True:  # MQTT "remaining length" varint
        byte, remaining = remaining % 128, remaining // 128
        length.append(byte | (0x80 if remaining else 0))
        if not remaining:
            break
    return bytes([0x10]) + bytes(length) + body


def check_mqtt(host: str, port: int, username: str | None, password: str | None,
               timeout: float = 2.0) -> str:
    """Open an MQTT 3.1.1 session and read CONNACK: proves the broker answers and accepts us.

    A raw CONNECT keeps the probe free of client-library threads; it is 20 lines, not a client.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_mqtt_connect_packet(f"gongche-readyz-{time.monotonic_ns()}", username,
                                          password))
        ack = sock.recv(4)
        if len(ack) < 4 or ack[0] != 0x20:
            raise RuntimeError("broker did not answer CONNACK")
        if ack[3] != 0:
            raise RuntimeError(f"broker refused the connection (return code {ack[3]})")
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return "ok"
