"""JT/T 808 codec and messages: golden frames from traccar / SmallChi / go-jt808, hand-checked
samples, and hypothesis round trips and fuzzing."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.jt808.codec import (
    FrameError,
    FrameSplitter,
    Header,
    Packet,
    Reassembler,
    decode_frame,
    encode_frame,
    encode_frames,
    escape,
    phone_to_terminal_id,
    unescape,
    xor_check,
)
from gateway.jt808.messages import (
    Authentication,
    BatchLocation,
    GeneralReply,
    Heartbeat,
    Location,
    Logout,
    Message,
    Registration,
    RegistrationReply,
    TerminalGeneralReply,
    Unknown,
    decode_body,
    decode_location,
    decode_packet,
    encode_body,
    fixes_from_message,
    message_id,
)

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
FRAMES: list[dict[str, Any]] = [
    json.loads(line)
    for line in (FIXTURES / "jt808" / "frames.jsonl").read_text().splitlines()
    if line.strip()
]
GOOD = [f for f in FRAMES if f["expect"]["checksum_ok"] and f["expect"]["body_len_ok"]]
BAD = [f for f in FRAMES if f not in GOOD]
FIX_EXTRAS = {  # fixture key -> Fix.extras key
    "mileage_km": "mileage_km",
    "fuel_l": "fuel_l",
    "tacho_speed_kmh": "recorder_speed_kmh",
    "rssi": "signal",
    "satellites": "satellites",
}


def frame_id(frame: dict[str, Any]) -> str:
    return f"{FRAMES.index(frame)}-{frame['msg_id']}-{frame['expect']['phone']}"


# --------------------------------------------------------------------------- golden


def test_fixture_file_has_all_frames() -> None:
    assert len(FRAMES) == 77 and len(BAD) == 1


@pytest.mark.parametrize("frame", GOOD, ids=frame_id)
def test_golden_header_and_byte_exact_reencode(frame: dict[str, Any]) -> None:
    wire = bytes.fromhex(frame["hex"])
    exp = frame["expect"]
    packet = decode_frame(wire)
    h = packet.header
    assert f"0x{h.msg_id:04x}" == frame["msg_id"]
    assert (h.phone, h.serial, h.body_length) == (exp["phone"], exp["serial"], exp["body_len"])
    assert h.version == int(frame["version"])
    assert h.encryption == exp["encryption"] and h.is_subpackage == exp["subpackage"]
    if h.version == 2019:
        assert h.protocol_version == exp["protocol_version"]
    assert encode_frame(h, packet.body) == wire
    assert wire.count(b"\x7d") == exp["escapes"]


def _check_location(loc: Location, exp: dict[str, Any], phone: str, blind: bool) -> None:
    assert (loc.alarm, loc.status) == (exp["alarm"], exp["status"])
    assert (loc.lat_raw, loc.lon_raw) == (exp["lat_raw"], exp["lon_raw"])
    assert (loc.lat, loc.lon) == (pytest.approx(exp["lat"]), pytest.approx(exp["lon"]))
    assert (loc.speed_raw, loc.direction) == (exp["speed_raw"], exp["direction"])
    assert loc.altitude_m == exp["altitude_m"]
    assert loc.time == datetime.fromisoformat(exp["time"]).astimezone(UTC)
    assert [(f"0x{i:02x}", v.hex()) for i, v in loc.items] == [
        (it["id"], it["hex"]) for it in exp["items"]
    ]
    [fix] = fixes_from_message(loc, phone)
    if blind:
        fix.extras["blind_area"] = True
    assert fix.valid == exp["located"]
    assert fix.speed_kmh == pytest.approx(exp["speed_kmh"])
    assert fix.terminal_id == phone_to_terminal_id(phone) and fix.extras["phone"] == phone
    for key, name in FIX_EXTRAS.items():
        if key in exp and name in fix.extras:
            assert fix.extras[name] == pytest.approx(exp[key]), key
    if "satellites" in exp and "satellites" in fix.extras:
        assert fix.satellites == exp["satellites"]


@pytest.mark.parametrize("frame", GOOD, ids=frame_id)
def test_golden_bodies(frame: dict[str, Any]) -> None:
    exp = frame["expect"]
    packet = decode_frame(bytes.fromhex(frame["hex"]))
    msg = decode_packet(packet)
    if frame["msg_id"] == "0x0200":
        assert isinstance(msg, Location)
        _check_location(msg, exp["location"], exp["phone"], blind=False)
        assert encode_body(msg) == packet.body
    elif frame["msg_id"] == "0x0704":
        assert isinstance(msg, BatchLocation)
        assert (len(msg.locations), msg.batch_type) == (exp["count"], exp["batch_type"])
        for loc, loc_exp in zip(msg.locations, exp["locations"], strict=True):
            _check_location(loc, loc_exp, exp["phone"], blind=msg.batch_type == 1)
        assert encode_body(msg) == packet.body
        fixes = fixes_from_message(msg, exp["phone"])
        assert all(f.extras.get("blind_area", False) == (msg.batch_type == 1) for f in fixes)
    elif frame["msg_id"] == "0x0100":
        assert isinstance(msg, Registration)
        reg = exp["registration"]
        assert msg.layout == reg["layout"]
        assert (msg.province, msg.city, msg.maker_id, msg.model) == (
            reg["province"], reg["city"], reg["maker_id"], reg["model"],
        )
        assert (msg.device_id, msg.plate_colour, msg.plate) == (
            reg["terminal_id"], reg["plate_colour"], reg["plate"],
        )
    elif frame["msg_id"] == "0x0102":
        assert isinstance(msg, Authentication)
        auth = exp["auth"]
        assert msg.auth_code == auth["auth_code"]
        assert msg.imei == auth.get("imei", "")
        assert msg.software_version == auth.get("software_version", "")
    else:
        assert frame["msg_id"] == "0x0002" and isinstance(msg, Heartbeat)


@pytest.mark.parametrize("frame", BAD, ids=frame_id)
def test_negative_frame_rejected(frame: dict[str, Any]) -> None:
    with pytest.raises(FrameError) as info:
        decode_frame(bytes.fromhex(frame["hex"]))
    assert info.value.reason in ("bad_check", "bad_length")


def test_every_fixture_frame_through_one_stream() -> None:
    stream = b"".join(bytes.fromhex(f["hex"]) for f in FRAMES)
    splitter = FrameSplitter()
    packets = splitter.feed(stream)
    assert len(packets) == len(GOOD)
    assert splitter.stats.bad_check == 1


# --------------------------------------------------------------------------- hand-checked


def test_smallchi_location_by_hand() -> None:
    """7e 0200 0026 112233445566 22b8 | 00000001 00000002 00ba7f0e 07e4f11c 0028 003c 0000
    180715101010 | 01 04 00000064 | 02 02 0037 | 57 7e"""
    frame = "7e0200002611223344556622b8000000010000000200ba7f0e07e4f11c0028003c00001807151010100104000000640202003757" "7e"  # noqa: E501
    packet = decode_frame(bytes.fromhex(frame))
    [fix] = fixes_from_message(decode_packet(packet), packet.header.phone)
    assert packet.header.serial == 0x22B8 == 8888
    assert (fix.lat, fix.lon) == (12.222222, 132.444444)  # 0x00ba7f0e, 0x07e4f11c
    assert (fix.altitude_m, fix.speed_kmh, fix.course) == (40.0, 6.0, 0.0)  # 0x28, 0x3c/10
    assert fix.time == datetime(2018, 7, 15, 2, 10, 10, tzinfo=UTC)  # 10:10:10 GMT+8
    assert (fix.alarm, fix.status, fix.valid) == (1, 2, True)
    assert fix.extras == {"phone": "112233445566", "mileage_km": 10.0, "fuel_l": 5.5}
    assert fix.terminal_id == "112233445566"


def test_south_west_flags() -> None:
    """traccar frame 28: status 0x1000000e → bits 2 (south) and 3 (west) set."""
    frame = next(f for f in FRAMES if f["expect"]["phone"] == "413057160185")
    packet = decode_frame(bytes.fromhex(frame["hex"]))
    [fix] = fixes_from_message(decode_packet(packet), packet.header.phone)
    assert fix.status == 0x1000000E
    assert (fix.lat, fix.lon) == (-23.404231, -46.85322)
    assert fix.time == datetime(2024, 8, 24, 15, 48, 50, tzinfo=UTC)
    assert fix.satellites == 8 and fix.extras["signal"] == 31
    assert set(fix.extras["raw_items"]) == {"0xf0", "0xf2", "0xf6", "0xf7", "0xf8", "0xf9"}


def test_escaped_latitude_byte() -> None:
    """go-jt808 frame: latitude 0x0720_327e travels as 07 20 32 7d 02."""
    frame = next(f for f in FRAMES if "latitude byte 0x7e" in f.get("note", ""))
    assert "7d02" in frame["hex"]
    msg = decode_packet(decode_frame(bytes.fromhex(frame["hex"])))
    assert isinstance(msg, Location) and msg.lat_raw == 119552894
    [fix] = fixes_from_message(msg, "012345678901")
    assert fix.valid is False and fix.terminal_id == "12345678901"


def test_blind_area_batch_from_traccar() -> None:
    frame = next(f for f in FRAMES if f["msg_id"] == "0x0704" and f["expect"]["serial"] == 100)
    packet = decode_frame(bytes.fromhex(frame["hex"]))
    fixes = fixes_from_message(decode_packet(packet), packet.header.phone)
    assert len(fixes) == 4 and all(f.extras["blind_area"] for f in fixes)
    assert fixes[0].time == datetime(2018, 5, 14, 12, 28, 47, tzinfo=UTC)
    assert fixes[0].terminal_id == "30300000245" and fixes[0].extras["phone"] == "030300000245"
    assert fixes[3].alarm == 256


def test_2019_registration_and_auth() -> None:
    reg = next(f for f in FRAMES if f["msg_id"] == "0x0100" and f["version"] == "2019")
    packet = decode_frame(bytes.fromhex(reg["hex"]))
    assert packet.header.phone == "00000000000123456789"
    assert phone_to_terminal_id(packet.header.phone) == "123456789"
    msg = decode_packet(packet)
    assert isinstance(msg, Registration) and msg.plate == "粤A12345" and msg.layout == "2019"
    assert encode_body(msg, 2019) == packet.body  # 2019 fields are NUL padded on the right
    auth = next(f for f in FRAMES if f["msg_id"] == "0x0102" and f["version"] == "2019")
    packet = decode_frame(bytes.fromhex(auth["hex"]))
    msg = decode_packet(packet)
    assert msg == Authentication("17299841738", "123456789012345", "3.7.15")
    assert encode_body(msg, 2019) == packet.body


def test_non_bcd_phone_survives() -> None:
    frame = next(f for f in FRAMES if "not valid BCD" in f.get("note", ""))
    packet = decode_frame(bytes.fromhex(frame["hex"]))
    assert packet.header.phone == "4f07788ef676"


def test_general_reply_layout() -> None:
    body = encode_body(GeneralReply(0x1234, 0x0200, 3))
    assert body == bytes.fromhex("1234020003")
    header = Header(0x8001, "13511221122", 7)
    frame = encode_frame(header, body)
    assert frame.hex() == "7e800100050135112211220007" + "1234020003" + f"{frame[-2]:02x}" + "7e"
    assert xor_check(unescape(frame[1:-1])[:-1]) == frame[-2]


def test_bad_time_and_truncated_items_are_message_errors() -> None:
    base = bytes.fromhex("0000000000000002" "00ba7f0e07e4f11c" "0028003c0000")
    with pytest.raises(ValueError):
        decode_body(0x0200, base + bytes(6))  # time 000000000000
    with pytest.raises(ValueError):
        decode_body(0x0200, base + bytes.fromhex("180715101010") + b"\x01\x04\x00")
    with pytest.raises(ValueError):
        decode_body(0x0200, base[:10])


# --------------------------------------------------------------------------- splitter


def _frame(serial: int = 1, msg: Message | None = None, version: int = 2013) -> bytes:
    msg = msg or Heartbeat()
    return encode_frame(
        Header(message_id(msg), "13511221122", serial, version), encode_body(msg, version)
    )


def test_half_frame_garbage_then_good_frame() -> None:
    good = _frame(5)
    splitter = FrameSplitter()
    assert splitter.feed(good[:7]) == []  # half a frame, never completed
    got = splitter.feed(b"\x01\x02garbage" + good)
    assert [p.header.serial for p in got] == [5]
    assert splitter.stats.bad_frames == 1


def test_wrong_check_code_counted_next_frame_kept() -> None:
    bad = bytearray(_frame(1))
    bad[-2] ^= 0x55
    splitter = FrameSplitter()
    got = splitter.feed(bytes(bad) + _frame(2))
    assert [p.header.serial for p in got] == [2]
    assert splitter.stats.bad_check == 1


def test_oversize_run_dropped_and_buffer_bounded() -> None:
    splitter = FrameSplitter(max_frame_size=64)
    got = splitter.feed(b"\x7e" + b"\x11" * 1000)
    assert got == [] and splitter.pending() == 0
    got = splitter.feed(b"\x11" * 1000 + _frame(9))
    assert [p.header.serial for p in got] == [9]
    assert splitter.stats.oversize == 1


def test_incomplete_frame_reported_on_flush() -> None:
    splitter = FrameSplitter()
    splitter.feed(_frame()[:-1])
    err = splitter.flush()
    assert err is not None and err.reason == "incomplete_frame"


# --------------------------------------------------------------------------- reassembly


def test_multi_packet_reassembly_out_of_order() -> None:
    loc = Location(0, 2, 39_900_000, 116_400_000, 50, 100, 90,
                   datetime(2024, 5, 1, 4, 0, tzinfo=UTC), [(0xE0, bytes(200))])
    batch = BatchLocation(1, [loc] * 6)
    body = encode_body(batch)
    frames = encode_frames(Header(0x0704, "13511221122", 100), body, max_body=300)
    assert len(frames) == 5
    packets = [decode_frame(f) for f in frames]
    assert [p.header.subpackage_index for p in packets] == [1, 2, 3, 4, 5]
    assert [p.header.serial for p in packets] == [100, 101, 102, 103, 104]
    r = Reassembler()
    results = [r.add(p) for p in packets[::-1]]
    assert results[:-1] == [None] * 4
    whole = results[-1]
    assert isinstance(whole, Packet) and whole.body == body and not whole.header.is_subpackage
    assert decode_packet(whole) == batch


def test_reassembly_timeout_and_bound() -> None:
    now = [0.0]
    r = Reassembler(max_pending=2, timeout_s=10, clock=lambda: now[0])
    parts = [
        decode_frame(f)
        for f in encode_frames(Header(0x0704, "1", 1), bytes(50), max_body=20)
    ]
    assert r.add(parts[0]) is None
    now[0] = 11.0
    assert r.add(parts[1]) is None  # the first part expired, this one starts again
    assert r.expired == 1
    for phone in ("2", "3"):
        r.add(Packet(Header(0x0704, phone, 1, subpackage_total=2, subpackage_index=1), b"x"))
    assert r.pending() == 2 and r.evicted == 1


# --------------------------------------------------------------------------- hypothesis

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
gbk_text = st.text(
    alphabet=st.sampled_from("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-京津沪渝粤苏浙鲁川"), max_size=6
)
times = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)
).map(lambda t: t.replace(microsecond=0, tzinfo=UTC))
items = st.lists(st.tuples(u8, st.binary(max_size=40)), max_size=6)
locations = st.builds(
    Location, u32, u32, u32, u32, st.integers(-32768, 32767), u16, u16, times, items
)


def registrations(version: int) -> st.SearchStrategy[Registration]:
    maker, model, dev = (11, 30, 30) if version == 2019 else (5, 20, 7)
    ascii_id = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-", max_size=1)
    return st.builds(
        Registration,
        u16,
        u16,
        st.text(alphabet="0123456789ABC", max_size=maker),
        st.text(alphabet="abcXYZ-0123456789", max_size=model),
        ascii_id.flatmap(lambda c: st.text(alphabet="0123456789ABC", max_size=dev)),
        u8,
        gbk_text,
        st.just("2019" if version == 2019 else "2013"),
    )


def messages(version: int) -> st.SearchStrategy[Message]:
    auth = (
        st.builds(
            Authentication,
            st.text(alphabet="0123456789abcdef", min_size=1, max_size=40),
            st.text(alphabet="0123456789", max_size=15),
            st.text(alphabet="0123456789.V", max_size=20),
        )
        if version == 2019
        else st.builds(
            Authentication, st.text(alphabet="0123456789abcdef", min_size=1, max_size=40)
        )
    )
    return st.one_of(
        st.builds(GeneralReply, u16, u16, st.integers(0, 4)),
        st.builds(TerminalGeneralReply, u16, u16, st.integers(0, 4)),
        st.just(Heartbeat()),
        st.just(Logout()),
        registrations(version),
        st.builds(RegistrationReply, u16, st.just(0), st.text(alphabet="0123456789", max_size=20)),
        st.builds(RegistrationReply, u16, st.integers(1, 4), st.just("")),
        auth,
        locations,
        st.builds(BatchLocation, st.integers(0, 1), st.lists(locations, max_size=4)),
        st.builds(Unknown, st.sampled_from([0x0900, 0x0800, 0x0201]), st.binary(max_size=60)),
    )


phones_2013 = st.text(alphabet="0123456789", min_size=1, max_size=12)
phones_2019 = st.text(alphabet="0123456789", min_size=1, max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from([2013, 2019]), u16)
def test_message_frame_round_trip(data: st.DataObject, version: int, serial: int) -> None:
    msg = data.draw(messages(version))
    phone = data.draw(phones_2019 if version == 2019 else phones_2013)
    header = Header(message_id(msg), phone, serial, version)
    frames = encode_frames(header, encode_body(msg, version))
    reassembler = Reassembler()
    out = [reassembler.add(decode_frame(f)) for f in frames]
    whole = out[-1]
    assert whole is not None
    assert whole.header.version == version and whole.header.msg_id == header.msg_id
    assert phone_to_terminal_id(whole.header.phone) == phone_to_terminal_id(phone)
    decoded = decode_packet(whole)
    assert decoded == msg


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_escape_round_trip(data: bytes) -> None:
    escaped = escape(data)
    assert b"\x7e" not in escaped
    assert unescape(escaped) == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.integers(1, 50), locations)
def test_garbage_never_raises_and_good_frame_survives(
    garbage: bytes, chunk: int, loc: Location
) -> None:
    good = _frame(42, loc)
    splitter = FrameSplitter()
    got: list[Packet] = []
    stream = garbage + good
    for i in range(0, len(stream), chunk):
        got += splitter.feed(stream[i : i + chunk])
    assert got and got[-1].header.serial == 42
    assert decode_packet(got[-1]) == loc
    for packet in got:  # whatever else came out must decode or raise ValueError only
        with contextlib.suppress(ValueError):
            decode_packet(packet)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    FrameSplitter(max_frame_size=64).feed(data)
    with contextlib.suppress(FrameError):
        decode_frame(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([f["hex"] for f in GOOD]), st.integers(0, 400), u8)
def test_flipped_fixture_byte_never_raises(hex_frame: str, pos: int, value: int) -> None:
    raw = bytearray(bytes.fromhex(hex_frame))
    raw[pos % len(raw)] = value
    for packet in FrameSplitter().feed(bytes(raw)):
        try:
            msg = decode_packet(packet)
            fixes_from_message(msg, packet.header.phone)
        except ValueError:
            pass


def test_bcd_time_is_gmt8() -> None:
    loc = Location(0, 0, 0, 0, 0, 0, 0, datetime(2024, 1, 1, 16, 0, tzinfo=UTC))
    body = encode_body(loc)
    assert body[22:28].hex() == "240102000000"  # next day 00:00 in Beijing
    assert decode_location(body).time - loc.time == timedelta(0)
