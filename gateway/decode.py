"""Text-in, JSON-out decoding behind ``gongche decode nmea|jt808`` (解码调试工具).

Both functions yield one JSON-able dict per Fix (keys: terminal_id, time, lat, lon, speed_kmh,
course, altitude_m, hdop, satellites, valid, alarm, status, extras), one per non-location
JT/T 808 message (``{"message": "0x0100", ...fields}``) and one per error (``{"error": ...}``).
They never raise on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fleet.fix import Fix

from .jt808.codec import FrameError, FrameSplitter, Packet, Reassembler
from .jt808.messages import (
    BatchLocation,
    Location,
    MessageError,
    decode_packet,
    fixes_from_message,
    message_fields,
)
from .nmea import NmeaAssembler

FIX_KEYS = (
    "terminal_id", "time", "lat", "lon", "speed_kmh", "course", "altitude_m", "hdop",
    "satellites", "valid", "alarm", "status", "extras",
)

_HEX_NOISE = re.compile(r"[\s:,_-]+|0x", re.IGNORECASE)


def fix_to_dict(fix: Fix) -> dict[str, Any]:
    """The decode-output form of a Fix (``Fix.to_json`` without ``protocol``)."""
    data = fix.to_json()
    return {key: data[key] for key in FIX_KEYS}


def decode_nmea_text(text: str, terminal_id: str = "nmea") -> Iterator[dict[str, Any]]:
    """Decode an NMEA log (one or more sentences per line) into fix and error dicts."""
    asm = NmeaAssembler(terminal_id)
    for line_no, line in enumerate(text.splitlines(), start=1):
        fixes, errors = asm.feed_line(line, line_no)
        for err in errors:
            yield err.to_dict()
        for fix in fixes:
            yield fix_to_dict(fix)
    for fix in asm.flush():
        yield fix_to_dict(fix)


def _hex_bytes(line: str) -> bytes:
    cleaned = _HEX_NOISE.sub("", line)
    if len(cleaned) % 2:
        raise ValueError("odd number of hex digits")
    return bytes.fromhex(cleaned)


def _packet_dicts(packet: Packet, line_no: int) -> Iterator[dict[str, Any]]:
    header = packet.header
    if header.encryption:
        yield {"error": "encrypted body not supported", "line": line_no,
               "message": f"0x{header.msg_id:04x}"}
        return
    try:
        msg = decode_packet(packet)
    except MessageError as exc:
        yield {"error": str(exc), "line": line_no, "message": f"0x{header.msg_id:04x}"}
        return
    if isinstance(msg, Location | BatchLocation):
        for fix in fixes_from_message(msg, header.phone):
            yield fix_to_dict(fix)
        return
    yield {
        "message": f"0x{header.msg_id:04x}",
        "phone": header.phone,
        "serial": header.serial,
        "version": header.version,
        **message_fields(msg),
    }


def decode_jt808_text(text: str) -> Iterator[dict[str, Any]]:
    """Decode JT/T 808 frames given as hex (spaces allowed), one frame or a stream per line.

    A line without any ``7e`` flag is taken as one frame without its flags. Subpackages are
    reassembled across lines.
    """
    reassembler = Reassembler()
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = _hex_bytes(line)
        except ValueError as exc:
            yield {"error": f"bad hex: {exc}", "line": line_no}
            continue
        if 0x7E not in data:
            data = b"\x7e" + data + b"\x7e"
        splitter = FrameSplitter(max_frame_size=max(4096, len(data)))
        results: list[Packet | FrameError] = list(splitter.feed_with_errors(data))
        leftover = splitter.flush()
        if leftover is not None:
            results.append(leftover)
        for item in results:
            if isinstance(item, FrameError):
                yield {"error": str(item), "reason": item.reason, "line": line_no}
                continue
            whole = reassembler.add(item)
            if whole is not None:
                yield from _packet_dicts(whole, line_no)
