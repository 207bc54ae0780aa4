"""Asyncio TCP server for JT/T 808 terminals (JT/T 808 接入网关).

One :class:`Jt808Server` serves many connections. Per connection it splits frames, joins
subpackages, answers every message with the right serial numbers and passes location fixes
to a :class:`FixSink`. What it needs from outside is two small protocols:

* :class:`TerminalRegistry` — registration (终端注册) and authentication (终端鉴权); the
  gateway wires a database-backed one, tests use :class:`InMemoryRegistry`;
* :class:`FixSink` — ``async put(fixes)``; the gateway wires the Redis stream writer.

Rules: a connection must authenticate before anything but registration/authentication is
accepted — other messages (locations, heartbeats, …) are answered with result 1 and counted
(``refused_unauthenticated``). A connection is bound to the phone it authenticated with.
Unknown messages get result 3. Limits: ``max_frame_size``; ``idle_timeout`` — a connection that
sends no *useful* frame (a valid, accepted message) for that long is closed, which also ends
slow-loris connections trickling garbage; ``max_connections_per_ip``; ``max_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Protocol, TypeVar, runtime_checkable

from fleet.fix import Fix

from .codec import FrameSplitter, Header, Packet, Reassembler, encode_frame
from .messages import (
    REG_NO_TERMINAL,
    REG_OK,
    RESULT_FAIL,
    RESULT_NOT_SUPPORTED,
    RESULT_OK,
    RESULT_WRONG,
    Authentication,
    BatchLocation,
    GeneralReply,
    Heartbeat,
    Location,
    Logout,
    Message,
    MessageError,
    Registration,
    RegistrationReply,
    TerminalGeneralReply,
    Unknown,
    decode_packet,
    encode_body,
    fixes_from_message,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- interfaces


@runtime_checkable
class TerminalRegistry(Protocol):
    """What the server needs to know about terminals.

    Methods may be plain or ``async`` (the server awaits an awaitable result), so a registry
    backed by a database can do I/O.
    """

    def register(self, phone: str, info: Registration) -> str | None | Awaitable[str | None]:
        """Register a terminal; return its auth code (鉴权码) or ``None`` to refuse."""
        ...

    def authenticate(self, phone: str, code: str) -> bool | Awaitable[bool]:
        """Is ``code`` the auth code of ``phone``?"""
        ...


class FixSink(Protocol):
    """Where accepted fixes go (the Redis stream writer in production)."""

    async def put(self, fixes: list[Fix]) -> None: ...


class InMemoryRegistry:
    """A registry for tests and demos: every registration succeeds with a random code.

    ``allowed`` (if given) restricts registration to those phones; ``codes`` pre-seeds auth
    codes so a terminal can authenticate without registering.
    """

    def __init__(
        self, allowed: set[str] | None = None, codes: dict[str, str] | None = None
    ) -> None:
        self.allowed = allowed
        self.codes: dict[str, str] = dict(codes or {})
        self.registrations: dict[str, Registration] = {}

    def register(self, phone: str, info: Registration) -> str | None:
        if self.allowed is not None and phone not in self.allowed:
            return None
        code = self.codes.get(phone) or secrets.token_hex(8)
        self.codes[phone] = code
        self.registrations[phone] = info
        return code

    def authenticate(self, phone: str, code: str) -> bool:
        expected = self.codes.get(phone)
        return expected is not None and secrets.compare_digest(expected, code)

    def unregister(self, phone: str) -> None:
        self.codes.pop(phone, None)
        self.registrations.pop(phone, None)


class ListSink:
    """A sink collecting fixes in memory (tests, CLI)."""

    def __init__(self) -> None:
        self.fixes: list[Fix] = []
        self.event = asyncio.Event()

    async def put(self, fixes: list[Fix]) -> None:
        self.fixes.extend(fixes)
        self.event.set()


# --------------------------------------------------------------------------- stats


@dataclass(slots=True)
class ServerStats:
    """Counters (others export them to Prometheus)."""

    connections_total: int = 0
    connections_open: int = 0
    connections_refused: int = 0
    idle_closed: int = 0
    bytes_in: int = 0
    frames_in: int = 0
    frames_bad: int = 0
    frames_oversize: int = 0
    messages_bad: int = 0
    registrations: int = 0
    registrations_refused: int = 0
    auth_ok: int = 0
    auth_failed: int = 0
    refused_unauthenticated: int = 0
    heartbeats: int = 0
    logouts: int = 0
    locations: int = 0
    fixes: int = 0
    unsupported: int = 0
    subpackages: int = 0
    sink_errors: int = 0
    handler_errors: int = 0
    encrypted: int = 0
    replies_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# --------------------------------------------------------------------------- connection


@dataclass(slots=True)
class _Connection:
    peer: str
    writer: asyncio.StreamWriter
    splitter: FrameSplitter
    reassembler: Reassembler
    phone: str | None = None  # set once authenticated
    serial: int = 0
    last_useful: float = field(default_factory=time.monotonic)

    def next_serial(self) -> int:
        s = self.serial
        self.serial = (self.serial + 1) & 0xFFFF
        return s


T = TypeVar("T")


async def _maybe_await(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class Jt808Server:
    """JT/T 808 TCP server; ``await start()``, then ``await stop()``.

    ``port=0`` binds an ephemeral port; read the real one from :attr:`port` after start.
    """

    def __init__(
        self,
        host: str,
        port: int,
        registry: TerminalRegistry,
        sink: FixSink,
        *,
        max_frame_size: int = 4096,
        idle_timeout: float = 180.0,
        max_connections_per_ip: int = 256,
        max_connections: int = 20_000,
        reassembly_timeout: float = 60.0,
        read_size: int = 4096,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.registry = registry
        self.sink = sink
        self.max_frame_size = max_frame_size
        self.idle_timeout = idle_timeout
        self.max_connections_per_ip = max_connections_per_ip
        self.max_connections = max_connections
        self.reassembly_timeout = reassembly_timeout
        self.read_size = read_size
        self.stats = ServerStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_ip: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, self._requested_port)

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop accepting, close every connection and wait for their handlers."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Jt808Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- connections ----------------------------------------------------------------------
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer_info = writer.get_extra_info("peername")
        ip = str(peer_info[0]) if peer_info else "?"
        if (
            self._per_ip.get(ip, 0) >= self.max_connections_per_ip
            or self.stats.connections_open >= self.max_connections
        ):
            self.stats.connections_refused += 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        if task is not None:
            self._tasks.add(task)
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self.stats.connections_total += 1
        self.stats.connections_open += 1
        conn = _Connection(
            peer=f"{ip}:{peer_info[1] if peer_info else '?'}",
            writer=writer,
            splitter=FrameSplitter(self.max_frame_size),
            reassembler=Reassembler(timeout_s=self.reassembly_timeout),
        )
        try:
            await self._serve(reader, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug or a misbehaving registry/sink must not kill the server
            self.stats.handler_errors += 1
            log.exception("jt808 connection handler failed for %s", conn.peer)
        finally:
            self.stats.connections_open -= 1
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        while True:
            remaining = conn.last_useful + self.idle_timeout - time.monotonic()
            if remaining <= 0:
                self.stats.idle_closed += 1
                log.info("jt808 idle close %s", conn.peer)
                return
            try:
                data = await asyncio.wait_for(reader.read(self.read_size), timeout=remaining)
            except TimeoutError:
                continue  # the loop head decides (and counts) the close
            if not data:
                return
            self.stats.bytes_in += len(data)
            before = conn.splitter.stats.bad_frames, conn.splitter.stats.oversize
            packets = conn.splitter.feed(data)
            self.stats.frames_bad += conn.splitter.stats.bad_frames - before[0]
            self.stats.frames_oversize += conn.splitter.stats.oversize - before[1]
            for packet in packets:
                self.stats.frames_in += 1
                if await self._on_packet(conn, packet):
                    conn.last_useful = time.monotonic()
                if conn.writer.is_closing():
                    return

    # -- messages -------------------------------------------------------------------------
    async def _on_packet(self, conn: _Connection, packet: Packet) -> bool:
        """Handle one frame; return whether it was useful (resets the idle timer)."""
        header = packet.header
        if header.is_subpackage:
            self.stats.subpackages += 1
            whole = conn.reassembler.add(packet)
            if whole is None:
                # Acknowledge each part; the assembled message is answered on its last part.
                if not self._allowed(conn, header):
                    self.stats.refused_unauthenticated += 1
                    await self._reply(conn, header, RESULT_FAIL)
                    return False
                await self._reply(conn, header, RESULT_OK)
                return True
            packet = whole
            header = packet.header
        if header.encryption:
            # RSA bodies (加密) need a key exchange (0x0A00/0x8A00) this gateway does not do.
            self.stats.encrypted += 1
            await self._reply(conn, header, RESULT_NOT_SUPPORTED)
            return False
        try:
            msg = decode_packet(packet)
        except MessageError as exc:
            self.stats.messages_bad += 1
            log.info("jt808 bad message 0x%04x from %s: %s", header.msg_id, conn.peer, exc)
            await self._reply(conn, header, RESULT_WRONG)
            return False
        return await self._dispatch(conn, header, msg)

    def _allowed(self, conn: _Connection, header: Header) -> bool:
        return conn.phone is not None and conn.phone == header.phone

    async def _dispatch(self, conn: _Connection, header: Header, msg: Message) -> bool:
        if isinstance(msg, Registration):
            return await self._on_register(conn, header, msg)
        if isinstance(msg, Authentication):
            return await self._on_auth(conn, header, msg)
        if not self._allowed(conn, header):
            self.stats.refused_unauthenticated += 1
            if not isinstance(msg, TerminalGeneralReply):
                await self._reply(conn, header, RESULT_FAIL)
            return False
        if isinstance(msg, Location | BatchLocation):
            return await self._on_location(conn, header, msg)
        if isinstance(msg, Heartbeat):
            self.stats.heartbeats += 1
            await self._reply(conn, header, RESULT_OK)
            return True
        if isinstance(msg, Logout):
            return await self._on_logout(conn, header)
        if isinstance(msg, TerminalGeneralReply):
            return True  # a terminal answering one of our commands; nothing to reply
        self.stats.unsupported += 1
        await self._reply(conn, header, RESULT_NOT_SUPPORTED)
        return isinstance(msg, Unknown)

    async def _on_register(self, conn: _Connection, header: Header, msg: Registration) -> bool:
        code = await _maybe_await(self.registry.register(header.phone, msg))
        if code is None:
            self.stats.registrations_refused += 1
            reply = RegistrationReply(header.serial, REG_NO_TERMINAL)
        else:
            self.stats.registrations += 1
            reply = RegistrationReply(header.serial, REG_OK, code)
        await self._send(conn, header, reply)
        return code is not None

    async def _on_auth(self, conn: _Connection, header: Header, msg: Authentication) -> bool:
        ok = bool(await _maybe_await(self.registry.authenticate(header.phone, msg.auth_code)))
        if ok:
            self.stats.auth_ok += 1
            conn.phone = header.phone
        else:
            self.stats.auth_failed += 1
        await self._reply(conn, header, RESULT_OK if ok else RESULT_FAIL)
        return ok

    async def _on_location(
        self, conn: _Connection, header: Header, msg: Location | BatchLocation
    ) -> bool:
        fixes = fixes_from_message(msg, header.phone)
        self.stats.locations += 1
        try:
            await self.sink.put(fixes)
        except Exception:  # the sink is someone else's code; the terminal must resend
            self.stats.sink_errors += 1
            log.exception("jt808 sink failed for %s", conn.peer)
            await self._reply(conn, header, RESULT_FAIL)
            return False
        self.stats.fixes += len(fixes)
        await self._reply(conn, header, RESULT_OK)
        return True

    async def _on_logout(self, conn: _Connection, header: Header) -> bool:
        self.stats.logouts += 1
        unregister = getattr(self.registry, "unregister", None)
        if callable(unregister):
            await _maybe_await(unregister(header.phone))
        conn.phone = None
        await self._reply(conn, header, RESULT_OK)
        return True

    # -- replies --------------------------------------------------------------------------
    async def _reply(self, conn: _Connection, header: Header, result: int) -> None:
        await self._send(conn, header, GeneralReply(header.serial, header.msg_id, result))

    async def _send(
        self, conn: _Connection, to: Header, msg: GeneralReply | RegistrationReply
    ) -> None:
        """Send a platform message in the terminal's own header version and phone."""
        header = Header(
            msg_id=msg.MSG_ID,
            phone=to.phone,
            serial=conn.next_serial(),
            version=to.version,
            protocol_version=to.protocol_version,
        )
        conn.writer.write(encode_frame(header, encode_body(msg, to.version)))
        self.stats.replies_sent += 1
        await conn.writer.drain()
