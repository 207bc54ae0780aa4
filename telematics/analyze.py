"""Offline analysis (离线分析) of a fix log: the JSON printed by the analysis command.

``analyze_fixes(fixes)`` returns exactly::

    {"distance_km": float,
     "trips":  [{"start": iso, "end": iso, "distance_km": float}, ...],
     "stops":  [{"start": iso, "end": iso, "lat": float, "lon": float}, ...],
     "rejected": {"reason": count, ...}}

``analyze_text(text)`` accepts an NMEA log (RMC+GGA; parsed with pynmea2 unless a
``parse_nmea`` callable is injected, e.g. the gateway's assembler) or JSON lines of fixes
(``Fix.to_json()`` dicts).  Filtering is a callable ``filter_fn(fix) -> (accepted, reason)``
(the gateway's filter chain); the default is a minimal validity check.  Several terminals in
one log are analysed separately and their results concatenated in time order.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, time
from typing import Any

import pynmea2

from fleet.fix import Fix
from telematics.mileage import is_valid_fix
from telematics.segment import SegmentParams, make_segmenter

FilterFn = Callable[[Fix], tuple[bool, str | None]]
ParseNmea = Callable[[str], tuple[list[Fix], Counter[str]]]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def analyze_fixes(fixes: Iterable[Fix], filter_fn: FilterFn | None = None,
                  params: SegmentParams | None = None,
                  rejected: Counter[str] | None = None) -> dict[str, Any]:
    """Distance, trips, stops and rejection counts of a set of fixes (see module doc)."""
    check = filter_fn or is_valid_fix
    counts: Counter[str] = Counter(rejected or {})
    by_terminal: dict[str, list[Fix]] = {}
    for f in fixes:
        ok, reason = check(f)
        if not ok:
            counts[reason or "filtered"] += 1
            continue
        by_terminal.setdefault(f.terminal_id, []).append(f)
    trips: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    total_m = 0.0
    for terminal in sorted(by_terminal):
        fs = by_terminal[terminal]
        seg = make_segmenter(params, fs).segment(fs)
        counts.update(seg.rejected)
        total_m += seg.distance_m
        trips += [{"start": _iso(t.start), "end": _iso(t.end),
                   "distance_km": round(t.distance_m / 1000.0, 3)} for t in seg.trips]
        stops += [{"start": _iso(s.start), "end": _iso(s.end), "lat": round(s.lat, 6),
                   "lon": round(s.lon, 6)} for s in seg.stops]
    trips.sort(key=lambda d: d["start"])
    stops.sort(key=lambda d: d["start"])
    return {"distance_km": round(total_m / 1000.0, 3), "trips": trips, "stops": stops,
            "rejected": dict(sorted(counts.items()))}


def parse_nmea_log(text: str, terminal_id: str = "nmea") -> tuple[list[Fix], Counter[str]]:
    """RMC+GGA sentences → Fixes (RMC gives date, position, speed, course, validity; GGA adds
    satellites, HDOP and altitude for the same time).  Returns (fixes, rejected counts)."""
    rejected: Counter[str] = Counter()
    rmcs: list[tuple[datetime, pynmea2.RMC]] = []
    ggas: dict[time, pynmea2.GGA] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("$"):
            rejected["garbage"] += 1
            continue
        try:
            msg = pynmea2.parse(line, check=True)
        except pynmea2.ChecksumError:
            rejected["checksum"] += 1
            continue
        except (pynmea2.ParseError, ValueError, AttributeError):
            rejected["garbage"] += 1
            continue
        if isinstance(msg, pynmea2.RMC):
            if msg.datestamp is None or msg.timestamp is None:
                rejected["garbage"] += 1
                continue
            ts = datetime.combine(msg.datestamp, msg.timestamp)
            rmcs.append((ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC),
                         msg))
        elif isinstance(msg, pynmea2.GGA) and msg.timestamp is not None:
            ggas[msg.timestamp.replace(tzinfo=None)] = msg
    fixes: list[Fix] = []
    for ts, rmc in rmcs:
        try:
            lat, lon = float(rmc.latitude), float(rmc.longitude)
        except (TypeError, ValueError):
            rejected["garbage"] += 1
            continue
        gga = ggas.get(ts.time().replace(tzinfo=None))
        fixes.append(Fix(
            terminal_id=terminal_id, time=ts, lat=lat, lon=lon,
            speed_kmh=float(rmc.spd_over_grnd or 0.0) * 1.852,
            course=float(rmc.true_course or 0.0), valid=rmc.status == "A",
            altitude_m=_num(getattr(gga, "altitude", None)),
            hdop=_num(getattr(gga, "horizontal_dil", None)),
            satellites=int(gga.num_sats) if gga is not None and gga.num_sats else None,
            protocol="nmea-mqtt"))
    return fixes, rejected


def _num(v: object) -> float | None:
    try:
        return float(v) if v not in (None, "") else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _looks_like_json(text: str) -> bool:
    for line in text.splitlines():
        s = line.strip()
        if s:
            return s.startswith("{")
    return False


def parse_json_lines(text: str) -> tuple[list[Fix], Counter[str]]:
    """JSON lines of ``Fix.to_json()`` dicts → Fixes; unreadable lines are counted."""
    fixes: list[Fix] = []
    rejected: Counter[str] = Counter()
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        try:
            fixes.append(Fix.from_json(json.loads(s)))
        except (ValueError, KeyError, TypeError):
            rejected["garbage"] += 1
    return fixes, rejected


def analyze_text(text: str, filter_fn: FilterFn | None = None,
                 parse_nmea: ParseNmea | None = None, terminal_id: str = "nmea",
                 params: SegmentParams | None = None) -> dict[str, Any]:
    """Analyse an NMEA log or JSON lines of fixes (auto-detected) → :func:`analyze_fixes`."""
    if _looks_like_json(text):
        fixes, rejected = parse_json_lines(text)
    elif parse_nmea is not None:
        fixes, rejected = parse_nmea(text)
    else:
        fixes, rejected = parse_nmea_log(text, terminal_id)
    return analyze_fixes(fixes, filter_fn, params, rejected)
