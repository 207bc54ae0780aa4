"""The gateway's paho client receive path (gateway.mqtt._BatchClient), without a broker.

Bytes a broker would send arrive on a socket pair in awkward pieces; what comes out must be
exactly paho's reading of them, acknowledged in one write, never for an older connection.
"""

from __future__ import annotations

import socket
import struct

import paho.mqtt.client as mqtt
import pytest

from gateway.mqtt import Received, _BatchClient


def publish_packet(topic: bytes, payload: bytes, mid: int, qos: int = 1, dup: bool = False
                   ) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    body += payload
    header = 0x30 | (qos << 1) | (0x08 if dup else 0)
    n, length = len(body), b""
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return bytes([header]) + length + body


@pytest.fixture
def pair() -> tuple[_BatchClient, socket.socket, list[list[Received]]]:
    bursts: list[list[Received]] = []
    client = _BatchClient(mqtt.CallbackAPIVersion.VERSION2, client_id="t",
                          protocol=mqtt.MQTTv311, clean_session=False, manual_ack=True,
                          deliver=bursts.append)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours  # as after a connect: the socket paho reads and writes
    yield client, broker, bursts
    ours.close()
    broker.close()


def test_burst_of_publishes_split_anywhere(pair) -> None:  # type: ignore[no-untyped-def]
    client, broker, bursts = pair
    payloads = [b"$GNRMC,%d" % i * (1 + i % 40) for i in range(300)]  # some need 2 length bytes
    stream = b"".join(publish_packet(b"gongche/t/T%d/nmea" % (i % 7), p, i + 1)
                      for i, p in enumerate(payloads))
    got: list[Received] = []
    for cut in range(0, len(stream), 997):  # pieces that end inside headers and payloads
        broker.sendall(stream[cut:cut + 997])
        assert client.loop_read() == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS
        for burst in bursts:
            got += burst
        bursts.clear()
    assert [r[4] for r in got] == payloads
    assert [r[1] for r in got] == list(range(1, 301))
    assert {r[3] for r in got} == {b"gongche/t/T%d/nmea" % k for k in range(7)}
    assert all(r[2] == 1 and r[0] == client.generation for r in got)


def test_qos0_goes_through_paho_and_is_not_acknowledged(pair) -> None:  # type: ignore[no-untyped-def]
    client, broker, bursts = pair
    client.on_message = lambda _c, _u, m: client.take_message(m)
    broker.sendall(publish_packet(b"gongche/t/A/nmea", b"x", 0, qos=0))
    client.loop_read()
    assert [(r[2], r[4]) for r in bursts[0]] == [(0, b"x")]
    client.ack_batch(bursts[0])
    assert not client._out_packet


def test_acks_in_one_write_only_for_this_connection(pair) -> None:  # type: ignore[no-untyped-def]
    client, broker, _ = pair
    gen = client.generation
    batch: list[Received] = [(gen, 1, 1, b"t", b""), (gen, 258, 1, b"t", b""),
                             (gen - 1, 3, 1, b"t", b"")]  # from a connection since replaced
    client.ack_batch(batch)  # without a loop thread paho writes at once
    client.loop_write()
    assert broker.recv(100) == b"\x40\x02\x00\x01" + b"\x40\x02\x01\x02"


def test_closed_socket_is_a_lost_connection(pair) -> None:  # type: ignore[no-untyped-def]
    client, broker, bursts = pair
    broker.sendall(publish_packet(b"gongche/t/A/nmea", b"last", 9))
    broker.close()
    rc = client.loop_read()
    assert [r[4] for r in bursts[0]] == [b"last"]  # what arrived before the close is handed on
    assert rc != mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS or client.loop_read() != 0


def test_a_burst_larger_than_a_batch_is_cut() -> None:
    from gateway.mqtt import MqttConfig, MqttIngest

    gw = MqttIngest(MqttConfig("127.0.0.1", 1, batch=4, linger_s=0.0), ingest=None)  # type: ignore[arg-type]
    burst: list[Received] = [(0, i, 1, b"t", b"") for i in range(10)]
    gw._on_burst(burst)
    sizes = [len(gw._take_batch()) for _ in range(3)]
    assert sizes == [4, 4, 2] and not gw._carry
