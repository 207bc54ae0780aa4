"""Hand accepted fixes on: the Redis stream ``fixes`` and the live state (最新位置).

Stream entries carry the Fix as JSON plus the vehicle it was bound to when it arrived.
Live state is the newest fix per terminal (hash ``live:last``), a GEO set (``live:geo``) and
a pub/sub channel (``live``). A Lua script compares times inside Redis, so a late or
out-of-order fix never moves "latest" backwards and publishes nothing, even with several
gateway processes writing at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from fleet.fix import Fix

STREAM = "fixes"
LIVE_LAST = "live:last"
LIVE_GEO = "live:geo"
LIVE_CHANNEL = "live"

# KEYS: last-hash, geo-set; ARGV: terminal, epoch-ms, json, lon, lat, channel
_LIVE_SCRIPT = """
local prev = redis.call('HGET', KEYS[1], ARGV[1] .. ':t')
if prev and tonumber(prev) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1] .. ':t', ARGV[2], ARGV[1], ARGV[3])
redis.call('GEOADD', KEYS[2], ARGV[4], ARGV[5], ARGV[1])
redis.call('PUBLISH', ARGV[6], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class Routed:
    """A fix and the vehicle its terminal was bound to on arrival."""

    fix: Fix
    vehicle_id: int | None


def encode_entry(item: Routed) -> dict[str, str]:
    return {"fix": json.dumps(item.fix.to_json(), ensure_ascii=False, separators=(",", ":")),
            "vehicle_id": "" if item.vehicle_id is None else str(item.vehicle_id)}


def decode_entry(fields: dict[bytes, bytes] | dict[str, str]) -> Routed:
    """Inverse of :func:`encode_entry`; raises ``ValueError``/``KeyError`` on a bad entry."""
    norm = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
                                                         else v) for k, v in fields.items()}
    vehicle = norm.get("vehicle_id") or ""
    return Routed(Fix.from_json(json.loads(norm["fix"])), int(vehicle) if vehicle else None)


class RedisSink:
    """Pipelined XADD to a bounded stream, then live-state updates."""

    def __init__(self, client: redis.Redis, stream: str = STREAM,
                 maxlen: int = 2_000_000) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self._live = client.register_script(_LIVE_SCRIPT)

    def put(self, items: Sequence[Routed]) -> None:
        """Write ``items`` to the stream (one round trip), then update live state.

        Returns only after Redis has the entries: callers acknowledge upstream afterwards.
        """
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            pipe.xadd(self.stream, encode_entry(item), maxlen=self.maxlen, approximate=True)
        pipe.execute()
        self.update_live(items)

    def update_live(self, items: Sequence[Routed]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            fix = item.fix
            if not fix.valid:
                continue
            payload = fix.to_json()
            payload["vehicle_id"] = item.vehicle_id
            self._live(keys=[LIVE_LAST, LIVE_GEO],
                       args=[fix.terminal_id, int(fix.time.timestamp() * 1000),
                             json.dumps(payload, ensure_ascii=False), fix.lon, fix.lat,
                             LIVE_CHANNEL], client=pipe)
        pipe.execute()


def live_snapshot(client: redis.Redis) -> dict[str, dict[str, object]]:
    """Newest fix per terminal: {terminal_id: fix json with vehicle_id}."""
    raw = client.hgetall(LIVE_LAST)
    out: dict[str, dict[str, object]] = {}
    for key, value in raw.items():
        k = key.decode() if isinstance(key, bytes) else key
        if k.endswith(":t"):
            continue
        out[k] = json.loads(value)
    return out
