"""JT/T 808 message bodies (消息体), both directions, 2013 and 2019 layouts.

Each message is a small dataclass with ``MSG_ID``; :func:`decode_body` and :func:`encode_body`
turn bodies into messages and back, so the gateway and the terminal simulators share one
codec. Location reports become :class:`fleet.fix.Fix` through :func:`location_to_fix`.

Strings are GBK (the standard's character set, a superset of GB2312); fixed-width string
fields are padded with 0x00 on the right and trimmed of 0x00 and blanks when read.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

from fleet.fix import Fix

from .codec import VERSION_2019, Packet, phone_to_terminal_id

BEIJING = timezone(timedelta(hours=8))  # BCD times are GMT+8 (北京时间)

# General reply results (通用应答结果)
RESULT_OK = 0
RESULT_FAIL = 1
RESULT_WRONG = 2
RESULT_NOT_SUPPORTED = 3
RESULT_ALARM_CONFIRM = 4

# Registration reply results (注册应答结果)
REG_OK = 0
REG_VEHICLE_REGISTERED = 1
REG_NO_VEHICLE = 2
REG_TERMINAL_REGISTERED = 3
REG_NO_TERMINAL = 4

# Status bits (状态位)
STATUS_ACC = 1 << 0
STATUS_LOCATED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3

LOCATION_BASE_LEN = 28


class MessageError(ValueError):
    """A body that does not match its message layout."""


# --------------------------------------------------------------------------- helpers


def _gbk(data: bytes) -> str:
    return data.strip(b"\x00 ").decode("gbk", errors="replace").strip("\x00 ")


def _fixed(text: str, size: int) -> bytes:
    raw = text.encode("gbk")
    if len(raw) > size:
        raise ValueError(f"{text!r} longer than {size} bytes")
    return raw.ljust(size, b"\x00")


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) < size:
        raise MessageError(f"{what}: body has {len(body)} bytes, needs {size}")


def bcd_time_to_utc(raw: bytes) -> datetime:
    """BCD ``YYMMDDhhmmss`` in GMT+8 to an aware UTC datetime (时间, 北京时间 → UTC)."""
    text = raw.hex()
    if not text.isdigit():
        raise MessageError(f"time {text!r} is not BCD")
    try:
        local = datetime(
            2000 + int(text[0:2]), int(text[2:4]), int(text[4:6]),
            int(text[6:8]), int(text[8:10]), int(text[10:12]), tzinfo=BEIJING,
        )
    except ValueError as exc:
        raise MessageError(f"time {text!r}: {exc}") from exc
    return local.astimezone(UTC)


def utc_to_bcd_time(t: datetime) -> bytes:
    """Inverse of :func:`bcd_time_to_utc` (seconds precision, years 2000-2099)."""
    local = t.astimezone(BEIJING)
    if not 2000 <= local.year <= 2099:
        raise ValueError("BCD time covers 2000-2099 only")
    return bytes.fromhex(local.strftime("%y%m%d%H%M%S"))


# --------------------------------------------------------------------------- messages


@dataclass(slots=True)
class GeneralReply:
    """Platform general reply 平台通用应答 (0x8001); terminal's is 0x0001."""

    MSG_ID: ClassVar[int] = 0x8001
    reply_serial: int
    reply_id: int
    result: int = RESULT_OK


@dataclass(slots=True)
class TerminalGeneralReply(GeneralReply):
    """Terminal general reply 终端通用应答 (0x0001)."""

    MSG_ID: ClassVar[int] = 0x0001


@dataclass(slots=True)
class Heartbeat:
    """Terminal heartbeat 终端心跳 (0x0002), empty body."""

    MSG_ID: ClassVar[int] = 0x0002


@dataclass(slots=True)
class Logout:
    """Terminal logout 终端注销 (0x0003), empty body."""

    MSG_ID: ClassVar[int] = 0x0003


@dataclass(slots=True)
class Registration:
    """Terminal registration 终端注册 (0x0100).

    Layouts: ``2011`` maker 5, model 8, terminal id 7 bytes; ``2013`` maker 5, model 20,
    terminal id 7; ``2019`` maker 11, model 30, terminal id 30. The 2019 layout goes with
    the 2019 header; 2011 and 2013 share the 2013 header and are told apart by body length.
    """

    MSG_ID: ClassVar[int] = 0x0100
    province: int
    city: int
    maker_id: str
    model: str
    device_id: str
    plate_colour: int
    plate: str
    layout: str = "2013"


_REG_LAYOUTS: dict[str, tuple[int, int, int]] = {
    "2011": (5, 8, 7),
    "2013": (5, 20, 7),
    "2019": (11, 30, 30),
}


@dataclass(slots=True)
class RegistrationReply:
    """Registration reply 终端注册应答 (0x8100): auth code only on success."""

    MSG_ID: ClassVar[int] = 0x8100
    reply_serial: int
    result: int
    auth_code: str = ""


@dataclass(slots=True)
class Authentication:
    """Terminal authentication 终端鉴权 (0x0102). IMEI and software version are 2019-only."""

    MSG_ID: ClassVar[int] = 0x0102
    auth_code: str
    imei: str = ""
    software_version: str = ""


@dataclass(slots=True)
class Location:
    """Location report 位置信息汇报 (0x0200) — the raw fields, before units and signs."""

    MSG_ID: ClassVar[int] = 0x0200
    alarm: int
    status: int
    lat_raw: int
    lon_raw: int
    altitude_m: int
    speed_raw: int
    direction: int
    time: datetime
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def lat(self) -> float:
        return (-1 if self.status & STATUS_SOUTH else 1) * self.lat_raw / 1e6

    @property
    def lon(self) -> float:
        return (-1 if self.status & STATUS_WEST else 1) * self.lon_raw / 1e6

    @property
    def located(self) -> bool:
        return bool(self.status & STATUS_LOCATED)


@dataclass(slots=True)
class BatchLocation:
    """Batch location upload 定位数据批量上传 (0x0704); type 1 = blind-area resend 盲区补报."""

    MSG_ID: ClassVar[int] = 0x0704
    batch_type: int
    locations: list[Location]


@dataclass(slots=True)
class Unknown:
    """Any message this codec does not model; the platform answers it with result 3."""

    msg_id: int
    body: bytes
    MSG_ID: ClassVar[int] = -1


Message = (
    GeneralReply | Heartbeat | Logout | Registration | RegistrationReply | Authentication
    | Location | BatchLocation | Unknown
)


# --------------------------------------------------------------------------- decoding


def _decode_general_reply(body: bytes, cls: type[GeneralReply]) -> GeneralReply:
    _need(body, 5, "general reply")
    serial, msg_id, result = struct.unpack_from(">HHB", body)
    return cls(serial, msg_id, result)


def _decode_registration(body: bytes, version: int) -> Registration:
    if version == VERSION_2019:
        layout = "2019"
    else:
        layout = "2013" if len(body) >= 4 + sum(_REG_LAYOUTS["2013"]) + 1 else "2011"
    maker, model, dev = _REG_LAYOUTS[layout]
    fixed = 4 + maker + model + dev + 1
    _need(body, fixed, f"registration {layout}")
    province, city = struct.unpack_from(">HH", body)
    pos = 4
    fields: list[str] = []
    for size in (maker, model, dev):
        fields.append(_gbk(body[pos : pos + size]))
        pos += size
    colour = body[pos]
    plate = _gbk(body[pos + 1 :])
    return Registration(province, city, fields[0], fields[1], fields[2], colour, plate, layout)


def _decode_registration_reply(body: bytes) -> RegistrationReply:
    _need(body, 3, "registration reply")
    serial, result = struct.unpack_from(">HB", body)
    return RegistrationReply(serial, result, _gbk(body[3:]) if result == REG_OK else "")


def _decode_authentication(body: bytes, version: int) -> Authentication:
    if version != VERSION_2019:
        return Authentication(_gbk(body))
    _need(body, 1, "authentication 2019")
    n = body[0]
    _need(body, 1 + n + 15 + 20, "authentication 2019")
    code = _gbk(body[1 : 1 + n])
    imei = _gbk(body[1 + n : 16 + n])
    software = _gbk(body[16 + n : 36 + n])
    return Authentication(code, imei, software)


def decode_location(body: bytes) -> Location:
    """Decode a 0x0200 body: 28 fixed bytes, then additional items (附加信息) id/len/value."""
    _need(body, LOCATION_BASE_LEN, "location")
    alarm, status, lat, lon, alt, speed, direction = struct.unpack_from(">IIIIhHH", body)
    when = bcd_time_to_utc(body[22:28])
    items: list[tuple[int, bytes]] = []
    pos = LOCATION_BASE_LEN
    while pos < len(body):
        if pos + 2 > len(body):
            raise MessageError(f"truncated additional item at offset {pos}")
        item_id, size = body[pos], body[pos + 1]
        if pos + 2 + size > len(body):
            raise MessageError(f"additional item 0x{item_id:02x} overruns the body")
        items.append((item_id, body[pos + 2 : pos + 2 + size]))
        pos += 2 + size
    return Location(alarm, status, lat, lon, alt, speed, direction, when, items)


def _decode_batch(body: bytes) -> BatchLocation:
    _need(body, 3, "batch location")
    count, batch_type = struct.unpack_from(">HB", body)
    pos = 3
    locations: list[Location] = []
    for n in range(count):
        _need(body, pos + 2, f"batch item {n}")
        (size,) = struct.unpack_from(">H", body, pos)
        pos += 2
        _need(body, pos + size, f"batch item {n}")
        locations.append(decode_location(body[pos : pos + size]))
        pos += size
    if pos != len(body):
        raise MessageError(f"batch location: {len(body) - pos} trailing bytes")
    return BatchLocation(batch_type, locations)


def decode_body(msg_id: int, body: bytes, version: int = 2013) -> Message:
    """Decode a body by message id; raises :class:`MessageError` if it is malformed."""
    if msg_id == 0x0200:
        return decode_location(body)
    if msg_id == 0x0704:
        return _decode_batch(body)
    # Heartbeat and logout bodies are empty; padding some terminals add is ignored.
    if msg_id == 0x0002:
        return Heartbeat()
    if msg_id == 0x0003:
        return Logout()
    if msg_id == 0x0100:
        return _decode_registration(body, version)
    if msg_id == 0x0102:
        return _decode_authentication(body, version)
    if msg_id == 0x0001:
        return _decode_general_reply(body, TerminalGeneralReply)
    if msg_id == 0x8001:
        return _decode_general_reply(body, GeneralReply)
    if msg_id == 0x8100:
        return _decode_registration_reply(body)
    return Unknown(msg_id, body)


def decode_packet(packet: Packet) -> Message:
    """Decode the body of a (reassembled) packet."""
    return decode_body(packet.header.msg_id, packet.body, packet.header.version)


# --------------------------------------------------------------------------- encoding


def encode_location(loc: Location) -> bytes:
    out = bytearray(
        struct.pack(
            ">IIIIhHH", loc.alarm, loc.status, loc.lat_raw, loc.lon_raw, loc.altitude_m,
            loc.speed_raw, loc.direction,
        )
    )
    out += utc_to_bcd_time(loc.time)
    for item_id, value in loc.items:
        if len(value) > 255:
            raise ValueError(f"additional item 0x{item_id:02x} longer than 255 bytes")
        out += bytes([item_id, len(value)]) + value
    return bytes(out)


def _encode_registration(m: Registration, version: int) -> bytes:
    layout = "2019" if version == VERSION_2019 else ("2011" if m.layout == "2011" else "2013")
    maker, model, dev = _REG_LAYOUTS[layout]
    return (
        struct.pack(">HH", m.province, m.city)
        + _fixed(m.maker_id, maker) + _fixed(m.model, model) + _fixed(m.device_id, dev)
        + bytes([m.plate_colour]) + m.plate.encode("gbk")
    )


def _encode_authentication(m: Authentication, version: int) -> bytes:
    code = m.auth_code.encode("gbk")
    if version != VERSION_2019:
        return code
    if len(code) > 255:
        raise ValueError("auth code longer than 255 bytes")
    return bytes([len(code)]) + code + _fixed(m.imei, 15) + _fixed(m.software_version, 20)


def _encode_batch(m: BatchLocation) -> bytes:
    out = bytearray(struct.pack(">HB", len(m.locations), m.batch_type))
    for loc in m.locations:
        body = encode_location(loc)
        out += struct.pack(">H", len(body)) + body
    return bytes(out)


def encode_body(msg: Message, version: int = 2013) -> bytes:
    """Encode a message body (the header is :func:`gateway.jt808.codec.encode_frame`'s job)."""
    if isinstance(msg, GeneralReply):
        return struct.pack(">HHB", msg.reply_serial & 0xFFFF, msg.reply_id, msg.result)
    if isinstance(msg, Heartbeat | Logout):
        return b""
    if isinstance(msg, Registration):
        return _encode_registration(msg, version)
    if isinstance(msg, RegistrationReply):
        code = msg.auth_code.encode("gbk") if msg.result == REG_OK else b""
        return struct.pack(">HB", msg.reply_serial & 0xFFFF, msg.result) + code
    if isinstance(msg, Authentication):
        return _encode_authentication(msg, version)
    if isinstance(msg, Location):
        return encode_location(msg)
    if isinstance(msg, BatchLocation):
        return _encode_batch(msg)
    if isinstance(msg, Unknown):
        return msg.body
    raise TypeError(f"cannot encode {type(msg).__name__}")


def message_id(msg: Message) -> int:
    return msg.msg_id if isinstance(msg, Unknown) else msg.MSG_ID


# --------------------------------------------------------------------------- to Fix

# Standard additional items decoded to named extras: id -> (name, size, scale).
_SCALED_ITEMS: dict[int, tuple[str, int, float]] = {
    0x01: ("mileage_km", 4, 0.1),  # 里程 1/10 km
    0x02: ("fuel_l", 2, 0.1),  # 油量 1/10 L
    0x03: ("recorder_speed_kmh", 2, 0.1),  # 行驶记录功能获取的速度 1/10 km/h
    0x04: ("manual_alarm_event_id", 2, 1),  # 需要人工确认报警事件的 ID
    0x25: ("extended_signal_status", 4, 1),  # 扩展车辆信号状态位
    0x2A: ("io_status", 2, 1),  # IO 状态位
    0x30: ("signal", 1, 1),  # 无线通信网络信号强度
    0x31: ("satellites", 1, 1),  # GNSS 定位卫星数
}


def _item_extras(items: list[tuple[int, bytes]]) -> dict[str, Any]:
    """Named extras for known items; every other item raw as hex under ``raw_items``.

    ``raw_items`` maps ``"0x51"`` to the hex value; a repeated id gets ``"0x51#2"`` etc.
    Known ids with an unexpected length are kept raw too (vendors stretch e.g. 0x2b).
    """
    extras: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for item_id, value in items:
        known = _SCALED_ITEMS.get(item_id)
        if known is not None and len(value) == known[1]:
            name, _, scale = known
            number = int.from_bytes(value, "big")
            extras[name] = round(number * scale, 1) if scale != 1 else number
            continue
        key = f"0x{item_id:02x}"
        n = 2
        while key in raw:
            key = f"0x{item_id:02x}#{n}"
            n += 1
        raw[key] = value.hex()
    if raw:
        extras["raw_items"] = raw
    return extras


def location_to_fix(loc: Location, phone: str, blind_area: bool = False) -> Fix:
    """Normalise a location report to a :class:`Fix` (terminal id = phone without padding)."""
    extras: dict[str, Any] = {"phone": phone}
    extras.update(_item_extras(loc.items))
    if blind_area:
        extras["blind_area"] = True
    sats = extras.get("satellites")
    return Fix(
        terminal_id=phone_to_terminal_id(phone),
        time=loc.time,
        lat=loc.lat,
        lon=loc.lon,
        speed_kmh=loc.speed_raw / 10,
        course=float(loc.direction),
        altitude_m=float(loc.altitude_m),
        satellites=sats if isinstance(sats, int) else None,
        valid=loc.located,
        protocol="jt808",
        alarm=loc.alarm,
        status=loc.status,
        extras=extras,
    )


def fixes_from_message(msg: Message, phone: str) -> list[Fix]:
    """The Fixes a 0x0200 or 0x0704 message carries (empty for other messages)."""
    if isinstance(msg, Location):
        return [location_to_fix(msg, phone)]
    if isinstance(msg, BatchLocation):
        blind = msg.batch_type == 1
        return [location_to_fix(loc, phone, blind) for loc in msg.locations]
    return []


def message_fields(msg: Message) -> dict[str, Any]:
    """JSON-able fields of a non-location message (for ``gongche decode``)."""
    if isinstance(msg, Unknown):
        return {"body": msg.body.hex()}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        out[f.name] = value.hex() if isinstance(value, bytes) else value
    return out
