"""Serving: the app as a server process builds it, and ``gongche bench api`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_served_app_freezes_its_heap_and_collects_young_objects_less_often(
        tmp_path: Path) -> None:
    # In a process of its own: freezing is for server processes, never for the test run.
    code = ("import gc, json; from fleet.server import served_app, GC_YOUNG_THRESHOLD;"
            "before = gc.get_freeze_count(); served_app();"
            "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()[0],"
            " GC_YOUNG_THRESHOLD]))")
    env = {**os.environ, "GONGCHE_MODE": "test",
           "GONGCHE_SECRET_KEY": "test-secret-key-0123456789-abcdefghijkl",
           "GONGCHE_DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    before, frozen, young, expected = json.loads(out.strip().splitlines()[-1])
    assert before == 0
    assert frozen > 10_000  # the modules, routes and schemas of the whole app
    assert young == expected > 700


def test_bench_api_serves_every_request_and_reports_its_figures(tmp_path: Path) -> None:
    from bench import api

    out = tmp_path / "api.json"
    result = api.run(str(out), rate=20.0, seconds=1.5, concurrency=4, quiet=True, workers=1)
    assert result == json.loads(out.read_text())
    assert result["requests"] == 30
    assert result["completed_ok"] == 30 and result["errors"] == 0, result["statuses"]
    assert {k: v["n"] for k, v in result["per_kind"].items()} == {"create": 6, "get": 12,
                                                                   "list": 12}
    for key in ("throughput_rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request"):
        assert result[key] > 0, key
