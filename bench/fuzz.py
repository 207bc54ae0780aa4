"""Coverage-guided fuzzing of the NMEA and JT/T 808 decoders with atheris (libFuzzer).

    gongche bench fuzz --inputs 200000 --json bench/results/fuzz.json

Each target runs in its own process (libFuzzer ends the process when it is done), seeded with
the public fixtures in ``../shared/fixtures/`` (the NMEA logs, line groups of them, and every
JT/T 808 frame of ``frames.jsonl``). A target "crashes" when the decoder raises anything but
the errors it documents (the NMEA decoder reports errors and never raises; the JT/T 808 frame
splitter never raises and frames or messages fail only with ``ValueError`` subclasses), or
when the splitter holds more than its frame limit. Reported: inputs run, crashes (must be 0),
peak RSS of each fuzzing process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = ("jt808", "nmea")
MAX_FRAME = 1024


# ------------------------------------------------------------------------------ seeds
def write_seeds(target: str, corpus: Path) -> int:
    """Copy the fixtures into a libFuzzer corpus directory; returns the number of seeds."""
    corpus.mkdir(parents=True, exist_ok=True)
    seeds: list[bytes] = []
    if target in ("jt808", "canary"):
        for line in (FIXTURES / "jt808" / "frames.jsonl").read_text().splitlines():
            if line.strip():
                seeds.append(bytes.fromhex(json.loads(line)["hex"]))
        seeds.append(b"".join(seeds[:5]))  # sticky frames (粘包)
    else:
        for path in sorted((FIXTURES / "nmea").glob("*.nmea")):
            lines = path.read_bytes().splitlines(keepends=True)
            seeds += [b"".join(lines[i:i + 6]) for i in range(0, min(len(lines), 120), 6)]
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:04d}").write_bytes(seed)
    return len(seeds)


# ------------------------------------------------------------------------------ targets
def _jt808_target() -> Any:
    from gateway.jt808.codec import FrameError, FrameSplitter, decode_frame
    from gateway.jt808.messages import decode_packet, fixes_from_message

    def one(data: bytes) -> None:
        splitter = FrameSplitter(max_frame_size=MAX_FRAME)
        cut = (data[0] % 17 + 1) if data else 1  # the same bytes in TCP-sized pieces
        packets = []
        for i in range(0, len(data), cut):
            packets += splitter.feed(data[i:i + cut])
            if splitter.pending() > MAX_FRAME:
                raise AssertionError(f"splitter holds {splitter.pending()} bytes")
        splitter.flush()
        for packet in packets:
            try:
                msg = decode_packet(packet)
                fixes_from_message(msg, packet.header.phone)
            except ValueError:
                pass
        with contextlib.suppress(FrameError):
            decode_frame(data)

    return one


def _nmea_target() -> Any:
    from gateway.nmea import NmeaAssembler

    def one(data: bytes) -> None:
        asm = NmeaAssembler("FUZZ")
        asm.feed_text(data)
        asm.flush()
        asm.feed_text(data.decode("latin-1"))  # str payloads take the same path
        asm.flush()

    return one


def _canary_target() -> Any:
    """A target that must crash: proves crashes are detected and reported."""
    def one(data: bytes) -> None:
        if b"\x7e" in data:
            raise RuntimeError("canary")

    return one


def _worker(target: str, inputs: int, corpus: str, seed: int) -> None:
    """Inside the fuzzing process: instrument the decoders, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["gateway"]):
        one = {"jt808": _jt808_target, "nmea": _nmea_target,
               "canary": _canary_target}[target]()
    atheris.Setup([sys.argv[0], f"-runs={inputs}", f"-seed={seed}", "-max_len=4096",
                   "-timeout=20", "-rss_limit_mb=1024", "-print_final_stats=1", corpus], one)
    atheris.Fuzz()


# ------------------------------------------------------------------------------ driver
def _run_target(target: str, inputs: int, seed: int, workdir: Path) -> dict[str, Any]:
    corpus = workdir / f"corpus-{target}"
    seeds = write_seeds(target, corpus)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fuzz", "--worker", target, "--inputs", str(inputs),
         "--corpus", str(corpus), "--seed", str(seed)],
        cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out_bytes, _ = proc.communicate()
    seconds = time.monotonic() - t0
    out = out_bytes.decode(errors="replace")
    runs = re.findall(r"Done (\d+) runs", out)
    rss = [int(x) for x in re.findall(r"rss: (\d+)Mb", out)]
    peak = re.findall(r"stat::peak_rss_mb:\s+(\d+)", out)
    crashed = proc.returncode != 0
    crash_text = ""
    if crashed:
        m = re.search(r"(=== Uncaught Python exception.*?)(?:\n\n|$)", out, re.S)
        crash_text = (m.group(1) if m else out[-3000:])[:3000]
    return {"target": target, "seeds": seeds, "inputs": int(runs[-1]) if runs else 0,
            "crashes": int(crashed), "exit_code": proc.returncode,
            "peak_rss_mb": int(peak[-1]) if peak else (max(rss) if rss else None),
            "seconds": round(seconds, 1), "crash": crash_text,
            "crash_files": sorted(p.name for p in workdir.glob("crash-*"))}


def run(inputs: int = 100_000, json_path: str | None = None, seed: int = 1,
        targets: tuple[str, ...] = TARGETS, quiet: bool = False) -> dict[str, Any]:
    """Fuzz each decoder for ``inputs`` inputs; returns (and writes) the summary."""
    workdir = Path(tempfile.mkdtemp(prefix="gongche-fuzz-"))
    try:
        per = [_run_target(t, inputs, seed, workdir) for t in targets]
    finally:
        keep = any(p.get("crash_files") for p in locals().get("per", []))
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {"inputs_per_target": inputs, "targets": per,
              "inputs": sum(p["inputs"] for p in per),
              "crashes": sum(p["crashes"] for p in per),
              "peak_rss_mb": max((p["peak_rss_mb"] or 0) for p in per),
              "workdir": str(workdir) if keep else None}
    if not quiet:
        _print(result)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result


def _print(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="gongche decoder fuzzing (atheris)")
    for col in ("target", "seeds", "inputs", "crashes", "peak_rss_mb", "seconds"):
        t.add_column(col, justify="left" if col == "target" else "right")
    for p in r["targets"]:
        t.add_row(*(str(p[c]) for c in ("target", "seeds", "inputs", "crashes", "peak_rss_mb",
                                        "seconds")))
    Console().print(t)
    for p in r["targets"]:
        if p["crash"]:
            Console().print(f"[red]{p['target']} crashed:[/red]\n{p['crash']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=str(RESULTS / "fuzz.json"))
    ap.add_argument("--worker", choices=(*TARGETS, "canary"))
    ap.add_argument("--corpus")
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker, a.inputs, a.corpus, a.seed)
    else:
        run(a.inputs, a.json, a.seed)


if __name__ == "__main__":
    main()
