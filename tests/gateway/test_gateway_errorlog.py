"""Bad NMEA is counted every time but logged at most once a minute per terminal."""

from __future__ import annotations

from datetime import UTC, datetime

from structlog.testing import capture_logs

from fleet.fix import Fix
from fleet.models import TerminalProtocol
from gateway import metrics
from gateway.directory import Entry
from gateway.ingest import ErrorLogLimiter, Ingest
from gateway.sink import Routed
from simulators.noise import fix_to_nmea


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Directory:
    """Two registered, bound NMEA terminals (the directory's database is not the point)."""

    def by_id(self, terminal_id: str) -> Entry | None:
        return Entry(terminal_id, 1, TerminalProtocol.nmea_mqtt, None) \
            if terminal_id in ("G1", "G2") else None


class ListSink:
    def __init__(self) -> None:
        self.items: list[Routed] = []

    def put(self, items: list[Routed]) -> None:
        self.items.extend(items)


def test_limiter_admits_one_line_per_period_and_reports_suppressed() -> None:
    clock = Clock()
    lim = ErrorLogLimiter(period_s=60, clock=clock)
    assert lim.admit("a") == 0
    assert [lim.admit("a") for _ in range(5)] == [None] * 5
    assert lim.admit("b") == 0  # another terminal has its own budget
    clock.now += 61
    assert lim.admit("a") == 5  # ... and the next line says how many were held back
    assert lim.admit("a") is None


def _bad_count() -> float:
    return sum(s.value for m in metrics.DECODE_ERRORS.collect() for s in m.samples
               if s.name.endswith("_total"))


def test_garbage_flood_is_counted_every_time_logged_once_good_fixes_kept() -> None:
    sink = ListSink()
    ingest = Ingest(Directory(), sink)  # type: ignore[arg-type]
    ingest.error_log = ErrorLogLimiter(period_s=60, clock=Clock())
    t0 = datetime.now(UTC).replace(microsecond=0)
    before = _bad_count()
    with capture_logs() as logs:
        for i in range(50):
            good = "\r\n".join(fix_to_nmea(Fix("G1", t0.replace(second=i), 30.6 + i * 1e-4,
                                               104.0, speed_kmh=20.0)))
            ingest.put_nmea("G1", "$GPRMC,garbage*00\r\n" + good)
        ingest.put_nmea("G2", "$GPGGA,also,garbage*11")
    lines = [entry for entry in logs if entry["event"] == "nmea_error"]
    assert [entry["terminal"] for entry in lines] == ["G1", "G2"]
    assert _bad_count() - before == 51
    assert len(sink.items) == 50  # every good fix around the garbage went on
