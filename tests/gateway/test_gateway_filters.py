"""Filter chain: one test per step, late fixes, per-terminal state, counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet.fix import Fix
from gateway.filters import REASONS, FilterChain, FilterConfig, with_overrides

T0 = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)


def fix(
    seconds: float = 0, lat: float = 39.9, lon: float = 116.4, terminal: str = "A", **kw: object
) -> Fix:
    return Fix(terminal, T0 + timedelta(seconds=seconds), lat, lon, **kw)  # type: ignore[arg-type]


def chain(**cfg: object) -> FilterChain:
    return FilterChain(FilterConfig(**cfg), clock=lambda: NOW)  # type: ignore[arg-type]


def test_accepts_a_normal_track() -> None:
    c = chain()
    assert [c.apply(fix(i * 10, lat=39.9 + i * 1e-4)) for i in range(5)] == [(True, None)] * 5
    assert c.accepted == 5 and not c.counts


def test_invalid() -> None:
    c = chain()
    assert c.apply(fix(valid=False)) == (False, "invalid")
    assert c.apply(fix(1, lat=91.0)) == (False, "invalid")
    assert c.apply(fix(2, lon=-180.5)) == (False, "invalid")
    assert chain(invalid=False).apply(fix(valid=False)) == (True, None)


def test_zero() -> None:
    assert chain().apply(fix(lat=0.0, lon=0.0)) == (False, "zero")


def test_duplicate_uses_a_set_of_recent_times_not_only_the_last() -> None:
    c = chain()
    for s in (0, 10, 20):
        assert c.apply(fix(s))[0]
    assert c.apply(fix(0)) == (False, "duplicate")  # not the last one, still caught
    assert c.apply(fix(10, terminal="B")) == (True, None)  # other terminal, own state
    small = chain(duplicate_window=2)
    for s in (0, 10, 20):
        small.apply(fix(s))
    assert small.apply(fix(0)) == (True, None)  # fell out of the bounded window


def test_future() -> None:
    c = chain()
    assert c.apply(fix(60 + 301)) == (False, "future")
    assert c.apply(fix(60 + 299)) == (True, None)
    assert chain(future_s=None).apply(fix(10_000)) == (True, None)


def test_outdated_off_by_default() -> None:
    assert chain().apply(fix(-86400 * 30)) == (True, None)
    assert chain(max_age_s=3600).apply(fix(-3601 + 60)) == (False, "outdated")


def test_max_speed() -> None:
    c = chain(max_speed_kmh=200)
    assert c.apply(fix(speed_kmh=201.0)) == (False, "max_speed")
    assert c.apply(fix(1, speed_kmh=120.0)) == (True, None)


def test_accuracy() -> None:
    c = chain(max_hdop=5.0)
    assert c.apply(fix(hdop=8.0)) == (False, "accuracy")
    assert c.apply(fix(1, hdop=1.0)) == (True, None)
    assert c.apply(fix(2, hdop=None)) == (True, None)


def test_jump() -> None:
    c = chain()
    assert c.apply(fix(0))[0]
    # 0.1° of latitude (~11 km) in 10 s is ~4000 km/h
    assert c.apply(fix(10, lat=40.0)) == (False, "jump")
    assert c.apply(fix(20, lat=39.9005)) == (True, None)  # compared with the accepted one
    # small moves never count (GNSS noise), even at high implied speed
    assert c.apply(fix(21, lat=39.9005 + 50 / 111_000)) == (True, None)


def test_jump_reanchors_after_repeated_rejections() -> None:
    c = chain(jump_reset_after=2)
    c.apply(fix(0, lat=10.0))  # a bad first point
    assert c.apply(fix(10)) == (False, "jump")
    assert c.apply(fix(20)) == (False, "jump")
    assert c.apply(fix(30)) == (True, None)  # third in a row: accept and re-anchor
    assert c.apply(fix(40)) == (True, None)


def test_min_period() -> None:
    c = chain(min_period_s=30)
    assert c.apply(fix(0))[0]
    assert c.apply(fix(10)) == (False, "min_period")
    assert c.apply(fix(30)) == (True, None)


def test_late_fix_skips_jump_and_min_period_and_keeps_latest() -> None:
    c = chain(min_period_s=30)
    assert c.apply(fix(0))[0]
    assert c.apply(fix(100, lat=39.91))[0]
    # A blind-area resend from between them, far away from the newer fix: still stored.
    assert c.apply(fix(50, lat=39.95)) == (True, None)
    latest = c.latest("A")
    assert latest is not None and latest.time == T0 + timedelta(seconds=100)
    # ... but a late duplicate is still a duplicate
    assert c.apply(fix(50, lat=39.95)) == (False, "duplicate")


def test_counts_by_reason_and_terminal() -> None:
    c = chain()
    c.apply(fix(valid=False))
    c.apply(fix(lat=0.0, lon=0.0, terminal="B"))
    c.apply(fix(1, lat=0.0, lon=0.0, terminal="B"))
    assert c.counts == {"invalid": 1, "zero": 2}
    assert c.counts_by_terminal["B"] == {"zero": 2}


def test_per_terminal_override() -> None:
    base = FilterConfig()
    c = FilterChain(base, overrides={"slow": with_overrides(base, max_speed_kmh=60)},
                    clock=lambda: NOW)
    assert c.apply(fix(speed_kmh=80, terminal="slow")) == (False, "max_speed")
    assert c.apply(fix(speed_kmh=80, terminal="fast")) == (True, None)


def test_filter_list_and_reasons() -> None:
    c = chain()
    kept = c.filter([fix(0), fix(0), fix(1, valid=False), fix(2)])
    assert [f.time.second for f in kept] == [0, 2]
    assert set(REASONS) == {
        "invalid", "zero", "duplicate", "future", "outdated", "max_speed", "accuracy",
        "jump", "min_period",
    }
