"""API latency under load: the booking and query API served by uvicorn on PostGIS.

    gongche bench api --rate 200 --seconds 10 --workers 2 --json bench/results/api.json

A private PostgreSQL+PostGIS (fleet.localservices) is migrated and given a bureau with
departments, cars, staff and some bookings; ``fleet.app:create_app`` is served by
``--workers`` uvicorn processes (by default one more than the machine has cores: 3 on the
reference machine, see :data:`DEFAULT_WORKERS`) on one free loopback port, each on its own
SO_REUSEPORT socket (see :func:`serve_worker`).
A separate load process (asyncio on uvloop, a minimal keep-alive HTTP/1.1 client so that
the load takes little of the CPU it shares with the server) sends an open-loop schedule of
exactly ``rate × seconds`` requests — 20 % booking creations, 40 % booking reads by id,
40 % booking list pages, as department staff — and measures each request from its
*scheduled* start to its response, so a server (or a load) that falls behind shows it in
the latency instead of hiding it (no coordinated omission). A short warm-up (40 bookings
to read, 160 reads) is not measured.
Reported: throughput achieved, p50/p90/p99/max latency overall and per kind, errors, each
server worker's CPU seconds over the timed part (the warm-up excluded) and their sum per
request, the load process's CPU seconds, how late the load sent its latest request, how busy
the whole machine was (near 1.0: other processes took the CPU the server needed, and the
latency says nothing about the server), and a per-second timeline of the latency."""

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
#: One more server process than cores. The kernel hashes the load's keep-alive connections
#: over the processes' sockets, so with one process per core one of them often got 60 % of
#: the requests, and each process runs Python on one core at a time (the GIL) while it waits
#: on the database: p99 22–238 ms over five runs with 2 processes on 2 cores, 22–35 ms over
#: five with 3 (the same CPU per request).
DEFAULT_WORKERS = (os.cpu_count() or 1) + 1


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
class _Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time, nothing more.

    The load shares the machine's cores with the server under test, so it must cost little:
    an httpx request costs the client about as much CPU as the server spends answering it;
    this costs a few tens of microseconds. Responses must carry Content-Length (uvicorn's
    JSON answers do); anything else is reported as an error, not guessed at.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.need = -1
        self.head_end = -1
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                if self.waiter is not None and not self.waiter.done():
                    self.waiter.set_exception(ValueError("response without Content-Length"))
                return
            stop = head.find(b"\r\n", at + 17)
            length = int(head[at + 17:stop if stop >= 0 else len(head)])
            self.head_end, self.need = end + 4, end + 4 + length
        if len(self.buf) >= self.need:
            body = bytes(self.buf[self.head_end:self.need])
            del self.buf[:self.need]
            self.need = -1
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result((self.status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.transport is None:
            raise ConnectionError("connection closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


def _raw(method: str, path: str, host: str, headers: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _load(base: str, users: list[tuple[str, int]], rate: float, total: int,
                concurrency: int, warm: Any = None) -> dict[str, Any]:
    import resource

    import httpx
    import orjson

    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        tokens = []
        for name, dep in users:
            r = await http.post("/api/auth/token", data={"username": name, "password": PASSWORD})
            r.raise_for_status()
            tokens.append((f"Authorization: Bearer {r.json()['access_token']}\r\n", dep))
    netloc = base.removeprefix("http://")
    host, port = netloc.split(":")
    loop = asyncio.get_running_loop()
    conns: asyncio.Queue[_Http] = asyncio.Queue()
    for _ in range(concurrency):
        _, proto = await loop.create_connection(_Http, host, int(port))
        conns.put_nowait(proto)
    ids: list[list[int]] = [[] for _ in tokens]

    def build(i: int) -> tuple[str, bytes, int]:
        k = i % len(tokens)
        auth, dep = tokens[k]
        kind = ("create", "get", "list", "get", "list")[i % 5]
        if kind == "create":
            body = orjson.dumps(_booking_body(i, dep))
            return kind, _raw("POST", "/api/dispatch/bookings", netloc, auth, body), k
        if kind == "get" and ids[k]:
            mine = ids[k]
            return kind, _raw("GET", f"/api/dispatch/bookings/{mine[i % len(mine)]}", netloc,
                              auth), k
        return "list", _raw("GET", f"/api/dispatch/bookings?limit=20&offset={(i % 3) * 20}",
                            netloc, auth), k

    async def send(raw: bytes) -> tuple[int, bytes]:
        conn = await conns.get()
        try:
            status, body = await asyncio.wait_for(conn.request(raw), 30.0)
        except BaseException:
            conn.transport and conn.transport.close()
            _, conn = await loop.create_connection(_Http, host, int(port))
            raise
        finally:
            conns.put_nowait(conn)
        return status, body

    # warm-up, not measured: bookings to read, and every worker's statement caches
    for i in range(40):
        kind, raw, k = build(i * 5)
        status, body = await send(raw)
        if status == 201:
            ids[k].append(orjson.loads(body)["id"])
    await asyncio.gather(*(send(build(i)[1]) for i in range(1, 200) if i % 5))
    if warm is not None:  # the servers' CPU is counted from here on
        warm.put("warm")
        await asyncio.sleep(0.3)

    samples: list[tuple[str, float, int, float]] = []
    lag: list[float] = []

    async def one(i: int, due: float) -> None:
        kind, raw, k = build(i)
        try:
            status, body = await send(raw)
            if status == 201:
                ids[k].append(orjson.loads(body)["id"])
        except (TimeoutError, OSError, ValueError):
            status = 0  # timed out, refused or unreadable
        except Exception:  # the load must never die half-way
            status = -1
        # latency from the request's *scheduled* time (no coordinated omission)
        samples.append((kind, (time.perf_counter() - due) * 1000, status, due - t0))

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = []
    t0 = time.perf_counter() + 0.2
    for i in range(total):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lag.append(time.perf_counter() - due)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    load_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"samples": samples, "elapsed": elapsed, "load_cpu_s": round(load_cpu, 2),
            "dispatch_lag_max_ms": round(max(lag) * 1000, 1) if lag else None}


def _load_process(base: str, users: list[tuple[str, int]], rate: float, total: int,
                  concurrency: int, out: Any) -> None:
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        out.put(runner(_load(base, users, rate, total, concurrency, out)))
    except BaseException as exc:
        out.put({"error": repr(exc)[:500], "samples": [], "elapsed": 0.0})
        raise


# ------------------------------------------------------------------------------ server
def serve_worker(port: int) -> None:
    """One server process on its own ``SO_REUSEPORT`` socket on ``port``, as
    ``gongche serve --workers N`` runs them (:func:`fleet.server.serve_worker` says why)."""
    from fleet.server import serve_worker as run

    run("127.0.0.1", port)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far (Linux /proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


def _listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:port (Linux /proc/net/tcp, state 0A)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as fh:
        return sum(1 for line in fh
                   if (f := line.split()) and f[1] == want and f[3] == "0A")


def _wait_listeners(port: int, n: int, procs: list[subprocess.Popen[bytes]],
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _listeners(port) < n:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a server worker exited during start-up")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} workers not listening on {port} after {timeout}s")
        time.sleep(0.1)


# ------------------------------------------------------------------------------ main
def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(json_path: str | None = None, rate: float = 200.0, seconds: float = 10.0,
        concurrency: int = 32, quiet: bool = False,
        workers: int = DEFAULT_WORKERS) -> dict[str, Any]:
    """Serve, load, measure; returns (and writes) the summary.

    ``workers`` uvicorn processes serve, one SO_REUSEPORT socket each on the same port (the
    kernel spreads the load's connections over them; :func:`serve_worker`). ``concurrency``
    is the number of keep-alive connections the load holds, so it bounds the requests in
    flight; a request due while all are busy waits for one, and that wait counts in its
    latency. Keep it well below the engine's pool plus the threadpool (50 + 40 per worker):
    a request holds its connection from the user lookup on, and with more requests in
    flight than both can seat, threads wait for connections held by requests that wait for
    a thread.
    """
    from sqlalchemy import create_engine, text

    from fleet.localservices import Postgres, free_port

    total = int(rate * seconds)
    pg = Postgres().start()
    servers: list[subprocess.Popen[bytes]] = []
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
        for n in range(1, workers + 1):  # one at a time: each listens before the next starts
            servers.append(subprocess.Popen(
                [sys.executable, "-c", f"from bench.api import serve_worker; serve_worker({port})"],
                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_listeners(port, n, servers, 90)
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        loader = ctx.Process(target=_load_process,
                             args=(f"http://127.0.0.1:{port}", users, rate, total, concurrency,
                                   out))
        loader.start()
        got = out.get(timeout=300)
        if got == "warm":  # warm-up done: measure the servers' CPU over the timed part only
            cpu0 = [_cpu_seconds(p.pid) for p in servers]
            machine0 = _machine_busy()
            got = out.get(timeout=seconds * 30 + 300)
        else:
            cpu0 = [0.0 for _ in servers]
            machine0 = (0.0, 0.0)
        machine1 = _machine_busy()
        server_cpu = [round(_cpu_seconds(p.pid) - c, 2) for p, c in zip(servers, cpu0,
                                                                         strict=True)]
        loader.join(30)
        if got.get("error"):
            raise RuntimeError(f"load process failed: {got['error']}")
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
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
    timeline = []  # per second of the schedule: how latency moved (a stall shows as a spike)
    for second in range(int(seconds) + 1):
        ls = [s[1] for s in ok if second <= s[3] < second + 1]
        if ls:
            timeline.append({"second": second, "n": len(ls), "p50_ms": round(_pct(ls, 50), 1),
                             "p99_ms": round(_pct(ls, 99), 1), "max_ms": round(max(ls), 1)})
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
        "per_kind": per_kind, "timeline": timeline, "cpus": os.cpu_count(),
        "server_workers": workers,
        "concurrency": concurrency, "server_cpu_s": server_cpu,
        "server_cpu_ms_per_request": round(sum(server_cpu) / total * 1000, 2) if total else None,
        "load_cpu_s": got.get("load_cpu_s"),
        "dispatch_lag_max_ms": got.get("dispatch_lag_max_ms"),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        # all processes' CPU over the timed part, servers, load and database included: near
        # 1.0 means the machine, not only the server, was the limit
        "machine_busy": round((machine1[0] - machine0[0])
                              / max(1.0, machine1[1] - machine0[1]), 2),
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

    t = Table(title=f"gongche API under {r['rate_target']:.0f} requests/s "
                    f"(uvicorn × {r['server_workers']}, PostGIS)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key in ("requests", "completed_ok", "errors", "throughput_rps", "p50_ms", "p90_ms",
                "p99_ms", "max_ms", "target_p99_ms", "p99_within_target", "server_cpu_s",
                "server_cpu_ms_per_request",
                "load_cpu_s",
                "dispatch_lag_max_ms", "load_avg_1min", "machine_busy"):
        t.add_row(key, str(r[key]))
    for kind, v in r["per_kind"].items():
        t.add_row(f"{kind} p50/p99 ms (n)", f"{v['p50_ms']} / {v['p99_ms']} ({v['n']})")
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    ap.add_argument("--json", default=str(RESULTS / "api.json"))
    a = ap.parse_args()
    run(a.json, a.rate, a.seconds, a.concurrency, workers=a.workers)


if __name__ == "__main__":
    main()
