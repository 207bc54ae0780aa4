"""What a terminal reports (终端上报) for a true track: noise, drift, loss and disorder.

:func:`observe` turns a ground-truth :class:`~simulators.tracks.Track` into the list of
:class:`~fleet.fix.Fix` a platform receives, **in arrival order**:

* white GNSS noise (σ metres per axis) plus a slowly varying correlated error — an
  Ornstein-Uhlenbeck wander that is strongest while parked, so parked positions drift
  (停车漂移) by tens of metres over hours, like real receivers under multipath;
* Doppler speed/course noise (speed is much better than position, as in real receivers),
  rare spurious speeds while parked;
* rare multipath outliers (single fixes hundreds of metres away) and invalid fixes
  (``valid=False``, stale position);
* dropouts in bursts, transport duplicates (same sequence number), local reordering;
* blind areas (盲区): a chunk of fixes withheld and delivered later as a batch
  (``extras['batch']=True``), like JT/T 808 0x0704 blind-area resends;
* HDOP, satellites, ignition (``extras['ignition']`` and status bit 0 = ACC), terminal
  odometer ``extras['mileage_km']`` (JT/T 808 additional item 0x01), sequence number
  ``extras['seq']``.

:func:`to_nmea` renders fixes as RMC+GGA sentences with correct checksums (talker GN or BD),
optionally corrupting some checksums and inserting garbage lines.  Everything is seeded.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fleet.fix import Fix, Protocol
from geo.geodesy import destination
from simulators.tracks import Track, TruthSample

#: JT/T 808 status bits (状态位): bit 0 ACC on, bit 1 positioned.
STATUS_ACC = 0x1
STATUS_POSITIONED = 0x2


@dataclass(frozen=True, slots=True)
class NoiseConfig:
    """Parameters of the terminal/observation model (all probabilities are per fix)."""

    sigma_m: float = 5.0
    drift_sigma_m: float = 8.0
    drift_tau_s: float = 600.0
    moving_drift_factor: float = 0.4
    speed_sigma_kmh: float = 0.4
    parked_speed_spike: float = 0.003
    outlier: float = 0.002
    outlier_range_m: tuple[float, float] = (150.0, 800.0)
    invalid: float = 0.003
    dropout: float = 0.05
    dropout_burst_s: float = 3.0
    duplicate: float = 0.01
    reorder: float = 0.01
    reorder_span: int = 5
    blind_areas: int = 0
    blind_range_s: tuple[float, float] = (60.0, 600.0)
    blind_delay_range_s: tuple[float, float] = (30.0, 300.0)
    latency_s: float = 1.0
    odometer_scale: float = 1.0
    odometer_start_km: float = 12_345.0
    protocol: Protocol = "sim"
    seed: int = 0


def _ou_step(x: float, dt: float, tau: float, sigma: float, rng: random.Random) -> float:
    """One exact Ornstein-Uhlenbeck step."""
    a = math.exp(-dt / tau)
    return x * a + sigma * math.sqrt(max(0.0, 1.0 - a * a)) * rng.gauss(0.0, 1.0)


def _dropout_mask(n: int, times: Sequence[float], cfg: NoiseConfig,
                  rng: random.Random) -> list[bool]:
    """Burst dropouts: a fraction ``cfg.dropout`` of fixes lost in bursts of mean length."""
    keep = [True] * n
    if cfg.dropout <= 0 or n == 0:
        return keep
    mean_len = max(1.0, cfg.dropout_burst_s)
    p_start = cfg.dropout / mean_len
    i = 0
    while i < n:
        if rng.random() < p_start:
            length = 1 + int(rng.expovariate(1.0 / mean_len))
            for j in range(i, min(n, i + length)):
                keep[j] = False
            i += length
        else:
            i += 1
    return keep


def _sample_fix(s: TruthSample, terminal_id: str, cfg: NoiseConfig, rng: random.Random,
                drift: tuple[float, float], last_course: float) -> Fix:
    """A noisy Fix from one true sample (position, speed, course, DOP, odometer)."""
    moving = s.speed_kmh > 0.0
    dn = drift[1] + rng.gauss(0.0, cfg.sigma_m)
    de = drift[0] + rng.gauss(0.0, cfg.sigma_m)
    lat, lon = destination(s.lat, s.lon, 0.0, dn)
    lat, lon = destination(lat, lon, 90.0, de)
    if moving:
        speed = max(0.0, s.speed_kmh + rng.gauss(0.0, cfg.speed_sigma_kmh))
        v_ms = max(s.speed_kmh / 3.6, 0.05)
        course_sd = min(40.0, math.degrees(math.atan(0.15 / v_ms)))
        course = (s.course + rng.gauss(0.0, course_sd)) % 360.0
    else:
        speed = abs(rng.gauss(0.0, 0.3))
        course = last_course
        if rng.random() < cfg.parked_speed_spike:
            speed = rng.uniform(2.0, 6.0)
            course = rng.uniform(0.0, 360.0)
    hdop = max(0.5, cfg.sigma_m / 4.0 * (1.0 + 0.15 * rng.gauss(0.0, 1.0)))
    sats = max(4, min(32, int(round(26 - 3.0 * hdop + rng.gauss(0.0, 2.0)))))
    status = (STATUS_ACC if s.ignition else 0) | STATUS_POSITIONED
    odo_km = cfg.odometer_start_km + s.odometer_m * cfg.odometer_scale / 1000.0
    return Fix(terminal_id=terminal_id, time=s.time, lat=round(lat, 7), lon=round(lon, 7),
               speed_kmh=round(speed, 2), course=round(course, 1),
               altitude_m=round(500.0 + rng.gauss(0.0, 3.0), 1), hdop=round(hdop, 2),
               satellites=sats, valid=True, protocol=cfg.protocol, status=status,
               extras={"ignition": s.ignition, "mileage_km": round(odo_km, 1)})


def observe(track: Track, cfg: NoiseConfig | None = None) -> list[Fix]:
    """The fixes a platform receives for ``track``, in arrival order (see module doc)."""
    cfg = cfg or NoiseConfig()
    rng = random.Random(cfg.seed)
    samples = track.samples
    n = len(samples)
    times = [s.time.timestamp() for s in samples]
    keep = _dropout_mask(n, times, cfg, rng)
    drift = (0.0, 0.0)
    last_course = 0.0
    last_valid: Fix | None = None
    emitted: list[tuple[float, Fix]] = []  # (arrival epoch seconds, fix)
    seq = 0
    for i, s in enumerate(samples):
        dt = times[i] - times[i - 1] if i else 0.0
        sig = cfg.drift_sigma_m * (cfg.moving_drift_factor if s.speed_kmh > 0 else 1.0)
        if dt > 0:
            drift = (_ou_step(drift[0], dt, cfg.drift_tau_s, sig, rng),
                     _ou_step(drift[1], dt, cfg.drift_tau_s, sig, rng))
        fix = _sample_fix(s, track.terminal_id, cfg, rng, drift, last_course)
        last_course = fix.course if s.speed_kmh > 0 else last_course
        r = rng.random()
        if r < cfg.outlier:
            lat, lon = destination(fix.lat, fix.lon, rng.uniform(0, 360),
                                   rng.uniform(*cfg.outlier_range_m))
            fix.lat, fix.lon = round(lat, 7), round(lon, 7)
        elif r < cfg.outlier + cfg.invalid and last_valid is not None:
            fix.valid = False
            fix.lat, fix.lon = last_valid.lat, last_valid.lon
            fix.speed_kmh = 0.0
            fix.status &= ~STATUS_POSITIONED
        if fix.valid:
            last_valid = fix
        if not keep[i]:
            continue
        seq += 1
        fix.extras["seq"] = seq
        arrival = times[i] + cfg.latency_s * (0.5 + rng.random())
        emitted.append((arrival, fix))
        if rng.random() < cfg.duplicate:
            dup = Fix(**{k: getattr(fix, k) for k in fix.__slots__})
            dup.extras = dict(fix.extras)
            emitted.append((arrival + rng.uniform(0.5, 20.0), dup))
    _blind_areas(emitted, cfg, rng)
    order = sorted(range(len(emitted)), key=lambda k: (emitted[k][0], k))
    arrived = [emitted[k][1] for k in order]
    _reorder(arrived, cfg, rng)
    return arrived


def _blind_areas(emitted: list[tuple[float, Fix]], cfg: NoiseConfig,
                 rng: random.Random) -> None:
    """Withhold chunks (盲区) and deliver them later as a batch resend (in place)."""
    if cfg.blind_areas <= 0 or not emitted:
        return
    t_first = emitted[0][1].time.timestamp()
    t_last = emitted[-1][1].time.timestamp()
    for _ in range(cfg.blind_areas):
        length = rng.uniform(*cfg.blind_range_s)
        if t_last - t_first <= length:
            continue
        t0 = rng.uniform(t_first, t_last - length)
        t1 = t0 + length
        delivered = t1 + rng.uniform(*cfg.blind_delay_range_s)
        for k, (arr, fix) in enumerate(emitted):
            ft = fix.time.timestamp()
            if t0 <= ft < t1:
                fix.extras["batch"] = True
                emitted[k] = (max(arr, delivered + (ft - t0) * 1e-6), fix)


def _reorder(fixes: list[Fix], cfg: NoiseConfig, rng: random.Random) -> None:
    """Swap a fraction of fixes with a neighbour up to ``reorder_span`` places away."""
    n = len(fixes)
    for i in range(n):
        if rng.random() < cfg.reorder:
            j = min(n - 1, i + rng.randint(1, cfg.reorder_span))
            fixes[i], fixes[j] = fixes[j], fixes[i]


# --------------------------------------------------------------------------- NMEA


def nmea_checksum(body: str) -> str:
    """XOR checksum of the characters between ``$`` and ``*``, two upper-case hex digits."""
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"{c:02X}"


def _nmea_lat(lat: float) -> tuple[str, str]:
    a = abs(lat)
    deg = int(a)
    minutes = (a - deg) * 60.0
    if round(minutes, 5) >= 60.0:
        deg, minutes = deg + 1, 0.0
    return f"{deg:02d}{minutes:08.5f}", "N" if lat >= 0 else "S"


def _nmea_lon(lon: float) -> tuple[str, str]:
    a = abs(lon)
    deg = int(a)
    minutes = (a - deg) * 60.0
    if round(minutes, 5) >= 60.0:
        deg, minutes = deg + 1, 0.0
    return f"{deg:03d}{minutes:08.5f}", "E" if lon >= 0 else "W"


def _sentence(body: str) -> str:
    return f"${body}*{nmea_checksum(body)}"


def fix_to_nmea(fix: Fix, talker: str = "GN") -> list[str]:
    """RMC and GGA sentences for one fix (UTC time, knots, checksums)."""
    t = fix.time.astimezone(UTC)
    hms = t.strftime("%H%M%S") + f".{t.microsecond // 10000:02d}"
    dmy = t.strftime("%d%m%y")
    lat, ns = _nmea_lat(fix.lat)
    lon, ew = _nmea_lon(fix.lon)
    status = "A" if fix.valid else "V"
    knots = fix.speed_kmh / 1.852
    rmc = (f"{talker}RMC,{hms},{status},{lat},{ns},{lon},{ew},{knots:.2f},{fix.course:.1f},"
           f"{dmy},,,{'A' if fix.valid else 'N'}")
    quality = 1 if fix.valid else 0
    sats = fix.satellites if fix.satellites is not None else 0
    hdop = f"{fix.hdop:.1f}" if fix.hdop is not None else ""
    alt = f"{fix.altitude_m:.1f}" if fix.altitude_m is not None else ""
    gga = f"{talker}GGA,{hms},{lat},{ns},{lon},{ew},{quality},{sats:02d},{hdop},{alt},M,-30.0,M,,"
    return [_sentence(rmc), _sentence(gga)]


def to_nmea(fixes: Iterable[Fix], talker: str = "GN", bad_checksum: float = 0.0,
            garbage: float = 0.0, seed: int = 0) -> list[str]:
    """Render fixes as an NMEA log (RMC+GGA per fix), with optional corruption.

    ``bad_checksum``: share of sentences whose checksum is wrong; ``garbage``: share of
    fixes followed by a garbage line (binary noise or a truncated sentence).
    """
    if talker not in ("GN", "BD", "GP", "GB"):
        raise ValueError(f"unsupported talker {talker!r}")
    rng = random.Random(seed)
    out: list[str] = []
    for fix in fixes:
        for line in fix_to_nmea(fix, talker):
            if rng.random() < bad_checksum:
                good = line[-2:]
                bad = good
                while bad == good:
                    bad = f"{rng.randrange(256):02X}"
                line = line[:-2] + bad
            out.append(line)
        if rng.random() < garbage:
            if rng.random() < 0.5:
                out.append("".join(chr(rng.randrange(33, 127)) for _ in range(rng.randint(5, 60))))
            else:
                full = fix_to_nmea(fix, talker)[0]
                out.append(full[: rng.randint(5, len(full) - 4)])
    return out


def jitter_times(fixes: Sequence[Fix], seconds: float) -> list[Fix]:
    """Copies of fixes with times shifted by ``seconds`` (helper for tests)."""
    out = []
    for f in fixes:
        g = Fix(**{k: getattr(f, k) for k in f.__slots__})
        g.time = f.time + timedelta(seconds=seconds)
        out.append(g)
    return out


def epoch(dt: datetime) -> float:
    """Epoch seconds of an aware datetime."""
    return dt.timestamp()
