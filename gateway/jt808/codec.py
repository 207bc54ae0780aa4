"""JT/T 808 framing (帧): 0x7e flags, 0x7d escaping, XOR check code, message header.

Why hand-written: no maintained Python JT/T 808 library exists (the living implementations are
Java — traccar —, C# — SmallChi/JT808 — and Go — go-jt808), and the wire format is small and
fully specified by the standard, so a few hundred lines of pure Python are the right size.

Wire layout of one frame (JT/T 808-2013 §4, JT/T 808-2019 §4)::

    7e | header | body | check | 7e        (everything between the flags is escaped)

    header 2013: msg id (WORD) | body properties (WORD) | phone BCD[6]  | serial (WORD)
                 [| subpackage total (WORD) | subpackage index (WORD)]
    header 2019: msg id (WORD) | body properties (WORD) | protocol version (BYTE)
                 | phone BCD[10] | serial (WORD) [| total | index]

    body properties: bits 0-9 body length, 10-12 encryption (bit 10 = RSA), bit 13 subpackage,
                     bit 14 version flag (2019), bit 15 reserved

    check code (校验码): XOR of every byte of header and body, before escaping.
    escaping (转义): 0x7e -> 0x7d 0x02, 0x7d -> 0x7d 0x01.
"""

from __future__ import annotations

import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

FLAG = 0x7E
ESCAPE = 0x7D
MAX_BODY_LENGTH = 0x3FF  # 10 bits of body length
VERSION_2013 = 2013
VERSION_2019 = 2019

_PROPS_LENGTH_MASK = 0x03FF
_PROPS_ENCRYPTION_SHIFT = 10
_PROPS_SUBPACKAGE = 1 << 13
_PROPS_VERSION = 1 << 14


class FrameError(ValueError):
    """A frame that cannot be used; ``reason`` is a short stable token for counters."""

    def __init__(self, reason: str, detail: str = "", raw: bytes = b"") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.raw = raw


# --------------------------------------------------------------------------- escaping


def escape(data: bytes) -> bytes:
    """Apply JT/T 808 escaping (转义) to header+body+check."""
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Undo escaping; a 0x7d not followed by 0x01/0x02 is an error (not silently kept)."""
    if ESCAPE not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b != ESCAPE:
            out.append(b)
            i += 1
            continue
        if i + 1 >= n or data[i + 1] not in (0x01, 0x02):
            raise FrameError("bad_escape", f"0x7d at offset {i}")
        out.append(ESCAPE if data[i + 1] == 0x01 else FLAG)
        i += 2
    return bytes(out)


def xor_check(data: bytes) -> int:
    """The check code (校验码): XOR of all bytes."""
    c = 0
    for b in data:
        c ^= b
    return c


# --------------------------------------------------------------------------- BCD


def bcd_decode(data: bytes) -> str:
    """BCD bytes to a digit string (nibbles shown as hex, so non-BCD bytes survive)."""
    return data.hex()


def bcd_encode(digits: str, length: int) -> bytes:
    """Digit string to ``length`` BCD bytes, left-padded with zeros (手机号 / 终端手机号)."""
    if len(digits) > length * 2:
        raise ValueError(f"phone {digits!r} longer than {length * 2} digits")
    padded = digits.rjust(length * 2, "0")
    try:
        return bytes.fromhex(padded)
    except ValueError as exc:
        raise ValueError(f"phone {digits!r} is not hex/BCD digits") from exc


def phone_to_terminal_id(phone: str) -> str:
    """Normalised terminal id: the phone digits without leading zeros ("0" if all zeros).

    A 2013 terminal sends its SIM number in 12 BCD digits, a 2019 terminal in 20, so the raw
    string of the same SIM differs between versions; stripping the padding makes both the same
    id (``013511221122`` and ``00000000013511221122`` → ``13511221122``). Decoders keep the
    raw string in ``extras['phone']``.
    """
    return phone.lstrip("0") or "0"


# --------------------------------------------------------------------------- header / packet


@dataclass(frozen=True, slots=True)
class Header:
    """Message header (消息头)."""

    msg_id: int
    phone: str
    serial: int
    version: int = VERSION_2013
    protocol_version: int = 1
    encryption: int = 0
    body_length: int = 0
    subpackage_total: int = 0
    subpackage_index: int = 0

    @property
    def is_subpackage(self) -> bool:
        return self.subpackage_total > 0

    @property
    def phone_len(self) -> int:
        return 10 if self.version == VERSION_2019 else 6

    def size(self) -> int:
        return 2 + 2 + (1 if self.version == VERSION_2019 else 0) + self.phone_len + 2 + (
            4 if self.is_subpackage else 0
        )


@dataclass(frozen=True, slots=True)
class Packet:
    """One decoded frame: header and unescaped body (消息体)."""

    header: Header
    body: bytes

    @property
    def msg_id(self) -> int:
        return self.header.msg_id


def encode_header(h: Header, body_length: int) -> bytes:
    if not 0 <= body_length <= MAX_BODY_LENGTH:
        raise ValueError(f"body length {body_length} exceeds {MAX_BODY_LENGTH}")
    props = body_length | ((h.encryption & 0x7) << _PROPS_ENCRYPTION_SHIFT)
    if h.is_subpackage:
        props |= _PROPS_SUBPACKAGE
    if h.version == VERSION_2019:
        props |= _PROPS_VERSION
    out = bytearray(struct.pack(">HH", h.msg_id, props))
    if h.version == VERSION_2019:
        out.append(h.protocol_version & 0xFF)
    out += bcd_encode(h.phone, h.phone_len)
    out += struct.pack(">H", h.serial & 0xFFFF)
    if h.is_subpackage:
        out += struct.pack(">HH", h.subpackage_total, h.subpackage_index)
    return bytes(out)


def decode_header(data: bytes) -> tuple[Header, int]:
    """Parse the header at the start of ``data`` (unescaped); return it and its size."""
    if len(data) < 12:
        raise FrameError("short_frame", f"{len(data)} bytes")
    msg_id, props = struct.unpack_from(">HH", data, 0)
    is_2019 = bool(props & _PROPS_VERSION)
    pos = 4
    protocol_version = 0
    if is_2019:
        protocol_version = data[pos]
        pos += 1
    phone_len = 10 if is_2019 else 6
    need = pos + phone_len + 2 + (4 if props & _PROPS_SUBPACKAGE else 0)
    if len(data) < need:
        raise FrameError("short_frame", f"{len(data)} bytes, header needs {need}")
    phone = bcd_decode(data[pos : pos + phone_len])
    pos += phone_len
    (serial,) = struct.unpack_from(">H", data, pos)
    pos += 2
    total = index = 0
    if props & _PROPS_SUBPACKAGE:
        total, index = struct.unpack_from(">HH", data, pos)
        pos += 4
        if total == 0 or not 1 <= index <= total:
            raise FrameError("bad_subpackage", f"index {index} of {total}")
    header = Header(
        msg_id=msg_id,
        phone=phone,
        serial=serial,
        version=VERSION_2019 if is_2019 else VERSION_2013,
        protocol_version=protocol_version if is_2019 else 1,
        encryption=(props >> _PROPS_ENCRYPTION_SHIFT) & 0x7,
        body_length=props & _PROPS_LENGTH_MASK,
        subpackage_total=total,
        subpackage_index=index,
    )
    return header, pos


def encode_frame(header: Header, body: bytes) -> bytes:
    """Build one wire frame ``7e … 7e`` (body length in the header is taken from ``body``)."""
    raw = encode_header(header, len(body)) + body
    return bytes([FLAG]) + escape(raw + bytes([xor_check(raw)])) + bytes([FLAG])


def encode_frames(header: Header, body: bytes, max_body: int = MAX_BODY_LENGTH) -> list[bytes]:
    """Build the frames for one message, split into subpackages (分包) when the body is long.

    Subpackages get consecutive serial numbers starting at ``header.serial``.
    """
    if len(body) <= max_body:
        return [encode_frame(replace(header, subpackage_total=0, subpackage_index=0), body)]
    parts = [body[i : i + max_body] for i in range(0, len(body), max_body)]
    return [
        encode_frame(
            replace(
                header,
                serial=(header.serial + n) & 0xFFFF,
                subpackage_total=len(parts),
                subpackage_index=n + 1,
            ),
            part,
        )
        for n, part in enumerate(parts)
    ]


def decode_frame(frame: bytes, strict_length: bool = True) -> Packet:
    """Decode one frame (with or without the 0x7e flags) into a :class:`Packet`.

    Raises :class:`FrameError` on bad escaping, wrong check code or a header whose body length
    disagrees with the bytes present (``strict_length``).
    """
    if frame[:1] == b"\x7e":
        frame = frame[1:]
    if frame[-1:] == b"\x7e":
        frame = frame[:-1]
    raw = unescape(frame)
    if len(raw) < 13:
        raise FrameError("short_frame", f"{len(raw)} bytes", raw)
    if xor_check(raw[:-1]) != raw[-1]:
        raise FrameError(
            "bad_check", f"check 0x{raw[-1]:02x}, computed 0x{xor_check(raw[:-1]):02x}", raw
        )
    header, pos = decode_header(raw[:-1])
    body = raw[pos:-1]
    if strict_length and len(body) != header.body_length:
        raise FrameError(
            "bad_length", f"header says {header.body_length}, body has {len(body)}", raw
        )
    return Packet(header, body)


# --------------------------------------------------------------------------- stream splitter


@dataclass(slots=True)
class SplitterStats:
    """Counters of a :class:`FrameSplitter`."""

    bytes_in: int = 0
    frames: int = 0
    bad_frames: int = 0
    bad_check: int = 0
    oversize: int = 0
    garbage_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FrameSplitter:
    """Cut a TCP byte stream into frames (拆包/粘包处理).

    Every 0x7e is treated as a delimiter and each non-empty run between two flags is a
    candidate frame; since 0x7e never occurs inside an escaped frame, a half frame, garbage
    between frames or a frame with a wrong check code spoils only its own run, and the next
    good frame is decoded. Bytes before the first flag are garbage. The buffer is bounded: a run
    longer than ``max_frame_size`` is dropped (counted) and bytes are discarded up to the next
    flag.
    """

    def __init__(self, max_frame_size: int = 4096, strict_length: bool = True) -> None:
        self.max_frame_size = max_frame_size
        self.strict_length = strict_length
        self.stats = SplitterStats()
        self._buf = bytearray()
        self._synced = False  # saw a flag, so _buf holds the start of a candidate frame
        self._discarding = False

    def feed(self, data: bytes) -> list[Packet]:
        """Feed bytes; return the good frames completed by them (errors only counted)."""
        return [p for p in self.feed_with_errors(data) if isinstance(p, Packet)]

    def feed_with_errors(self, data: bytes) -> list[Packet | FrameError]:
        """Like :meth:`feed` but also return the rejected frames as :class:`FrameError`."""
        self.stats.bytes_in += len(data)
        return list(self._split(data))

    def pending(self) -> int:
        """Bytes held for an incomplete frame."""
        return len(self._buf)

    def flush(self) -> FrameError | None:
        """End of stream: report an incomplete frame, if any, and reset."""
        leftover = bytes(self._buf)
        self._buf.clear()
        self._synced = False
        self._discarding = False
        if leftover:
            self.stats.bad_frames += 1
            detail = f"{len(leftover)} bytes without end flag"
            return FrameError("incomplete_frame", detail, leftover)
        return None

    def _split(self, data: bytes) -> Iterator[Packet | FrameError]:
        start = 0
        while True:
            flag = data.find(FLAG, start)
            if flag < 0:
                self._append(data[start:])
                return
            chunk = data[start:flag]
            start = flag + 1
            result = self._close_run(chunk)
            if result is not None:
                yield result

    def _append(self, chunk: bytes) -> None:
        if not chunk:
            return
        if not self._synced or self._discarding:
            self.stats.garbage_bytes += len(chunk)
            return
        self._buf += chunk
        if len(self._buf) > self.max_frame_size:
            self.stats.oversize += 1
            self.stats.bad_frames += 1
            self.stats.garbage_bytes += len(self._buf)
            self._buf.clear()
            self._discarding = True

    def _close_run(self, chunk: bytes) -> Packet | FrameError | None:
        """A flag arrived: the bytes since the previous flag form one candidate frame."""
        was_synced = self._synced
        self._append(chunk)
        overflowed = self._discarding
        run = bytes(self._buf)
        self._buf.clear()
        self._synced, self._discarding = True, False
        if overflowed:
            return FrameError("oversize", f"frame longer than {self.max_frame_size} bytes")
        if not was_synced:
            return None
        if not run:
            return None
        try:
            packet = decode_frame(run, self.strict_length)
        except FrameError as exc:
            self.stats.bad_frames += 1
            if exc.reason == "bad_check":
                self.stats.bad_check += 1
            return exc
        self.stats.frames += 1
        return packet


# --------------------------------------------------------------------------- reassembly


@dataclass(slots=True)
class _Pending:
    total: int
    first_seen: float
    parts: dict[int, Packet]


class Reassembler:
    """Join subpackages (分包合并) keyed by phone + message id.

    Bounded: at most ``max_pending`` messages in progress (the oldest is dropped) and each
    must complete within ``timeout_s`` of its first part. A part with a different total
    restarts the message. Non-subpackaged packets pass straight through.
    """

    def __init__(
        self,
        max_pending: int = 256,
        timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.clock = clock
        self.expired = 0
        self.evicted = 0
        self._pending: OrderedDict[tuple[str, int], _Pending] = OrderedDict()

    def add(self, packet: Packet) -> Packet | None:
        """Add a packet; return the whole message once complete, else ``None``."""
        h = packet.header
        if not h.is_subpackage:
            return packet
        now = self.clock()
        self._expire(now)
        key = (h.phone, h.msg_id)
        entry = self._pending.get(key)
        if entry is None or entry.total != h.subpackage_total:
            entry = _Pending(h.subpackage_total, now, {})
            self._pending[key] = entry
            self._pending.move_to_end(key)
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
                self.evicted += 1
        entry.parts[h.subpackage_index] = packet
        if len(entry.parts) < entry.total:
            return None
        del self._pending[key]
        body = b"".join(entry.parts[i].body for i in range(1, entry.total + 1))
        last = entry.parts[entry.total].header
        whole = replace(last, body_length=len(body), subpackage_total=0, subpackage_index=0)
        return Packet(whole, body)

    def pending(self) -> int:
        return len(self._pending)

    def _expire(self, now: float) -> None:
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if now - entry.first_seen <= self.timeout_s:
                break
            del self._pending[key]
            self.expired += 1
