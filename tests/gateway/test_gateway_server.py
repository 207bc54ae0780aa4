"""Jt808Server over real TCP on 127.0.0.1 (ephemeral port), driven by a tiny terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.jt808.codec import FrameSplitter, Header, encode_frame, encode_frames
from gateway.jt808.messages import (
    RESULT_FAIL,
    RESULT_NOT_SUPPORTED,
    RESULT_OK,
    Authentication,
    BatchLocation,
    GeneralReply,
    Heartbeat,
    Location,
    Logout,
    Message,
    Registration,
    RegistrationReply,
    Unknown,
    decode_packet,
    encode_body,
    message_id,
)
from gateway.jt808.server import InMemoryRegistry, Jt808Server, ListSink, TerminalRegistry

PHONE = "013511221122"
T = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)


def location(second: int = 0) -> Location:
    return Location(0, 2, 39_900_000, 116_400_000, 50, 360, 90, T.replace(second=second),
                    [(0x01, (1234).to_bytes(4, "big")), (0x31, b"\x0c")])


class Terminal:
    """A minimal JT/T 808 terminal speaking to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 version: int = 2013, phone: str = PHONE) -> None:
        self.reader, self.writer = reader, writer
        self.version, self.phone = version, phone
        self.serial = 0
        self.splitter = FrameSplitter()
        self.inbox: list[tuple[Header, Message]] = []

    async def send(self, msg: Message, max_body: int = 1023) -> int:
        """Send a message; return the serial of its (last) frame."""
        header = Header(message_id(msg), self.phone, self.serial, self.version)
        frames = encode_frames(header, encode_body(msg, self.version), max_body)
        self.serial += len(frames)
        self.writer.write(b"".join(frames))
        await self.writer.drain()
        return self.serial - 1

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 2.0) -> tuple[Header, Message]:
        while not self.inbox:
            data = await asyncio.wait_for(self.reader.read(4096), timeout)
            if not data:
                raise ConnectionError("closed")
            self.inbox += [(p.header, decode_packet(p)) for p in self.splitter.feed(data)]
        return self.inbox.pop(0)

    async def reply(self, timeout: float = 2.0) -> GeneralReply:
        _, msg = await self.recv(timeout)
        assert isinstance(msg, GeneralReply)
        return msg

    async def login(self) -> str:
        await self.send(Registration(44, 303, "70111", "BSJ-A6", "0567872", 1, "粤B88888"))
        _, reg = await self.recv()
        assert isinstance(reg, RegistrationReply) and reg.result == 0
        serial = await self.send(Authentication(reg.auth_code))
        rep = await self.reply()
        assert (rep.reply_serial, rep.reply_id, rep.result) == (serial, 0x0102, RESULT_OK)
        return reg.auth_code


Scenario = Callable[[Jt808Server, ListSink, Callable[..., Awaitable[Terminal]]], Awaitable[None]]


def run(scenario: Scenario, registry: TerminalRegistry | None = None, **limits: Any) -> None:
    async def main() -> None:
        sink = ListSink()
        server = Jt808Server("127.0.0.1", 0, registry or InMemoryRegistry(), sink, **limits)
        await server.start()
        opened: list[asyncio.StreamWriter] = []

        async def connect(version: int = 2013, phone: str = PHONE) -> Terminal:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            opened.append(writer)
            return Terminal(reader, writer, version, phone)

        try:
            await asyncio.wait_for(scenario(server, sink, connect), 20)
        finally:
            for w in opened:
                w.close()
            await server.stop()
        assert server.stats.connections_open == 0

    asyncio.run(main())


@pytest.mark.parametrize("version", [2013, 2019])
def test_register_auth_location_ack(version: int) -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        phone = "00000000013511221122" if version == 2019 else PHONE
        term = await connect(version, phone)
        await term.login()
        serial = await term.send(location(5))
        header, rep = await term.recv()
        assert isinstance(rep, GeneralReply)
        assert (rep.reply_serial, rep.reply_id, rep.result) == (serial, 0x0200, RESULT_OK)
        assert header.version == version and header.phone == phone
        assert header.serial == 2  # platform serials: 0 reg reply, 1 auth reply, 2 this
        serial = await term.send(Heartbeat())
        rep = await term.reply()
        assert (rep.reply_serial, rep.reply_id, rep.result) == (serial, 0x0002, RESULT_OK)
        [fix] = sink.fixes
        assert fix.terminal_id == "13511221122" and fix.extras["phone"] == phone
        assert fix.time == T.replace(second=5) and fix.speed_kmh == 36.0
        assert fix.extras["mileage_km"] == 123.4 and fix.satellites == 12
        assert server.stats.fixes == 1 and server.stats.auth_ok == 1

    run(scenario)


def test_location_before_auth_refused() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        serial = await term.send(location())
        rep = await term.reply()
        assert (rep.reply_serial, rep.reply_id, rep.result) == (serial, 0x0200, RESULT_FAIL)
        assert sink.fixes == [] and server.stats.refused_unauthenticated == 1

    run(scenario)


def test_wrong_auth_code_refused() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.send(Registration(0, 0, "M", "X", "1", 1, "京A00001"))
        await term.recv()
        await term.send(Authentication("not-the-code"))
        assert (await term.reply()).result == RESULT_FAIL
        await term.send(location())
        assert (await term.reply()).result == RESULT_FAIL
        assert server.stats.auth_failed == 1 and sink.fixes == []

    run(scenario)


def test_preseeded_code_and_async_registry() -> None:
    class AsyncRegistry(InMemoryRegistry):
        async def authenticate(self, phone: str, code: str) -> bool:  # type: ignore[override]
            await asyncio.sleep(0)
            return super().authenticate(phone, code)

    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.send(Authentication("secret"))
        assert (await term.reply()).result == RESULT_OK
        other = await connect(phone="013900000000")  # not registered → refused
        await other.send(Registration(0, 0, "M", "X", "1", 1, "京A00002"))
        _, reg = await other.recv()
        assert isinstance(reg, RegistrationReply) and reg.result == 4 and reg.auth_code == ""

    run(scenario, AsyncRegistry(allowed={PHONE}, codes={PHONE: "secret"}))


def test_batch_upload_blind_area() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.login()
        serial = await term.send(BatchLocation(1, [location(1), location(2), location(3)]))
        rep = await term.reply()
        assert (rep.reply_serial, rep.reply_id, rep.result) == (serial, 0x0704, RESULT_OK)
        assert [f.time.second for f in sink.fixes] == [1, 2, 3]
        assert all(f.extras["blind_area"] is True for f in sink.fixes)

    run(scenario)


def test_multi_packet_message() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.login()
        batch = BatchLocation(0, [location(s) for s in range(20)])
        last = await term.send(batch, max_body=100)
        parts = len(encode_body(batch)) // 100 + 1
        replies = [await term.reply() for _ in range(parts)]
        assert [r.reply_serial for r in replies] == list(range(last - parts + 1, last + 1))
        assert all(r.result == RESULT_OK and r.reply_id == 0x0704 for r in replies)
        assert len(sink.fixes) == 20 and server.stats.subpackages == parts

    run(scenario)


def test_unsupported_message_result_3_and_logout() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.login()
        serial = await term.send(Unknown(0x0900, b"\x01hello"))
        rep = await term.reply()
        assert (rep.reply_serial, rep.reply_id) == (serial, 0x0900)
        assert rep.result == RESULT_NOT_SUPPORTED
        await term.send(Logout())
        assert (await term.reply()).result == RESULT_OK
        await term.send(location())
        assert (await term.reply()).result == RESULT_FAIL  # logged out: no longer authenticated

    run(scenario)


def test_half_frame_garbage_then_good_frame() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.login()
        good = encode_frame(Header(0x0200, PHONE, 77), encode_body(location(9)))
        await term.send_raw(good[:10])
        await asyncio.sleep(0.05)
        await term.send_raw(b"\x00\xffgarbage\x7d\x7d" + good)
        rep = await term.reply()
        assert (rep.reply_serial, rep.result) == (77, RESULT_OK)
        assert [f.time.second for f in sink.fixes] == [9]
        assert server.stats.frames_bad >= 1

    run(scenario)


def test_idle_timeout_closes_slow_loris() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        closed = False
        for _ in range(40):  # trickle garbage: bytes arrive, nothing useful
            try:
                await term.send_raw(b"\x01")
                await asyncio.sleep(0.05)
                if term.reader.at_eof():
                    closed = True
                    break
            except ConnectionError:
                closed = True
                break
        assert closed  # closed by the server well before 40 * 50 ms
        assert server.stats.idle_closed == 1

    run(scenario, idle_timeout=0.25)


def test_max_connections_per_ip() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        first = await connect()
        await first.login()
        second = await connect()
        data = await asyncio.wait_for(second.reader.read(100), 2)
        assert data == b"" and server.stats.connections_refused == 1
        await first.send(Heartbeat())
        assert (await first.reply()).result == RESULT_OK

    run(scenario, max_connections_per_ip=1)


def test_many_connections_and_clean_stop() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        terms = [await connect(phone=f"0139000000{i:02d}") for i in range(20)]
        await asyncio.gather(*(t.login() for t in terms))
        await asyncio.gather(*(t.send(location(i)) for i, t in enumerate(terms)))
        replies = await asyncio.gather(*(t.reply() for t in terms))
        assert all(r.result == RESULT_OK for r in replies)
        assert len(sink.fixes) == 20 and server.stats.connections_open == 20

    run(scenario)


def test_encrypted_body_not_supported() -> None:
    async def scenario(server: Jt808Server, sink: ListSink, connect: Callable[..., Awaitable[Terminal]]) -> None:  # noqa: E501
        term = await connect()
        await term.login()
        frame = encode_frame(Header(0x0200, PHONE, 50, encryption=1), encode_body(location()))
        await term.send_raw(frame)
        rep = await term.reply()
        assert (rep.reply_serial, rep.result) == (50, RESULT_NOT_SUPPORTED)
        assert sink.fixes == [] and server.stats.encrypted == 1

    run(scenario)
