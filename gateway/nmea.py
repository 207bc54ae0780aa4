"""NMEA 0183 decoding for terminals that publish raw sentences over MQTT (北斗/GNSS 定位语句).

Sentence parsing is pynmea2's (for RMC and GGA in their common strict layout a hand-written
fast path computes the very same values first; see the comment above ``_USED``); this module
adds what pynmea2 does not do:

* strict framing — every sentence must carry a correct ``*HH`` checksum (pynmea2 only checks a
  checksum when one is present), garbage before ``$`` is dropped, several sentences per
  payload or per line are split apart;
* safe field access — pynmea2 returns the raw string when a field fails to convert, so every
  field is re-checked here and a malformed sentence becomes a structured error, never an
  exception;
* epoch assembly — RMC, GGA, GNS, VTG and GSA of the same UTC time of day are merged into one
  :class:`fleet.fix.Fix` (RMC brings the date, GGA/GNS altitude, HDOP and satellites, GSA a
  fallback HDOP, VTG a fallback speed/course).

Talkers accepted by default: GP (GPS), BD and GB (BeiDou 北斗), GN (combined GNSS), GL
(GLONASS), GA (Galileo). Sentences of other types (GSV, GLL, TXT, proprietary ``$P…``,
vendor sentences such as ``$GYOACC``) are *ignored*, not errors, as long as their checksum is
right.

Epoch rules (documented choices):

* An epoch is keyed by the UTC time of day of RMC/GGA/GNS/ZDA. Time-less sentences (VTG, GSA)
  join the epoch opened last; receivers emit them after the timed sentence of their epoch.
* A fix is emitted when a sentence with a different time of day arrives, or on ``flush()``.
* An epoch without RMC takes the last known date (RMC or ZDA) of this terminal, rolled over to
  the next day when the time of day wrapped past midnight; with no date known it is skipped
  and counted (``stats.skipped_no_date``).
* An epoch without any coordinates (receiver has no fix and leaves lat/lon empty) is skipped
  and counted (``stats.skipped_no_position``). With coordinates but RMC status ``V``, GGA
  quality 0 or GNS/RMC mode ``N`` the Fix is kept with ``valid=False`` (filtered later).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import reduce
from math import isfinite
from operator import xor
from typing import Any

import pynmea2

from fleet.fix import Fix

KNOT_KMH = 1.852
DEFAULT_TALKERS: frozenset[str] = frozenset({"GP", "BD", "GB", "GN", "GL", "GA"})
POSITION_TYPES: frozenset[str] = frozenset({"RMC", "GGA", "GNS", "VTG", "GSA", "ZDA"})

# "$" + body + "*" + two hex digits, nothing but blanks after it.
_SENTENCE_RE = re.compile(r"^\$(?P<body>[^*$]*)\*(?P<cs>[0-9A-Fa-f]{2})\s*$")
# the fast path's checksum digits: every two-character spelling [0-9A-Fa-f]{2} → its value
_HEX2 = {a + b: int(a + b, 16) for a in "0123456789ABCDEFabcdef" for b in "0123456789ABCDEFabcdef"}
# XOR of every byte of a sentence body (NMEA caps a sentence at 82 characters): the body as
# one integer folded onto itself, 64 bytes, 32, … 1 — ~1 µs instead of ~1.7 µs for
# reduce(xor, …) byte by byte; longer bodies take reduce
_FOLDS = tuple((8 * k, (1 << (8 * k)) - 1) for k in (64, 32, 16, 8, 4, 2, 1))


def _xor_bytes(data: bytes) -> int:
    if len(data) > 128:
        return reduce(xor, data, 0)
    x = int.from_bytes(data, "little")
    for shift, mask in _FOLDS:
        x = (x >> shift) ^ (x & mask)
    return x


@dataclass(frozen=True, slots=True)
class NmeaError:
    """One rejected sentence: where it was, what it was and why (坏语句)."""

    line: int
    sentence: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.reason, "line": self.line, "sentence": self.sentence}


@dataclass(slots=True)
class NmeaStats:
    """Counters of one assembler (exported by others as Prometheus counters)."""

    sentences: int = 0
    used: int = 0
    ignored: int = 0
    errors: int = 0
    garbage_chunks: int = 0
    orphans: int = 0
    fixes: int = 0
    skipped_no_date: int = 0
    skipped_no_position: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SentenceError(ValueError):
    """A sentence that cannot be used: missing/wrong checksum, bad field, unknown layout."""


# --------------------------------------------------------------------------- sentences


def _checked_body(sentence: str) -> str:
    """Return the body between ``$`` and ``*`` after enforcing the checksum (校验和)."""
    m = _SENTENCE_RE.match(sentence)
    if m is None:
        if "*" not in sentence:
            raise SentenceError("missing checksum")
        raise SentenceError("malformed sentence frame")
    body = m.group("body")
    calc = 0
    for ch in body:
        calc ^= ord(ch)
    if calc != int(m.group("cs"), 16):
        raise SentenceError(f"checksum mismatch: got {m.group('cs').upper()}, want {calc:02X}")
    return body


def parse_sentence(
    sentence: str, talkers: frozenset[str] = DEFAULT_TALKERS
) -> pynmea2.TalkerSentence | None:
    """Parse one ``$…*HH`` sentence.

    Returns the pynmea2 sentence for the types this module uses, ``None`` for a well-formed
    sentence it ignores, and raises :class:`SentenceError` for anything broken.
    """
    body = _checked_body(sentence)
    if not body.isascii() or not body.isprintable():
        raise SentenceError("non-printable characters")
    address = body.split(",", 1)[0]
    if len(address) != 5 or address[2:] not in POSITION_TYPES or address[:2] not in talkers:
        return None
    try:
        parsed = pynmea2.parse(sentence.strip(), check=True)
    except pynmea2.ParseError as exc:  # includes ChecksumError, SentenceTypeError
        raise SentenceError(f"pynmea2: {exc.args[0][0] if exc.args else exc}") from exc
    except (ValueError, IndexError, TypeError) as exc:
        raise SentenceError(f"pynmea2: {exc}") from exc
    return parsed


def split_sentences(line: str) -> tuple[list[str], bool]:
    """Split one text line into ``$``-sentences; also say whether garbage preceded them.

    ``!`` (AIS encapsulation) chunks are dropped as garbage too: no position for a car.
    """
    line = line.strip()
    if not line:
        return [], False
    start = line.find("$")
    if start < 0:
        return [], True
    garbage = start > 0
    chunks = ["$" + part for part in line[start + 1 :].split("$")]
    return [c.strip() for c in chunks], garbage


# --------------------------------------------------------------------------- field helpers


def _opt_float(value: Any) -> float | None:
    """pynmea2 yields the raw string when conversion fails; accept only real numbers."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SentenceError(f"bad number {value!r}")
    if isinstance(value, int | float):
        f = float(value)
    else:
        try:
            f = float(str(value))
        except ValueError as exc:
            raise SentenceError(f"bad number {value!r}") from exc
    if f != f or f in (float("inf"), float("-inf")):
        raise SentenceError(f"bad number {value!r}")
    return f


def _opt_int(value: Any) -> int | None:
    f = _opt_float(value)
    if f is None:
        return None
    if f != int(f):
        raise SentenceError(f"bad integer {value!r}")
    return int(f)


def _time_of_day(sentence: pynmea2.TalkerSentence) -> time | None:
    raw = sentence.data[0] if sentence.data else ""
    if raw == "":
        return None
    ts = sentence.timestamp
    if not isinstance(ts, time):
        raise SentenceError(f"bad time {raw!r}")
    return ts.replace(tzinfo=None)


def _lat_lon(sentence: pynmea2.TalkerSentence) -> tuple[float, float] | None:
    """Signed degrees, or ``None`` when the receiver left the position empty."""
    if not sentence.lat or not sentence.lon:
        return None
    if sentence.lat_dir not in ("N", "S") or sentence.lon_dir not in ("E", "W"):
        raise SentenceError("bad hemisphere")
    try:
        return float(sentence.latitude), float(sentence.longitude)
    except (ValueError, TypeError) as exc:
        raise SentenceError(f"bad coordinate: {exc}") from exc


# --------------------------------------------------------------------------- fast path
#
# Why hand-written parsing exists here: through pynmea2 a fix (RMC + GGA) cost ~550 Python
# calls — a regex and a class lookup per sentence, ``__getattr__`` per named field, a
# ``strptime`` per date access, a ``dataclasses.replace`` per merge — several times the cost
# of the whole rest of the gateway. The fast path below reads RMC and GGA by index from
# ``body.split(",")`` and converts with int slicing and ``float()``, but only for fields in
# the strict layout receivers actually send (``hhmmss[.s…]``, ``ddmmyy``, ``d…dmm.m…``,
# digits-only counts). Every value it accepts is computed exactly as pynmea2 + the mergers
# compute it (same float expressions, same ``int(float(frac) * 1e6)`` microseconds);
# anything else — including every malformed sentence — returns ``_SLOW`` *before* touching
# the epoch, and the sentence then goes through ``parse_sentence`` + ``_accept`` unchanged,
# so validation, errors and their messages stay those of the reference path.
# tests/gateway/test_gateway_nmea.py pins the behaviour; the benchmark is bench/gateway_cpu.py.

_USED = object()  # merged by the fast path
_IGNORED = object()  # well-formed sentence of a type/talker this module ignores
_SLOW = object()  # not sure: take the reference (pynmea2) path
_BAD = object()  # a field the fast path cannot vouch for


def _fast_addresses(talkers: frozenset[str]) -> dict[str, str]:
    """``{"GNRMC": "RMC", "GNGGA": "GGA", …}`` for talkers pynmea2 reads verbatim."""
    out: dict[str, str] = {}
    for t in talkers:
        if len(t) == 2 and t.isascii() and t.isalnum() and t.isupper():
            out[t + "RMC"] = "RMC"
            out[t + "GGA"] = "GGA"
    return out


def _fast_time(raw: str) -> time | None:
    """``hhmmss`` or ``hhmmss.f…`` as pynmea2's ``timestamp`` reads it (naive), else None."""
    if len(raw) < 6 or not raw[:6].isdigit():
        return None
    frac = raw[6:]
    if frac:
        if frac[0] != "." or not frac[1:].isdigit():
            return None
        us = int(float(frac) * 1000000)  # pynmea2's own rounding
        if us >= 1000000:
            return None
    else:
        us = 0
    h, m, sec = int(raw[0:2]), int(raw[2:4]), int(raw[4:6])
    if h > 23 or m > 59 or sec > 59:
        return None
    return time(h, m, sec, us)


def _fast_date(raw: str) -> date | None:
    """``ddmmyy`` as ``strptime(raw, "%d%m%y")`` reads six digits, else None."""
    if len(raw) != 6 or not raw.isdigit():
        return None
    yy = int(raw[4:6])
    try:
        return date(yy + (2000 if yy <= 68 else 1900), int(raw[2:4]), int(raw[0:2]))
    except ValueError:
        return None


def _fast_dm(raw: str) -> float | None:
    """pynmea2's ``dm_to_sd`` for ``^(\\d+)(\\d\\d\\.\\d+)$``, else None."""
    p = raw.find(".")
    if p < 3 or not raw[:p].isdigit() or not raw[p + 1 :].isdigit():
        return None
    return float(raw[: p - 2]) + float(raw[p - 2 :]) / 60


def _fast_pos(lat: str, ns: str, lon: str, ew: str) -> Any:
    """``_lat_lon``: None when empty, ``_BAD`` when the reference path must judge."""
    if not lat or not lon:
        return None
    if (ns != "N" and ns != "S") or (ew != "E" and ew != "W"):
        return _BAD
    a, b = _fast_dm(lat), _fast_dm(lon)
    if a is None or b is None:
        return _BAD
    return (a if ns == "N" else -a, b if ew == "E" else -b)


def _fast_float(raw: str) -> Any:
    """``_opt_float`` of a pynmea2 field: None when empty, ``_BAD`` when not finite/number."""
    if not raw:
        return None
    try:
        f = float(raw)
    except ValueError:
        return _BAD
    return f if isfinite(f) else _BAD


def _fast_int(raw: str) -> Any:
    """``_opt_int`` for plain digit strings; ``_BAD`` for anything else."""
    if not raw:
        return None
    if len(raw) > 6 or not raw.isdigit():
        return _BAD
    return int(raw)


# --------------------------------------------------------------------------- epoch


@dataclass(slots=True)
class _Epoch:
    """Everything heard for one UTC time of day (一个定位历元)."""

    tod: time
    first_line: int
    date: date | None = None
    position: tuple[float, float] | None = None
    speed_kmh: float | None = None
    course: float | None = None
    vtg_speed_kmh: float | None = None
    vtg_course: float | None = None
    altitude_m: float | None = None
    hdop: float | None = None
    gsa_hdop: float | None = None
    satellites: int | None = None
    invalid: bool = False
    sources: list[str] = field(default_factory=list)

    def take_position(self, pos: tuple[float, float] | None) -> None:
        if self.position is None and pos is not None:
            self.position = pos


def _first(a: Any, b: Any) -> Any:
    return a if a is not None else b


class NmeaAssembler:
    """Merge the sentences of one terminal into Fixes, epoch by epoch (one per terminal).

    Feed it text in arrival order with :meth:`feed_text` (an MQTT payload) or
    :meth:`feed_line`; call :meth:`flush` at the end of a file or when the terminal goes quiet.
    """

    def __init__(self, terminal_id: str, talkers: Iterable[str] = DEFAULT_TALKERS) -> None:
        self.terminal_id = terminal_id
        self.talkers = frozenset(talkers)
        self.stats = NmeaStats()
        self._epoch: _Epoch | None = None
        self._last_date: date | None = None
        self._last_date_tod: time | None = None
        # fast-path state: addresses it handles, and the last time/date strings parsed
        # (RMC and GGA of an epoch carry the same time; the date changes once a day)
        self._fast_talkers = self.talkers
        self._fast_kinds = _fast_addresses(self.talkers)
        self._tod_raw: str | None = None
        self._tod_val: time | None = None
        self._date_raw: str | None = None
        self._date_val: date | None = None

    # -- input ------------------------------------------------------------------------
    def feed_text(
        self, text: str | bytes, first_line: int = 1
    ) -> tuple[list[Fix], list[NmeaError]]:
        """Feed a payload of one or more lines (``\\n`` or ``\\r\\n`` separated)."""
        if isinstance(text, bytes):
            text = text.decode("ascii", errors="replace")
        fixes: list[Fix] = []
        errors: list[NmeaError] = []
        line_no = first_line
        for line in text.splitlines():
            self._feed_line(line, line_no, fixes, errors)
            line_no += 1
        return fixes, errors

    def feed_line(self, line: str, line_no: int = 0) -> tuple[list[Fix], list[NmeaError]]:
        """Feed one text line (which may hold several sentences or leading garbage)."""
        fixes: list[Fix] = []
        errors: list[NmeaError] = []
        self._feed_line(line, line_no, fixes, errors)
        return fixes, errors

    def _feed_line(
        self, line: str, line_no: int, fixes: list[Fix], errors: list[NmeaError]
    ) -> None:
        stats = self.stats
        line = line.strip()
        start = line.find("$")
        if start == 0 and line.find("$", 1) < 0:
            chunks = [line]  # the common case: one sentence, what split_sentences returns
        else:
            chunks, garbage = split_sentences(line)
            if garbage:
                stats.garbage_chunks += 1
        for chunk in chunks:
            stats.sentences += 1
            # Fast path first (RMC/GGA in the strict common layout, see _fast below); it
            # returns _SLOW for anything it is not sure about, and that sentence then takes
            # the reference path (pynmea2 + _accept), which makes every decision and every
            # error message exactly as before.
            verdict = self._fast(chunk, line_no, fixes)
            if verdict is _USED:
                stats.used += 1
                continue
            if verdict is _IGNORED:
                stats.ignored += 1
                continue
            try:
                parsed = parse_sentence(chunk, self.talkers)
                if parsed is None:
                    stats.ignored += 1
                    continue
                fixes.extend(self._accept(parsed, line_no))
                stats.used += 1
            except SentenceError as exc:
                stats.errors += 1
                errors.append(NmeaError(line_no, chunk[:200], str(exc)))

    def flush(self) -> list[Fix]:
        """Emit the open epoch, if any."""
        epoch, self._epoch = self._epoch, None
        return self._emit(epoch)

    # -- fast path (see the comment above _USED) -------------------------------------------
    def _fast(self, chunk: str, line_no: int, fixes: list[Fix]) -> object:
        # the frame _SENTENCE_RE accepts, tested without it: "$" body "*" HH and nothing
        # after (chunks arrive stripped; anything else goes the reference path)
        if chunk[:1] != "$" or chunk[-3:-2] != "*":
            return _SLOW
        body = chunk[1:-3]
        cs = _HEX2.get(chunk[-2:])
        if (cs is None or "*" in body or "$" in body or not body.isascii()
                or _xor_bytes(body.encode("ascii")) != cs or not body.isprintable()):
            return _SLOW
        f = body.split(",")
        address = f[0]
        if self.talkers is not self._fast_talkers:  # talkers reassigned after __init__
            self._fast_talkers = self.talkers
            self._fast_kinds = _fast_addresses(self.talkers)
        kind = self._fast_kinds.get(address)
        if kind is None:
            if (len(address) != 5 or address[2:] not in POSITION_TYPES
                    or address[:2] not in self.talkers):
                return _IGNORED
            return _SLOW
        n = len(f)
        if n < 2:
            return _SLOW
        raw = f[1]
        if raw == self._tod_raw:
            tod = self._tod_val
        else:
            tod = _fast_time(raw)
            if tod is None:
                return _SLOW
            self._tod_raw, self._tod_val = raw, tod
        assert tod is not None
        if kind == "RMC":
            if n < 13:
                f += [""] * (13 - n)
            status = f[2]
            if status != "A" and status != "V":
                return _SLOW
            raw = f[9]
            if not raw:
                day = None
            elif raw == self._date_raw:
                day = self._date_val
            else:
                day = _fast_date(raw)
                if day is None:
                    return _SLOW
                self._date_raw, self._date_val = raw, day
            pos = _fast_pos(f[3], f[4], f[5], f[6])
            knots = _fast_float(f[7])
            course = _fast_float(f[8])
            if pos is _BAD or knots is _BAD or course is _BAD:
                return _SLOW
            # validated: merge (the same rules as _merge_rmc)
            e = self._open(tod, line_no, fixes)
            if day is not None and e.date is None:
                e.date = day
            if pos is not None and e.position is None:
                e.position = pos
            if knots is not None and e.speed_kmh is None:
                e.speed_kmh = knots * KNOT_KMH
            if e.course is None:
                e.course = course
            if status == "V" or f[12] == "N":
                e.invalid = True
        else:  # GGA
            if n < 10:
                f += [""] * (10 - n)
            quality = _fast_int(f[6])
            pos = _fast_pos(f[2], f[3], f[4], f[5])
            sats = _fast_int(f[7])
            hdop = _fast_float(f[8])
            alt = _fast_float(f[9])
            if quality is _BAD or pos is _BAD or sats is _BAD or hdop is _BAD or alt is _BAD:
                return _SLOW
            # validated: merge (the same rules as _merge_gga)
            e = self._open(tod, line_no, fixes)
            if pos is not None and e.position is None:
                e.position = pos
            if e.satellites is None:
                e.satellites = sats
            if e.hdop is None:
                e.hdop = hdop
            if e.altitude_m is None:
                e.altitude_m = alt
            if not quality:  # None or 0
                e.invalid = True
        e.sources.append(address)
        if e.date is not None:
            self._last_date, self._last_date_tod = e.date, tod
        return _USED

    def _open(self, tod: time, line_no: int, fixes: list[Fix]) -> _Epoch:
        """The epoch of ``tod``: the open one, or a new one after emitting the open one."""
        e = self._epoch
        if e is not None and e.tod == tod:
            return e
        fixes.extend(self.flush())
        e = self._epoch = _Epoch(tod=tod, first_line=line_no)
        return e

    # -- epoch handling ---------------------------------------------------------------
    def _accept(self, s: pynmea2.TalkerSentence, line_no: int) -> list[Fix]:
        """Merge one sentence. Merging works on a copy, so a sentence that turns out to be
        malformed half-way leaves the open epoch untouched."""
        kind = s.sentence_type
        if kind in ("VTG", "GSA"):
            if self._epoch is None:
                self.stats.orphans += 1
                return []
            candidate = replace(self._epoch, sources=list(self._epoch.sources))
            _MERGERS[kind](candidate, s)
            self._epoch = candidate
            return []
        tod = _time_of_day(s)
        if tod is None:
            raise SentenceError(f"{kind} without time")
        same = self._epoch is not None and self._epoch.tod == tod
        if same and self._epoch is not None:
            candidate = replace(self._epoch, sources=list(self._epoch.sources))
        else:
            candidate = _Epoch(tod=tod, first_line=line_no)
        _MERGERS[kind](candidate, s)
        candidate.sources.append(s.talker + kind)
        out = [] if same else self.flush()
        self._epoch = candidate
        if candidate.date is not None:
            self._last_date, self._last_date_tod = candidate.date, tod
        return out

    def _date_for(self, epoch: _Epoch) -> date | None:
        if epoch.date is not None:
            return epoch.date
        if self._last_date is None or self._last_date_tod is None:
            return None
        # Time of day went backwards by more than 12 h: midnight passed since that date.
        back = _seconds(self._last_date_tod) - _seconds(epoch.tod)
        return self._last_date + timedelta(days=1) if back > 12 * 3600 else self._last_date

    def _emit(self, epoch: _Epoch | None) -> list[Fix]:
        if epoch is None:
            return []
        if epoch.position is None:
            self.stats.skipped_no_position += 1
            return []
        day = self._date_for(epoch)
        if day is None:
            self.stats.skipped_no_date += 1
            return []
        lat, lon = epoch.position
        self.stats.fixes += 1
        # (``_first`` spelled out inline: this runs once per fix)
        speed = epoch.speed_kmh if epoch.speed_kmh is not None else epoch.vtg_speed_kmh
        course = epoch.course if epoch.course is not None else epoch.vtg_course
        return [
            Fix(
                terminal_id=self.terminal_id,
                time=datetime.combine(day, epoch.tod, tzinfo=UTC),
                lat=lat,
                lon=lon,
                speed_kmh=round(speed or 0.0, 3),
                course=course or 0.0,
                altitude_m=epoch.altitude_m,
                hdop=epoch.hdop if epoch.hdop is not None else epoch.gsa_hdop,
                satellites=epoch.satellites,
                valid=not epoch.invalid,
                protocol="nmea-mqtt",
                extras={"sentences": epoch.sources},
            )
        ]


def _seconds(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


# --------------------------------------------------------------------------- mergers


def _merge_rmc(e: _Epoch, s: pynmea2.TalkerSentence) -> None:
    """RMC (推荐定位信息): date, position, speed in knots, course, status A/V."""
    if s.status not in ("A", "V"):
        raise SentenceError(f"bad RMC status {s.status!r}")
    if s.datestamp is not None:
        if not isinstance(s.datestamp, date):
            raise SentenceError(f"bad RMC date {s.data[8]!r}")
        e.date = e.date or s.datestamp
    e.take_position(_lat_lon(s))
    knots = _opt_float(s.spd_over_grnd)
    if knots is not None and e.speed_kmh is None:
        e.speed_kmh = knots * KNOT_KMH
    e.course = _first(e.course, _opt_float(s.true_course))
    if s.status == "V" or s.mode_indicator == "N":
        e.invalid = True


def _merge_gga(e: _Epoch, s: pynmea2.TalkerSentence) -> None:
    """GGA (定位数据): position, fix quality, satellites, HDOP, altitude."""
    quality = _opt_int(s.gps_qual)
    e.take_position(_lat_lon(s))
    e.satellites = _first(e.satellites, _opt_int(s.num_sats))
    e.hdop = _first(e.hdop, _opt_float(s.horizontal_dil))
    e.altitude_m = _first(e.altitude_m, _opt_float(s.altitude))
    if quality is None or quality == 0:
        e.invalid = True


def _merge_gns(e: _Epoch, s: pynmea2.TalkerSentence) -> None:
    """GNS (多系统定位数据): like GGA with one mode letter per constellation."""
    e.take_position(_lat_lon(s))
    e.satellites = _first(e.satellites, _opt_int(s.num_sats))
    e.hdop = _first(e.hdop, _opt_float(s.hdop))
    e.altitude_m = _first(e.altitude_m, _opt_float(s.altitude))
    mode = s.mode_indicator or ""
    if not mode or set(mode) <= {"N"}:
        e.invalid = True


def _merge_vtg(e: _Epoch, s: pynmea2.TalkerSentence) -> None:
    """VTG (地面速度信息): fallback speed and course."""
    kmh = _opt_float(s.spd_over_grnd_kmph)
    if kmh is None:
        knots = _opt_float(s.spd_over_grnd_kts)
        kmh = knots * KNOT_KMH if knots is not None else None
    e.vtg_speed_kmh = _first(e.vtg_speed_kmh, kmh)
    e.vtg_course = _first(e.vtg_course, _opt_float(s.true_track))


def _merge_gsa(e: _Epoch, s: pynmea2.TalkerSentence) -> None:
    """GSA (卫星 DOP): fallback HDOP when GGA/GNS gave none."""
    e.gsa_hdop = _first(e.gsa_hdop, _opt_float(s.hdop))


def _merge_zda(e: _Epoch, s: pynmea2.TalkerSentence) -> None:
    """ZDA (日期时间): a date source for GGA-only receivers."""
    try:
        d = date(int(s.year), int(s.month), int(s.day))
    except (TypeError, ValueError) as exc:
        raise SentenceError("bad ZDA date") from exc
    e.date = e.date or d


_MERGERS = {
    "RMC": _merge_rmc,
    "GGA": _merge_gga,
    "GNS": _merge_gns,
    "VTG": _merge_vtg,
    "GSA": _merge_gsa,
    "ZDA": _merge_zda,
}


# --------------------------------------------------------------------------- one-shot API


def decode_nmea_lines(
    lines: Iterable[str], terminal_id: str, talkers: Iterable[str] = DEFAULT_TALKERS
) -> tuple[list[Fix], list[NmeaError]]:
    """Decode a whole log: every Fix in order, and every bad sentence with its line number.

    Items of ``lines`` may themselves hold several lines (MQTT payloads); line numbers count
    physical lines from 1. Never raises for bad input.
    """
    asm = NmeaAssembler(terminal_id, talkers)
    fixes: list[Fix] = []
    errors: list[NmeaError] = []
    line_no = 1
    for item in lines:
        parts = item.splitlines() or [""]
        f, e = asm.feed_text("\n".join(parts), first_line=line_no)
        fixes.extend(f)
        errors.extend(e)
        line_no += len(parts)
    fixes.extend(asm.flush())
    return fixes, errors
