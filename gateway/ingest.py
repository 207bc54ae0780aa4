"""The protocol-free part of the gateway: directory check → filters → sink.

Decoders (NMEA, JT/T 808) turn bytes into Fixes; this turns Fixes into stream entries. It
is thread-safe: the MQTT client thread and the JT/T 808 event loop may call it at once.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from fleet.fix import Fix
from fleet.logging import get_logger
from gateway import metrics
from gateway.directory import Entry, TerminalDirectory
from gateway.filters import FilterChain
from gateway.nmea import NmeaAssembler
from gateway.sink import Routed

log = get_logger(__name__)

# Labelled Prometheus children, looked up once per label value instead of per message
# (``labels()`` takes a lock and builds a tuple each call); created on first use as before.
_children: dict[tuple[str, str], object] = {}


def _child(counter: str, protocol: str) -> Any:
    child = _children.get((counter, protocol))
    if child is None:
        child = _children[(counter, protocol)] = getattr(metrics, counter).labels(protocol)
    return child


class ErrorLogLimiter:
    """At most one log line per terminal and ``period_s`` for bad input; the rest counted.

    Every error is counted in ``/metrics`` anyway; the log is for a person looking at one
    terminal, and a terminal sending garbage at 10 Hz must not flood it (or the disk).
    The next line logged for that terminal says how many were suppressed in between.
    Hand-written: structlog and the standard logging module have no per-key rate limit.
    """

    def __init__(self, period_s: float = 60.0, clock: Any = time.monotonic) -> None:
        self.period_s = period_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """None: do not log; else log now, with this many suppressed since the last line."""
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


class Sink(Protocol):
    def put(self, items: Sequence[Routed]) -> None: ...


class RejectedAudit:
    """Rejected fixes kept for audit when configured (``GONGCHE_KEEP_REJECTED=N``).

    They go to the bounded Redis stream ``fixes:rejected`` (the newest N), each with the
    reason, so a supervisor or an engineer can see what the filters dropped and why —
    written in small batches, off the accepted fixes' path.
    """

    STREAM = "fixes:rejected"

    def __init__(self, limit: int = 10_000, client: Any = None) -> None:
        self.limit = limit
        self.client = client
        self.items: list[tuple[Fix, str]] = []

    def add(self, fix: Fix, reason: str) -> None:
        self.items.append((fix, reason))
        if self.client is None and len(self.items) > self.limit:
            del self.items[: len(self.items) - self.limit]

    def flush(self) -> None:
        if self.client is None or not self.items:
            return
        batch, self.items = self.items, []
        pipe = self.client.pipeline(transaction=False)
        for fix, reason in batch:
            pipe.xadd(self.STREAM, {"fix": json.dumps(fix.to_json(), ensure_ascii=False),
                                    "reason": reason}, maxlen=self.limit, approximate=True)
        pipe.execute()


class Ingest:
    def __init__(self, directory: TerminalDirectory, sink: Sink,
                 filters: FilterChain | None = None,
                 keep_rejected: RejectedAudit | None = None) -> None:
        self.directory = directory
        self.sink = sink
        self.filters = filters or FilterChain()
        self.keep_rejected = keep_rejected
        self._assemblers: dict[str, NmeaAssembler] = {}
        self._lock = threading.Lock()
        self.error_log = ErrorLogLimiter()

    # --- NMEA over MQTT -----------------------------------------------------------------
    def route_nmea(self, terminal_id: str, payload: bytes | str) -> list[Routed]:
        """Decode one MQTT payload (whole epochs) and return the routed, accepted fixes."""
        _child("MESSAGES", "nmea-mqtt").inc()
        entry = self.directory.by_id(terminal_id)
        if not self._admissible(entry, "nmea-mqtt", terminal_id):
            return []
        with self._lock:
            assembler = self._assemblers.get(terminal_id)
            if assembler is None:
                assembler = self._assemblers[terminal_id] = NmeaAssembler(terminal_id)
            fixes, errors = assembler.feed_text(payload)
            fixes += assembler.flush()  # a payload carries whole epochs: emit them now
        for err in errors:
            metrics.DECODE_ERRORS.labels("nmea-mqtt", _reason(err.reason)).inc()
            suppressed = self.error_log.admit(terminal_id)
            if suppressed is not None:
                log.warning("nmea_error", terminal=terminal_id, reason=err.reason,
                            sentence=err.sentence[:120], suppressed_since_last=suppressed)
        assert entry is not None
        return self._filter(fixes, entry, "nmea-mqtt")

    # --- JT/T 808 -------------------------------------------------------------------------
    def route_jt808(self, fixes: Sequence[Fix]) -> list[Routed]:
        """JT/T 808 fixes carry the SIM phone as terminal id: map to gongche's terminal."""
        out: list[Routed] = []
        for phone, group in _group_by_terminal(fixes).items():
            entry = self.directory.by_phone(phone)
            if not self._admissible(entry, "jt808", phone):
                continue
            assert entry is not None
            renamed = [_renamed(f, entry.terminal_id) for f in group]
            out += self._filter(renamed, entry, "jt808")
        return out

    def put_jt808(self, fixes: Sequence[Fix]) -> None:
        self.put(self.route_jt808(fixes))

    def put_nmea(self, terminal_id: str, payload: bytes | str) -> None:
        self.put(self.route_nmea(terminal_id, payload))

    def put(self, routed: Sequence[Routed]) -> None:
        """Hand on; if the sink fails, forget the fixes so the terminal's resend is taken."""
        try:
            self.sink.put(routed)
        except Exception:
            with self._lock:
                self.filters.forget(r.fix for r in routed)
            raise

    # --- shared ---------------------------------------------------------------------------
    def _admissible(self, entry: Entry | None, protocol: str, terminal: str) -> bool:
        reason = None
        if entry is None:
            reason = "unregistered"
        elif entry.vehicle_id is None:
            reason = "unbound"
        elif entry.protocol.value != protocol:
            reason = "wrong_protocol"
        if reason:
            metrics.REJECTED.labels(reason, terminal).inc()
            return False
        return True

    def _filter(self, fixes: Sequence[Fix], entry: Entry, protocol: str) -> list[Routed]:
        _child("FIXES", protocol).inc(len(fixes))
        accepted: list[Routed] = []
        vehicle_id = entry.vehicle_id
        with self._lock:
            apply = self.filters.apply
            for fix in fixes:
                ok, reason = apply(fix)
                if ok:
                    accepted.append(Routed(fix, vehicle_id))
                    continue
                metrics.REJECTED.labels(reason or "?", fix.terminal_id).inc()
                if self.keep_rejected is not None:
                    self.keep_rejected.add(fix, reason or "?")
            if self.keep_rejected is not None:
                self.keep_rejected.flush()
        _child("ACCEPTED", protocol).inc(len(accepted))
        return accepted


def _group_by_terminal(fixes: Sequence[Fix]) -> dict[str, list[Fix]]:
    groups: dict[str, list[Fix]] = {}
    for f in fixes:
        groups.setdefault(f.terminal_id, []).append(f)
    return groups


def _renamed(fix: Fix, terminal_id: str) -> Fix:
    extras = dict(fix.extras)
    extras.setdefault("phone", fix.terminal_id)
    return dataclasses.replace(fix, terminal_id=terminal_id, extras=extras)


def _reason(reason: str) -> str:
    """Bound the label's cardinality: the first word of a decoder's reason."""
    return reason.split(":", 1)[0].split(" ", 1)[0][:32] or "unknown"
