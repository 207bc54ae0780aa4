"""Gateway CPU micro-benchmark: what one core spends per fix on the NMEA ingest path.

    .venv/bin/python -m bench.gateway_cpu --fixes 20000 --terminals 50 --repeat 5

No broker, no Redis: N realistic RMC+GGA payloads (``simulators.noise.fix_to_nmea``, one
epoch per MQTT message, terminals interleaved as they arrive) are pushed through each stage
separately and through the whole gateway path, with an in-memory sink. Every stage runs
``--repeat`` times on fresh state; the table shows the median. ``pynmea2.parse`` on the same
sentences is measured in the same run as the baseline (what the library alone costs), and
every stage is shown as a ratio to it (1.0 = as fast as pynmea2 alone; higher is faster).

Stages:
  pynmea2.parse   pynmea2.parse(check=True) of the RMC and GGA sentence of each fix
  nmea assembly   NmeaAssembler.feed_text + flush per payload (a terminal's assembler)
  filter chain    FilterChain.apply on the assembled fixes
  encode          gateway.sink.encode_entry (Fix → stream entry JSON)
  decode          gateway.sink.decode_entry of the bytes entries (what the writer does)
  whole gateway   Ingest.put_nmea (route_nmea: directory, assembly, filters) + encode_entry
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pynmea2

from fleet.fix import Fix
from fleet.models import TerminalProtocol
from gateway.directory import Entry
from gateway.filters import FilterChain
from gateway.ingest import Ingest
from gateway.nmea import NmeaAssembler
from gateway.sink import Routed, decode_entry, encode_entry
from simulators.noise import fix_to_nmea

RESULTS = Path(__file__).resolve().parent / "results"


class _Directory:
    """Every terminal registered, NMEA over MQTT, bound to a vehicle."""

    def __init__(self, tids: Sequence[str]) -> None:
        self._entries = {t: Entry(t, i + 1, TerminalProtocol.nmea_mqtt, None)
                         for i, t in enumerate(tids)}

    def by_id(self, terminal_id: str) -> Entry | None:
        return self._entries.get(terminal_id)

    def by_phone(self, phone: str) -> Entry | None:
        return None


class _MemorySink:
    """Does the sink's CPU work (encode every entry) and keeps the entries."""

    def __init__(self) -> None:
        self.entries: list[dict[str, str]] = []

    def put(self, items: Sequence[Routed]) -> None:
        self.entries.extend(encode_entry(i) for i in items)


def build_messages(n_fixes: int, n_terminals: int,
                   end: datetime) -> list[tuple[str, str, list[str]]]:
    """``(terminal, payload, sentences)`` per MQTT message, in arrival order.

    Each terminal drives around Beijing at 20–60 km/h, one fix a second, ending at ``end``.
    """
    per = math.ceil(n_fixes / n_terminals)
    start = end - timedelta(seconds=per)
    tids = [f"T{i:04d}" for i in range(n_terminals)]
    state = {t: (39.80 + 0.004 * i, 116.20 + 0.005 * i) for i, t in enumerate(tids)}
    out: list[tuple[str, str, list[str]]] = []
    for k in range(per):
        for i, tid in enumerate(tids):
            if len(out) >= n_fixes:
                break
            lat, lon = state[tid]
            speed = 20.0 + (k * 7 + i * 13) % 40
            course = (i * 37 + k * 3) % 360
            step_m = speed / 3.6
            lat += step_m * math.cos(math.radians(course)) / 111_320
            lon += step_m * math.sin(math.radians(course)) / (111_320 * math.cos(math.radians(lat)))
            state[tid] = (lat, lon)
            fix = Fix(tid, start + timedelta(seconds=k, milliseconds=(i % 5) * 200), lat, lon,
                      speed_kmh=speed, course=float(course), altitude_m=50.0 + (k % 30),
                      hdop=0.6 + (k + i) % 10 / 10, satellites=8 + (k + i) % 12,
                      protocol="nmea-mqtt")
            sentences = fix_to_nmea(fix, talker=("GN", "BD", "GP")[i % 3])
            out.append((tid, "\r\n".join(sentences) + "\r\n", sentences))
    return out


def _timed(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Median seconds of ``repeat`` runs of ``fn`` (which returns a count) and that count."""
    times: list[float] = []
    count = 0
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), count


def run(n_fixes: int, n_terminals: int, repeat: int) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    messages = build_messages(n_fixes, n_terminals, now - timedelta(seconds=5))
    tids = sorted({m[0] for m in messages})
    clock = (lambda: now)  # noqa: E731 - a fixed "now" keeps the filter stage deterministic

    def stage_pynmea2() -> int:
        parse = pynmea2.parse
        for _, _, sentences in messages:
            for s in sentences:
                parse(s, check=True)
        return len(messages)

    assembled: list[Fix] = []

    def stage_assembly() -> int:
        assembled.clear()
        asms = {t: NmeaAssembler(t) for t in tids}
        for tid, payload, _ in messages:
            asm = asms[tid]
            fixes, errors = asm.feed_text(payload)
            assert not errors, errors
            assembled.extend(fixes)
            assembled.extend(asm.flush())
        return len(assembled)

    def stage_filter() -> int:
        chain = FilterChain(clock=clock)
        apply = chain.apply
        return sum(1 for f in assembled if apply(f)[0])

    routed: list[Routed] = []
    entries: list[dict[str, str]] = []
    encoded: list[dict[bytes, bytes]] = []

    def stage_encode() -> int:
        if not routed:
            routed.extend(Routed(f, 1) for f in assembled)
        entries[:] = [encode_entry(r) for r in routed]
        return len(entries)

    def stage_decode() -> int:
        if not encoded:  # as XREADGROUP returns them; built in the (untimed) warm-up run
            encoded.extend({k.encode(): v.encode() for k, v in e.items()} for e in entries)
        return len([decode_entry(e) for e in encoded])

    def stage_whole() -> int:
        sink = _MemorySink()
        ingest = Ingest(_Directory(tids), sink)  # type: ignore[arg-type]
        put = ingest.put_nmea
        for tid, payload, _ in messages:
            put(tid, payload.encode())
        return len(sink.entries)

    stages: list[tuple[str, Callable[[], int]]] = [
        ("pynmea2.parse (baseline)", stage_pynmea2),
        ("nmea assembly", stage_assembly),
        ("filter chain", stage_filter),
        ("encode", stage_encode),
        ("decode", stage_decode),
        ("whole gateway", stage_whole),
    ]
    rows: list[dict[str, Any]] = []
    baseline = 0.0
    for name, fn in stages:
        fn()  # warm-up (and fills the inputs of the next stages)
        seconds, count = _timed(fn, repeat)
        rate = count / seconds if seconds > 0 else float("inf")
        if not baseline:
            baseline = rate
        rows.append({"stage": name, "fixes": count, "seconds": round(seconds, 4),
                     "fixes_per_s": round(rate), "us_per_fix": round(1e6 / rate, 2),
                     "ratio_to_pynmea2": round(rate / baseline, 3)})
    assert rows[-1]["fixes"] == len(messages), "whole path lost fixes"
    return {"fixes": len(messages), "terminals": len(tids), "repeat": repeat,
            "python": platform.python_version(), "pynmea2": pynmea2.version,
            "when": now.isoformat(), "stages": rows}


def print_table(result: dict[str, Any]) -> None:
    print(f"gateway CPU, one core: {result['fixes']} fixes from {result['terminals']} terminals, "
          f"median of {result['repeat']} runs (Python {result['python']})")
    print(f"{'stage':<26}{'fixes/s':>12}{'µs/fix':>10}{'× pynmea2':>11}")
    for r in result["stages"]:
        print(f"{r['stage']:<26}{r['fixes_per_s']:>12,}{r['us_per_fix']:>10.2f}"
              f"{r['ratio_to_pynmea2']:>11.2f}")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixes", type=int, default=20_000)
    p.add_argument("--terminals", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path, default=RESULTS / "gateway_cpu.json")
    args = p.parse_args(argv)
    result = run(args.fixes, args.terminals, args.repeat)
    print_table(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
