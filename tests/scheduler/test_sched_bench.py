"""The benchmark runner works end to end on one instance (short time limit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.scheduler import run
from scheduler.instances import benchmarks_dir


@pytest.mark.skipif(not benchmarks_dir().is_dir(), reason="shared benchmarks not present")
def test_bench_run_writes_summary(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    summary = run("lilim100", 1.0, str(out), ["lc101"])
    data = json.loads(out.read_text())
    assert data["set"] == "lilim100" and data["seconds"] == 1.0
    for key in ("instances", "avg_gap_pct", "avg_extra_vehicles", "bks_matched", "peers"):
        assert key in data
    for peer in ("greedy", "pyvroom"):
        stats = data["peers"][peer]
        assert {"avg_gap_pct", "avg_extra_vehicles", "bks_matched", "wins",
                "losses"} <= set(stats)
    row = summary["instances"][0]
    assert row["gongche"]["valid"]
    assert row["peers"]["pyvroom"]["result"] in ("win", "tie")
