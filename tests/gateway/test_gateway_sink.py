"""Stream entries: the JSON the sink writes is the object Fix.to_json(), and decodes back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from fleet.fix import Fix
from gateway.sink import Routed, decode_entry, encode_entry, fix_json, fix_json_bytes

_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1000, 1000))
def _fixes(big: int) -> st.SearchStrategy[Fix]:
    """Fixes with odd values; integers up to ``big`` in magnitude."""
    extras = st.one_of(
        st.just({}),
        st.builds(lambda s: {"sentences": s}, st.lists(st.text(max_size=6), max_size=3)),
        st.dictionaries(st.text(max_size=4), st.one_of(st.integers(-big, big), st.floats(),
                                                       st.text(max_size=4), st.none()),
                        max_size=3))
    return st.builds(
        Fix, terminal_id=st.text(max_size=10),
        time=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))])),
        lat=_floats, lon=_floats, speed_kmh=_floats, course=_floats,
        altitude_m=st.one_of(st.none(), _floats), hdop=st.one_of(st.none(), _floats),
        satellites=st.one_of(st.none(), st.integers(0, 99)), valid=st.booleans(),
        protocol=st.sampled_from(["nmea-mqtt", "jt808", "sim"]),
        alarm=st.integers(0, big), status=st.integers(-(2**40), 2**40), extras=extras)


def _same(a: Any, b: Any) -> bool:
    return repr(a) == repr(b)  # NaN == NaN for this purpose


_T = datetime(2026, 11, 20, 2, 0, 1, 5, tzinfo=UTC)


@given(_fixes(2**70))
@example(Fix("T", _T, 30.0, 104.0, extras={"x": float("nan")}))  # orjson would write null
@example(Fix("T", _T, 30.0, 104.0, extras={"n": 2**70}))
@example(Fix("T", _T, float("nan"), 104.0, hdop=float("inf")))
@example(Fix("T", _T, 30.0, 104.0, speed_kmh=1e-7, course=1e16, altitude_m=-0.0))
def test_stream_json_is_the_object_to_json_gives(fix: Fix) -> None:
    reference = json.loads(json.dumps(fix.to_json(), ensure_ascii=False))
    assert _same(json.loads(fix_json(fix)), reference)
    assert fix_json_bytes(fix).decode() == fix_json(fix)


# (an integer beyond 64 bits comes back from the writer's orjson as a float, as before)
@given(_fixes(2**63 - 1), st.one_of(st.none(), st.integers(1, 2**31 - 1)))
def test_entries_decode_to_the_fix(fix: Fix, vehicle_id: int | None) -> None:
    fields = {k.encode(): v.encode() for k, v in encode_entry(Routed(fix, vehicle_id)).items()}
    back = decode_entry(fields)
    assert back.vehicle_id == vehicle_id
    expected = Fix.from_json(json.loads(json.dumps(fix.to_json())))
    assert _same(back.fix, expected)
