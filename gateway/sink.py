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
from datetime import UTC
from typing import Any

import orjson
import redis
from redis.exceptions import NoScriptError

from fleet.fix import Fix
from gateway import metrics

STREAM = "fixes"
LIVE_LAST = "live:last"
LIVE_GEO = "live:geo"
LIVE_CHANNEL = "live"

# KEYS: stream, last-hash, geo-set; ARGV: channel, stream MAXLEN ("" = unbounded), "1" to
# add the fixes to the stream ("0": live state only), then 5 per fix: terminal, epoch-ms
# ("" = no live state: an invalid fix), the stream JSON, vehicle id ("" = none), lon, lat
# (6 per fix).
#
# One call carries a batch: each fix's stream entry and its live state, in order. The stream
# JSON text crosses the wire once; the live document is that text with ``vehicle_id``
# appended (the same JSON object as ``fix.to_json() | {"vehicle_id": …}``). Sending it
# twice (an XADD per fix plus the script's arguments) was a third of the sink's redis-py
# packing and parsing. A fix not newer than the stored one changes and publishes nothing.
# A failing XADD aborts the call (the entries before it stay, and the caller retries the
# batch: duplicates in the stream are harmless downstream). A GEOADD that fails (Redis's GEO
# index holds latitudes within ±85.05112878° only, where a valid WGS-84 fix may lie) is no
# error of the batch: raising made the gateway retry the same batch for ever, unacknowledged,
# one bad terminal stalling all. The fix stays the terminal's last (HSET) and is published;
# the terminal leaves the GEO index (it must not keep an older position there) and the call
# returns how many such fixes it met, which the gateway counts.
_SINK_SCRIPT = """
local n, skipped = 0, 0
local stream, last, geo = KEYS[1], KEYS[2], KEYS[3]
local channel, maxlen, xadd = ARGV[1], ARGV[2], ARGV[3] == '1'
for i = 4, #ARGV, 6 do
  local tid, ms, doc, vid = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if xadd then
    if maxlen == '' then
      redis.call('XADD', stream, '*', 'fix', doc, 'vehicle_id', vid)
    else
      redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'fix', doc, 'vehicle_id', vid)
    end
  end
  if ms ~= '' then
    local prev = redis.call('HGET', last, tid .. ':t')
    if not (prev and tonumber(prev) >= tonumber(ms)) then
      if vid == '' then vid = 'null' end
      local live = string.sub(doc, 1, -2) .. ',"vehicle_id":' .. vid .. '}'
      redis.call('HSET', last, tid .. ':t', ms, tid, live)
      local ok = redis.pcall('GEOADD', geo, ARGV[i + 4], ARGV[i + 5], tid)
      if type(ok) == 'table' and ok.err then
        redis.call('ZREM', geo, tid)
        skipped = skipped + 1
      end
      redis.call('PUBLISH', channel, live)
      n = n + 1
    end
  end
end
return {n, skipped}
"""
SINK_BATCH = 256  # fixes per script call: bounds how long one call holds Redis


@dataclass(frozen=True, slots=True)
class Routed:
    """A fix and the vehicle its terminal was bound to on arrival."""

    fix: Fix
    vehicle_id: int | None


def encode_entry(item: Routed) -> dict[str, str]:
    vehicle_id = item.vehicle_id
    return {"fix": fix_json(item.fix), "vehicle_id": "" if vehicle_id is None else str(vehicle_id)}


# ------------------------------------------------------------------ Fix → JSON, hot path
# The stream carries ``fix.to_json()`` as compact JSON. ``json.dumps`` (a new encoder per
# call) and then a hand-assembled string with ``repr`` per number cost ~9 µs a fix — as
# much as the rest of the sink. orjson writes the same JSON object in ~1.3 µs; its one
# difference that matters is that it writes NaN and ±Infinity as ``null``, so a fix with a
# non-finite number (or a non-number where a number belongs, or extras other than the
# decoders' plain ones, or an integer beyond 64 bits) takes the json module's encoder as
# before, which spells NaN as the writer reads it back. (Number spelling may differ from
# the json module's, e.g. ``1e-5`` for ``1e-05``: the same value for every reader.)
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_UTC_Z = orjson.OPT_UTC_Z  # "…Z", as to_json writes UTC


def _plain_extras(extras: object) -> bool:
    """Extras orjson writes exactly as the json module would: {} or {"sentences": [str…]}."""
    if type(extras) is not dict:
        return False
    if not extras:
        return True
    lst = extras.get("sentences") if len(extras) == 1 else None
    return type(lst) is list and all(type(x) is str for x in lst)


def fix_json_bytes(fix: Fix) -> bytes:
    """The stream's JSON of a fix (UTF-8): the object ``fix.to_json()``."""
    try:
        total = fix.lat + fix.lon + fix.speed_kmh + fix.course
        alt, hdop = fix.altitude_m, fix.hdop
        if (total - total == 0 and (alt is None or alt - alt == 0)
                and (hdop is None or hdop - hdop == 0) and _plain_extras(fix.extras)):
            t = fix.time
            if t.tzinfo is not UTC:
                t = t.astimezone(UTC)
            return orjson.dumps({
                "terminal_id": fix.terminal_id, "time": t, "lat": fix.lat, "lon": fix.lon,
                "speed_kmh": fix.speed_kmh, "course": fix.course, "altitude_m": alt,
                "hdop": hdop, "satellites": fix.satellites, "valid": fix.valid,
                "protocol": fix.protocol, "alarm": fix.alarm, "status": fix.status,
                "extras": fix.extras}, option=_UTC_Z)
    except (TypeError, orjson.JSONEncodeError):  # not numbers, big integers, bad strings
        pass
    return _ENCODE(fix.to_json()).encode()


def fix_json(fix: Fix) -> str:
    """:func:`fix_json_bytes` as text."""
    return fix_json_bytes(fix).decode()


def live_json(doc: str, vehicle_id: int | None) -> str:
    """The live-state document (``live:last``, channel ``live``) of a fix whose stream JSON is
    ``doc``: the same object with ``vehicle_id`` added last. The sink's script builds it in
    Redis the same way."""
    return doc[:-1] + ',"vehicle_id":' + ("null" if vehicle_id is None else str(vehicle_id)) \
        + "}"


def decode_entry(fields: dict[bytes, bytes] | dict[str, str]) -> Routed:
    """Inverse of :func:`encode_entry`; raises ``ValueError``/``KeyError`` on a bad entry."""
    doc: Any = fields.get(b"fix")  # type: ignore[call-overload]
    if doc is not None:  # what a Redis client returns: bytes keys, bytes values
        vehicle: Any = fields.get(b"vehicle_id") or b""  # type: ignore[call-overload]
    else:
        norm = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        doc = norm["fix"]
        vehicle = norm.get("vehicle_id") or ""
    try:  # orjson: the writer's hot path; it refuses NaN/Infinity, which json.dumps may write
        data = orjson.loads(doc)
    except orjson.JSONDecodeError:
        data = json.loads(doc)
    return Routed(Fix.from_json(data), int(vehicle) if vehicle else None)


class RedisSink:
    """Pipelined XADD to a bounded stream, then live-state updates."""

    def __init__(self, client: redis.Redis, stream: str = STREAM,
                 maxlen: int | None = 2_000_000) -> None:
        """``maxlen``: the stream is trimmed to about this many entries (None: never)."""
        if maxlen is not None and not (isinstance(maxlen, int) and maxlen >= 0):
            raise ValueError(f"maxlen must be a non-negative int or None, not {maxlen!r}")
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self._maxlen = "" if maxlen is None else str(maxlen)
        self._script = client.register_script(_SINK_SCRIPT)

    def put(self, items: Sequence[Routed]) -> None:
        """Write ``items`` to the stream and update live state, in one round trip.

        Returns only after Redis has the entries: callers acknowledge upstream afterwards.
        Raises the first error (a failed XADD) after every call of the batch ran; a script
        Redis lost (restart, SCRIPT FLUSH) is loaded again and its calls repeated. A fix the
        GEO index cannot hold is counted (``gongche_gateway_live_geo_skipped_total``), not
        raised.
        """
        self._run(items, True)

    def update_live(self, items: Sequence[Routed]) -> None:
        """Live state only (no stream entries) for the valid fixes of ``items``."""
        self._run([i for i in items if i.fix.valid], False)

    def _run(self, items: Sequence[Routed], stream: bool) -> None:
        if not items:
            return
        args: list[object] = []
        for item in items:
            fix, vehicle_id = item.fix, item.vehicle_id
            vehicle = "" if vehicle_id is None else str(int(vehicle_id))
            if fix.valid:
                args += (fix.terminal_id, int(fix.time.timestamp() * 1000),
                         fix_json_bytes(fix), vehicle, fix.lon, fix.lat)
            else:  # stored, but never the terminal's live position
                args += (fix.terminal_id, "", fix_json_bytes(fix), vehicle, "", "")
        step = 6 * SINK_BATCH
        chunks = [args[i : i + step] for i in range(0, len(args), step)]
        head = (self.stream, LIVE_LAST, LIVE_GEO, LIVE_CHANNEL, self._maxlen,
                "1" if stream else "0")
        # EVALSHA directly rather than through redis-py's Script, whose pipeline support
        # sends a SCRIPT EXISTS (a round trip of its own) before every execute
        sha = self._script.sha
        pipe = self.client.pipeline(transaction=False)
        for chunk in chunks:
            pipe.evalsha(sha, 3, *head, *chunk)
        results = pipe.execute(raise_on_error=False)
        error: Exception | None = None
        skipped = 0
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, NoScriptError):  # nothing of this call ran: run it again
                self.client.script_load(_SINK_SCRIPT)
                try:
                    result = self.client.evalsha(sha, 3, *head, *chunk)
                except redis.ResponseError as exc:
                    error = error or exc
                    continue
            if isinstance(result, Exception):
                error = error or result
            else:
                skipped += int(result[1])
        if skipped:
            metrics.LIVE_GEO_SKIPPED.inc(skipped)
        if error is not None:
            raise error


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
