"""The per-process cap on requests in progress (fleet.app._InFlightCap)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from fleet.app import _InFlightCap


def _run(cap: _InFlightCap, path: str = "/api/x") -> Any:
    async def call() -> tuple[int, bytes]:
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(m: dict[str, Any]) -> None:
            if m["type"] == "http.response.start":
                out["status"] = m["status"]
            else:
                out["body"] += m.get("body", b"")

        await cap({"type": "http", "path": path, "method": "GET", "headers": []}, receive, send)
        return out["status"], out["body"]

    return call()


def test_waits_beyond_the_limit_then_answers_503_beyond_the_queue() -> None:
    active, peak = 0, 0
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await release.wait()
        active -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> list[tuple[int, bytes]]:
        cap = _InFlightCap(app, limit=2, queued=1)
        tasks = [asyncio.create_task(_run(cap)) for _ in range(3)]
        await asyncio.sleep(0.01)
        assert peak == 2 and cap.waiting == 1  # the third waits, holding nothing
        rejected = await _run(cap)  # the queue is full: answered at once
        health = asyncio.create_task(_run(cap, "/healthz"))  # liveness is never held back
        await asyncio.sleep(0.01)
        assert active == 3
        release.set()
        await health
        return [rejected, *[await t for t in tasks]]

    rejected, *done = asyncio.run(main())
    assert rejected[0] == 503
    assert orjson.loads(rejected[1])["error"] == "service_unavailable"
    assert [s for s, _ in done] == [200, 200, 200]
    assert peak == 3  # two capped requests plus the exempt probe
