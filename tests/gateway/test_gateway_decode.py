"""The text → JSON functions behind ``gongche decode``."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.decode import FIX_KEYS, decode_jt808_text, decode_nmea_text

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"
SMALLCHI = (
    "7e0200002611223344556622b8000000010000000200ba7f0e07e4f11c0028003c0000180715101010"
    "0104000000640202003757" "7e"
)
HEARTBEAT = "7e00020000012345678900000a817e"


def test_nmea_fixture_to_json() -> None:
    text = (FIXTURES / "nmea" / "sirf-trig-beidou-gb.nmea").read_text()
    out = list(decode_nmea_text(text, "sirf"))
    assert len(out) == 2
    first = out[0]
    assert tuple(first) == FIX_KEYS
    assert first["time"] == "2015-03-02T05:32:32.438000Z"
    assert first["terminal_id"] == "sirf" and first["valid"] is True
    json.dumps(out)


def test_nmea_errors_are_dicts() -> None:
    out = list(decode_nmea_text("$GPGGA,1*00\nnot nmea at all\n", "x"))
    assert out == [{"error": out[0]["error"], "line": 1, "sentence": "$GPGGA,1*00"}]
    assert out[0]["error"].startswith("checksum mismatch")


def test_jt808_hex_with_spaces_and_streams() -> None:
    spaced = " ".join(SMALLCHI[i : i + 2] for i in range(0, len(SMALLCHI), 2))
    text = "\n".join([spaced, SMALLCHI + HEARTBEAT, "", SMALLCHI[2:-2]])
    out = list(decode_jt808_text(text))
    assert [("message" in o, "error" in o) for o in out] == [
        (False, False), (False, False), (True, False), (False, False),
    ]
    fix = out[0]
    assert tuple(fix) == FIX_KEYS
    assert fix["time"] == "2018-07-15T02:10:10Z" and fix["lat"] == 12.222222
    assert fix["extras"] == {"phone": "112233445566", "mileage_km": 10.0, "fuel_l": 5.5}
    assert out[2] == {"message": "0x0002", "phone": "012345678900", "serial": 10, "version": 2013}
    json.dumps(out)


def test_jt808_errors() -> None:
    bad_check = SMALLCHI[:-4] + "00" + "7e"
    out = list(decode_jt808_text("zz\n" + bad_check + "\n7e0200"))
    assert [o.get("reason") for o in out] == [None, "bad_check", "incomplete_frame"]
    assert all("error" in o for o in out) and out[0]["line"] == 1


def test_jt808_every_fixture_frame() -> None:
    frames = [json.loads(x) for x in (FIXTURES / "jt808" / "frames.jsonl").read_text().splitlines()]
    out = list(decode_jt808_text("\n".join(f["hex"] for f in frames)))
    errors = [o for o in out if "error" in o]
    messages = [o for o in out if "message" in o]
    fixes = [o for o in out if "terminal_id" in o]
    assert len(errors) == 1
    assert len(messages) == sum(f["msg_id"] in ("0x0100", "0x0102", "0x0002") for f in frames)
    expected_fixes = sum(
        f["expect"]["count"] if f["msg_id"] == "0x0704" else 1
        for f in frames
        if f["msg_id"] in ("0x0200", "0x0704") and f["expect"]["checksum_ok"]
    )
    assert len(fixes) == expected_fixes
    reg = next(m for m in messages if m["message"] == "0x0100")
    assert reg["plate"] == "粤A12345" and reg["device_id"] == "CHI123"
    json.dumps(out, ensure_ascii=False)
