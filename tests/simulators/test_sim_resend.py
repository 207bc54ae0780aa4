"""The simulated JT/T 808 terminal resends like a real one.

A real Jt808Server (the gateway's) on an ephemeral port, whose sink refuses every fifth
hand-on (0x8001 result 1) and which cuts every connection once mid-run: the simulator's
terminal reconnects, authenticates again with its code and resends, so every fix it drove
arrives, in order, and none is reported sent that the platform did not take.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from fleet.fix import Fix
from fleet.settings import Settings
from gateway.jt808.server import InMemoryRegistry, Jt808Server
from simulators.run import SimulationSpec, drive

PHONE = "13900001234"


class FlakySink:
    """Takes fixes, but refuses every ``every``-th hand-on (as Redis down would), and at
    hand-on ``drop_at`` cuts every connection instead (as a gateway restart would)."""

    def __init__(self, every: int, drop_at: int) -> None:
        self.every, self.drop_at = every, drop_at
        self.calls = 0
        self.fixes: list[Fix] = []
        self.server: Jt808Server | None = None

    async def put(self, fixes: list[Fix]) -> None:
        self.calls += 1
        if self.calls == self.drop_at and self.server is not None:
            for task in list(self.server._tasks):  # noqa: SLF001 - a test pulling the plug
                task.cancel()
            await asyncio.sleep(0)  # this connection's own task is cancelled here
        if self.calls % self.every == 0:
            raise ConnectionError("stream unavailable")
        self.fixes.extend(fixes)


class Platform:
    """A Jt808Server on its own event loop thread."""

    def __init__(self, sink: FlakySink) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = Jt808Server("127.0.0.1", 0, InMemoryRegistry(), sink)
        sink.server = self.server
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def platform() -> Iterator[tuple[Platform, FlakySink]]:
    sink = FlakySink(every=5, drop_at=23)
    p = Platform(sink)
    yield p, sink
    p.close()


def _fixes(n: int) -> list[Fix]:
    t0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
    return [Fix(f"J{PHONE}", t0 + timedelta(seconds=i), 30.6 + i * 1e-4, 104.06,
                speed_kmh=36.0, course=0.0, extras={"seq": i}) for i in range(n)]


def test_jt808_terminal_resends_refused_and_cut_locations(
        platform: tuple[Platform, FlakySink]) -> None:
    server, sink = platform
    fixes = _fixes(60)
    spec = SimulationSpec(terminals=1, protocol="jt808", speedup=0.0, register=False)
    settings = Settings(jt808_port=server.server.port)
    sent = drive(spec, settings, PHONE, fixes, threading.Event(), fixes[0].time)

    assert sent == len(fixes)
    assert [f.time for f in sink.fixes] == [f.time for f in fixes]  # each once, in order
    assert server.server.stats.sink_errors >= 10  # the platform did refuse some
    assert server.server.stats.auth_ok >= 2  # authenticated again after the cut
