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

STREAM = "fixes"
LIVE_LAST = "live:last"
LIVE_GEO = "live:geo"
LIVE_CHANNEL = "live"

# KEYS: last-hash, geo-set; ARGV: channel, then 5 per fix: terminal, epoch-ms, json, lon, lat.
# One call carries a whole batch (one EVALSHA instead of one per fix); fixes are handled in
# order, each exactly as the former one-fix script did: a fix not newer than the stored one
# changes and publishes nothing. A failing GEOADD (bad coordinates) used to abort only its
# own fix's script (after its HSET, before its PUBLISH) and make the pipeline raise; pcall
# keeps that: the batch goes on and the call returns the first error at the end.
_LIVE_SCRIPT = """
local err
local n = 0
for i = 2, #ARGV, 5 do
  local tid, ms, doc = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local prev = redis.call('HGET', KEYS[1], tid .. ':t')
  if not (prev and tonumber(prev) >= tonumber(ms)) then
    redis.call('HSET', KEYS[1], tid .. ':t', ms, tid, doc)
    local ok = redis.pcall('GEOADD', KEYS[2], ARGV[i + 3], ARGV[i + 4], tid)
    if type(ok) == 'table' and ok.err then
      err = err or ok.err
    else
      redis.call('PUBLISH', ARGV[1], doc)
      n = n + 1
    end
  end
end
if err then return redis.error_reply(err) end
return n
"""
LIVE_BATCH = 256  # fixes per script call: bounds how long one call holds Redis


@dataclass(frozen=True, slots=True)
class Routed:
    """A fix and the vehicle its terminal was bound to on arrival."""

    fix: Fix
    vehicle_id: int | None


def encode_entry(item: Routed) -> dict[str, str]:
    vehicle_id = item.vehicle_id
    return {"fix": fix_json(item.fix), "vehicle_id": "" if vehicle_id is None else str(vehicle_id)}


# ------------------------------------------------------------------ Fix → JSON, hot path
# ``json.dumps(fix.to_json(), …)`` builds a dict and a new JSONEncoder per fix, and the sink
# does it twice per fix (stream entry, live state). ``fix_json``/``_live_json`` write the same
# text directly when every field has its plain type (str/float/int/None/bool): strings are
# quoted by the json module's own function and numbers by ``repr``, as its C encoder does.
# Anything unusual (NaN, subclasses, odd extras) falls back to the encoder itself.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_LIVE_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # == json.dumps(x, ensure_ascii=False)
_quote = json.encoder.encode_basestring  # the ensure_ascii=False string encoder
_KEYS = ("terminal_id", "time", "lat", "lon", "speed_kmh", "course", "altitude_m", "hdop",
         "satellites", "valid", "protocol", "alarm", "status")  # Fix.to_json order, then extras
_COMPACT_KEYS = tuple(f'"{k}":' for k in _KEYS)
_SPACED_KEYS = tuple(f'"{k}": ' for k in _KEYS)


class _NotPlain(Exception):
    """A field needs the real encoder."""


def _num(v: object) -> str:
    t = type(v)
    if t is float:
        if v - v == 0:  # type: ignore[operator]  # finite (NaN/inf are spelled specially)
            return repr(v)
        raise _NotPlain
    if t is int:
        return repr(v)
    if v is None:
        return "null"
    raise _NotPlain


def _values(fix: Fix) -> list[str]:
    """JSON texts of the ``_KEYS`` values of ``fix`` (raises ``_NotPlain``)."""
    tid, protocol, valid = fix.terminal_id, fix.protocol, fix.valid
    if type(tid) is not str or type(protocol) is not str or type(valid) is not bool:
        raise _NotPlain
    t = fix.time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    lat, lon, speed, course = fix.lat, fix.lon, fix.speed_kmh, fix.course
    if type(lat) is float and type(lon) is float and type(speed) is float and type(course) is float:
        total = lat + lon + speed + course  # NaN or ±inf anywhere makes the sum non-finite
        if total - total != 0:  # (an overflow of finite values just takes the encoder too)
            raise _NotPlain
        lat_s, lon_s, speed_s, course_s = repr(lat), repr(lon), repr(speed), repr(course)
    else:
        lat_s, lon_s, speed_s, course_s = _num(lat), _num(lon), _num(speed), _num(course)
    return [_quote(tid), f'"{t}"', lat_s, lon_s, speed_s, course_s, _num(fix.altitude_m),
            _num(fix.hdop), _num(fix.satellites), "true" if valid else "false",
            _quote(protocol), _num(fix.alarm), _num(fix.status)]


def _extras(extras: object, sep: str) -> str:
    """``extras`` as JSON with item separator ``sep`` ("," compact, ", " default)."""
    if type(extras) is dict:
        if not extras:
            return "{}"
        if len(extras) == 1:  # the NMEA decoder's {"sentences": [...]}
            lst = extras.get("sentences")
            if type(lst) is list:
                try:  # _quote takes exactly what the encoder writes as a string (str)
                    items = sep.join(map(_quote, lst))
                except TypeError:
                    raise _NotPlain from None
                return '{"sentences"' + (":[" if sep == "," else ": [") + items + "]}"
    raise _NotPlain


def _compact_doc(vals: list[str], extras: object) -> str:
    return "{" + ",".join(map(str.__add__, _COMPACT_KEYS, vals)) + ',"extras":' \
        + _extras(extras, ",") + "}"


def _live_doc(vals: list[str], extras: object, vehicle_id: int | None) -> str:
    return ("{" + ", ".join(map(str.__add__, _SPACED_KEYS, vals)) + ', "extras": '
            + _extras(extras, ", ") + ', "vehicle_id": ' + _num(vehicle_id) + "}")


def fix_json(fix: Fix) -> str:
    """The stream's JSON text of a fix: exactly ``json.dumps(fix.to_json(),
    ensure_ascii=False, separators=(",", ":"))``, without the per-fix encoder."""
    try:
        return _compact_doc(_values(fix), fix.extras)
    except _NotPlain:
        return _ENCODE(fix.to_json())


def _live_json(fix: Fix, vehicle_id: int | None) -> str:
    """``json.dumps(fix.to_json() | {"vehicle_id": vehicle_id}, ensure_ascii=False)``."""
    try:
        return _live_doc(_values(fix), fix.extras, vehicle_id)
    except _NotPlain:
        payload = fix.to_json()
        payload["vehicle_id"] = vehicle_id
        return _LIVE_ENCODE(payload)


def _entry_json(fix: Fix, vehicle_id: int | None, live: bool) -> tuple[str, str | None]:
    """``(fix_json(fix), _live_json(fix, vehicle_id) if live else None)``, the field texts
    worked out once for both."""
    try:
        vals = _values(fix)
        doc = _compact_doc(vals, fix.extras)
        return doc, _live_doc(vals, fix.extras, vehicle_id) if live else None
    except _NotPlain:
        return fix_json(fix), _live_json(fix, vehicle_id) if live else None


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
                 maxlen: int = 2_000_000) -> None:
        self.client = client
        self.stream = stream
        self.maxlen = maxlen
        self._live = client.register_script(_LIVE_SCRIPT)

    def put(self, items: Sequence[Routed]) -> None:
        """Write ``items`` to the stream and update live state, in one round trip.

        Returns only after Redis has the entries: callers acknowledge upstream afterwards.
        Raises the first error (a failed XADD, or a live-state error such as bad coordinates,
        as before) after the whole pipeline ran; a script Redis lost (restart, SCRIPT FLUSH)
        is loaded again and its calls repeated.
        """
        if not items:
            return
        pipe = self.client.pipeline(transaction=False)
        maxlen = self.maxlen
        plain = type(maxlen) is int and maxlen >= 0
        # What pipe.xadd(stream, encode_entry(item), maxlen=maxlen, approximate=True)
        # sends, with xadd's argument checks and list building done once per batch.
        head = (self.stream, b"MAXLEN", b"~", str(maxlen), "*")
        command = pipe.execute_command
        live: list[object] = []
        for item in items:
            fix, vehicle_id = item.fix, item.vehicle_id
            valid = fix.valid
            doc, live_doc = _entry_json(fix, vehicle_id, valid)
            vehicle = "" if vehicle_id is None else str(vehicle_id)
            if plain:
                command("XADD", *head, "fix", doc, "vehicle_id", vehicle)
            else:
                pipe.xadd(self.stream, {"fix": doc, "vehicle_id": vehicle}, maxlen=maxlen,
                          approximate=True)
            if valid:
                live += (fix.terminal_id, int(fix.time.timestamp() * 1000), live_doc,
                         fix.lon, fix.lat)
        chunks = self._queue_live(pipe, live)
        results = pipe.execute(raise_on_error=False)
        for result in results[: len(items)]:
            if isinstance(result, Exception):
                raise result
        self._check_live(chunks, results[len(items):])

    def update_live(self, items: Sequence[Routed]) -> None:
        args: list[object] = []
        for item in items:
            fix = item.fix
            if not fix.valid:
                continue
            args += (fix.terminal_id, int(fix.time.timestamp() * 1000),
                     _live_json(fix, item.vehicle_id), fix.lon, fix.lat)
        if not args:
            return
        pipe = self.client.pipeline(transaction=False)
        chunks = self._queue_live(pipe, args)
        self._check_live(chunks, pipe.execute(raise_on_error=False))

    def _queue_live(self, pipe: Any, args: list[object]) -> list[list[object]]:
        """EVALSHA of the live script per ``LIVE_BATCH`` fixes, queued on ``pipe``.

        Called directly rather than through redis-py's Script, whose pipeline support sends
        a SCRIPT EXISTS (a round trip of its own) before every execute."""
        step = 5 * LIVE_BATCH
        chunks = [args[i : i + step] for i in range(0, len(args), step)]
        sha = self._live.sha
        for chunk in chunks:
            pipe.evalsha(sha, 2, LIVE_LAST, LIVE_GEO, LIVE_CHANNEL, *chunk)
        return chunks

    def _check_live(self, chunks: list[list[object]], results: list[Any]) -> None:
        error: Exception | None = None
        for chunk, result in zip(chunks, results, strict=True):
            if isinstance(result, NoScriptError):
                self.client.script_load(_LIVE_SCRIPT)
                try:
                    self.client.evalsha(self._live.sha, 2, LIVE_LAST, LIVE_GEO, LIVE_CHANNEL,
                                        *chunk)
                except redis.ResponseError as exc:
                    error = error or exc
            elif isinstance(result, Exception):
                error = error or result
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
