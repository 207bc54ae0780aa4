"""API latency under load: the booking and query API served by uvicorn on PostGIS.

    gongche bench api --rate 200 --seconds 10 --json bench/results/api.json

A private PostgreSQL+PostGIS (fleet.localservices) is migrated and given a bureau with
departments, cars, staff and some bookings; ``uvicorn fleet.app:create_app`` serves it on a
free loopback port (one worker process). A separate load process (httpx, asyncio) sends an
open-loop schedule of exactly ``rate × seconds`` requests — 20 % booking creations, 40 %
booking reads by id, 40 % booking list pages, as department staff — and measures each
request from its scheduled start to its response (so a server that falls behind shows it).
Reported: throughput achieved, p50/p90/p99/max latency overall and per kind, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
SECRET = "bench-api-secret-key-0123456789-abcdefgh"
PASSWORD = "bench-password-123"
TARGET_P99_MS = 50.0


def _booking_body(i: int, department_id: int) -> dict[str, Any]:
    day = (datetime.now(UTC) + timedelta(days=2 + i % 25)).date()
    start = datetime(day.year, day.month, day.day, 1 + i % 6, tzinfo=UTC)  # 09–14 Beijing
    return {"purpose": "research", "passengers": 1 + i % 3,
            "pickup": {"address": "市政府", "lat": 30.66, "lon": 104.06},
            "destinations": [{"address": f"目的地{i}", "lat": 30.62 + (i % 10) * 1e-3,
                              "lon": 104.08}],
            "start_at": start.isoformat(), "end_at": (start + timedelta(hours=2)).isoformat(),
            "return_trip": True, "notes": f"bench {i}", "department_id": department_id}


def _seed(database_url: str, staff_count: int = 4) -> list[tuple[str, int]]:
    """A bureau, two departments, cars and staff; returns (username, department id)."""
    from sqlalchemy.orm import Session

    from fleet import migrate, schemas, service
    from fleet.db import make_engine
    from fleet.models import Department, Role, User
    from fleet.security import hash_password
    from fleet.settings import Settings

    engine = make_engine(Settings(mode="test", secret_key=SECRET, database_url=database_url))
    migrate.upgrade(engine)
    pw = hash_password(PASSWORD)
    out = []
    with Session(engine) as db:
        bureau = Department(code="bench", name="机关事务局")
        db.add(bureau)
        db.flush()
        deps = [Department(code=f"bench{i}", name=f"部门{i}", parent_id=bureau.id)
                for i in range(2)]
        db.add_all(deps)
        db.flush()
        admin = User(username="bench-admin", full_name="admin", role=Role.admin,
                     department_id=bureau.id, password_hash=pw)
        db.add(admin)
        db.flush()
        for i in range(10):
            service.create_vehicle(db, admin, schemas.VehicleCreate(
                plate=f"川A{20000 + i:05d}", vin=f"LFVBENCH{i:09d}", category="general",
                seats=7, energy_type="electric", department_id=deps[i % 2].id,
                home_garage={"lat": 30.66, "lon": 104.06}))
        for i in range(staff_count):
            dep = deps[i % 2]
            db.add(User(username=f"bench-staff{i}", full_name=f"staff {i}", role=Role.staff,
                        department_id=dep.id, password_hash=pw))
            out.append((f"bench-staff{i}", dep.id))
        db.commit()
    engine.dispose()
    return out


# ------------------------------------------------------------------------------ load process
async def _load(base: str, users: list[tuple[str, int]], rate: float, total: int,
                concurrency: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30.0) as http:
        tokens = []
        for name, dep in users:
            r = await http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
            r.raise_for_status()
            tokens.append(({"Authorization": f"Bearer {r.json()['access_token']}"}, dep))
        # warm-up and some bookings to read (not measured)
        ids: list[list[int]] = [[] for _ in tokens]
        for i in range(40):
            h, dep = tokens[i % len(tokens)]
            r = await http.post("/api/dispatch/bookings", json=_booking_body(i, dep), headers=h)
            if r.status_code == 201:
                ids[i % len(tokens)].append(r.json()["id"])
        sem = asyncio.Semaphore(concurrency)
        samples: list[tuple[str, float, int]] = []

        async def one(i: int, due: float) -> None:
            k = i % len(tokens)
            h, dep = tokens[k]
            kind = ("create", "get", "list", "get", "list")[i % 5]
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            async with sem:
                try:
                    if kind == "create":
                        r = await http.post("/api/dispatch/bookings",
                                            json=_booking_body(1000 + i, dep), headers=h)
                        if r.status_code == 201:
                            ids[k].append(r.json()["id"])
                    elif kind == "get" and ids[k]:
                        mine = ids[k]
                        r = await http.get(f"/api/dispatch/bookings/{mine[i % len(mine)]}",
                                           headers=h)
                    else:
                        r = await http.get("/api/dispatch/bookings",
                                           params={"limit": 20, "offset": (i % 3) * 20},
                                           headers=h)
                    status = r.status_code
                except httpx.HTTPError:
                    status = 0  # timed out or connection refused
                except Exception:  # the load must never die half-way
                    status = -1
            samples.append((kind, (time.perf_counter() - due) * 1000, status))

        t0 = time.perf_counter() + 0.2
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(total)))
        elapsed = time.perf_counter() - t0
    return {"samples": samples, "elapsed": elapsed}


def _load_process(base: str, users: list[tuple[str, int]], rate: float, total: int,
                  concurrency: int, out: Any) -> None:
    try:
        out.put(asyncio.run(_load(base, users, rate, total, concurrency)))
    except BaseException as exc:
        out.put({"error": repr(exc)[:500], "samples": [], "elapsed": 0.0})
        raise


# ------------------------------------------------------------------------------ main
def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(json_path: str | None = None, rate: float = 200.0, seconds: float = 10.0,
        concurrency: int = 12, quiet: bool = False) -> dict[str, Any]:
    """Serve, load, measure; returns (and writes) the summary.

    ``concurrency`` bounds the requests in flight. Keep it below the engine's pool (5 + 10
    overflow): with more, sync endpoints wait for a connection in every threadpool thread
    while the requests holding connections wait for a thread to run their session teardown,
    and the server stalls for the pool timeout (30 s) — seen at 64, reported.
    """
    from sqlalchemy import create_engine, text

    from fleet.localservices import Postgres, free_port, wait_port

    total = int(rate * seconds)
    pg = Postgres().start()
    server = None
    try:
        admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE benchapi"))
        admin.dispose()
        db_url = pg.url("benchapi")
        users = _seed(db_url)
        port = free_port()
        env = {**os.environ, "GONGCHE_MODE": "test", "GONGCHE_SECRET_KEY": SECRET,
               "GONGCHE_DATABASE_URL": db_url, "GONGCHE_LOG_LEVEL": "WARNING",
               "GONGCHE_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fleet.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--log-level", "warning", "--no-access-log"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(port, 60)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        loader = ctx.Process(target=_load_process,
                             args=(f"http://127.0.0.1:{port}", users, rate, total, concurrency,
                                   out))
        loader.start()
        got = out.get(timeout=seconds * 30 + 300)
        loader.join(30)
        if got.get("error"):
            raise RuntimeError(f"load process failed: {got['error']}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        pg.stop()

    samples = got["samples"]
    ok = [s for s in samples if 200 <= s[2] < 300]
    lat = [s[1] for s in ok]
    per_kind = {}
    for kind in ("create", "get", "list"):
        ks = [s[1] for s in ok if s[0] == kind]
        per_kind[kind] = {"n": len(ks), "p50_ms": round(_pct(ks, 50), 1),
                          "p99_ms": round(_pct(ks, 99), 1)}
    statuses: dict[str, int] = {}
    for s in samples:
        statuses[str(s[2])] = statuses.get(str(s[2]), 0) + 1
    result = {
        "rate_target": rate, "seconds": seconds, "requests": total,
        "completed_ok": len(ok), "errors": len(samples) - len(ok), "statuses": statuses,
        "throughput_rps": round(len(samples) / got["elapsed"], 1) if got["elapsed"] else None,
        "p50_ms": round(_pct(lat, 50), 1), "p90_ms": round(_pct(lat, 90), 1),
        "p99_ms": round(_pct(lat, 99), 1), "max_ms": round(max(lat), 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "target_p99_ms": TARGET_P99_MS,
        "p99_within_target": bool(lat) and _pct(lat, 99) < TARGET_P99_MS,
        "per_kind": per_kind, "cpus": os.cpu_count(), "server_workers": 1,
        "concurrency": concurrency,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    if not quiet:
        _print(result)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result


def _print(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"gongche API under {r['rate_target']:.0f} requests/s (uvicorn, PostGIS)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key in ("requests", "completed_ok", "errors", "throughput_rps", "p50_ms", "p90_ms",
                "p99_ms", "max_ms", "target_p99_ms", "p99_within_target", "load_avg_1min"):
        t.add_row(key, str(r[key]))
    for kind, v in r["per_kind"].items():
        t.add_row(f"{kind} p50/p99 ms (n)", f"{v['p50_ms']} / {v['p99_ms']} ({v['n']})")
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=12)
    ap.add_argument("--json", default=str(RESULTS / "api.json"))
    a = ap.parse_args()
    run(a.json, a.rate, a.seconds, a.concurrency)


if __name__ == "__main__":
    main()
