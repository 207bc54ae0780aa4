"""Fix.from_json: the positional fast path for what to_json writes equals the general path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fleet.fix import Fix

_number = st.one_of(st.floats(allow_nan=True), st.integers(-(2**70), 2**70), st.none(),
                    st.text(max_size=5), st.booleans())
_times = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), None]))
    .map(lambda t: t.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat().replace("+00:00", "Z")),
    st.text(max_size=30), st.integers())


def _outcome(fn: Any, data: dict[str, Any]) -> tuple[str, str]:
    try:
        return "ok", repr(fn(data))  # repr: NaN compares unequal to itself
    except Exception as exc:
        return "raises", type(exc).__name__


@given(terminal_id=st.text(max_size=8), time=_times, lat=_number, lon=_number,
       speed_kmh=_number, course=_number, altitude_m=_number, hdop=_number,
       satellites=_number, valid=st.one_of(st.booleans(), st.none()),
       protocol=st.sampled_from(["nmea-mqtt", "jt808", "sim"]), alarm=_number, status=_number,
       extras=st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
def test_fast_path_equals_general_path(**data: Any) -> None:
    assert _outcome(Fix.from_json, data) == _outcome(Fix._from_json, data)


def test_round_trip_and_other_key_sets() -> None:
    fix = Fix("T1", datetime(2026, 11, 20, 2, 0, 1, 500, tzinfo=UTC), 30.5, 104.25,
              speed_kmh=31.5, satellites=12, protocol="nmea-mqtt", extras={"sentences": ["x"]})
    assert Fix.from_json(fix.to_json()) == fix
    partial = {"terminal_id": "T1", "time": "2026-11-20T10:00:01+08:00", "lat": "30.5",
               "lon": 104, "unknown": 1}
    assert Fix.from_json(partial) == Fix("T1", datetime(2026, 11, 20, 2, 0, 1, tzinfo=UTC),
                                         30.5, 104.0)
    assert Fix.from_json(fix.to_json() | {"time": "2026-11-20T10:00:01+08:00"}).time \
        == datetime(2026, 11, 20, 2, 0, 1, tzinfo=UTC)
