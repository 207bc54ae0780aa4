"""Ingest benchmark: raw broker vs the whole pipeline, on private services, in one run.

    gongche bench ingest --seconds 20 --terminals 50 --json bench/results/ingest.json

Phase 1 — raw broker: publisher processes → Mosquitto (the project's config) → one
subscriber, QoS 1 (paho acknowledges every message), no processing. Phase 2 — end to end: the
same publishers send the same number of messages per process → Mosquitto → gateway
process(es) (one: its ordinary subscription, the default; more: ``$share/gateway/...``) →
Redis stream → writer process → PostGIS, counted when the rows are in ``positions``. Both
rates are messages / (arrival of the last one at the sink − the first publish), wall clock:
the subscriber's receipt in phase 1, the row's ``received_at`` in phase 2. Phase 3 —
latency at half the end-to-end rate: publish time (the fix's own time) to ``received_at``
(set in the insert transaction, i.e. queryable).
Lost and duplicated fixes are counted against what the publishers sent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Env:
    mqtt_port: int
    redis_url: str
    database_url: str
    passwords: dict[str, str]


# ------------------------------------------------------------------------------ workers
def _publisher(env: Env, tids: list[str], seconds: float, rate_per_s: float | None,
               start_epoch: float, out: Any, count: int | None = None, index: int = 0) -> None:
    """Publish one RMC+GGA epoch per message, round-robin over ``tids``: for ``seconds``, or
    exactly ``count`` messages when given. Reports (index, sent, wall time of the first
    publish, CPU seconds this process spent publishing)."""
    import paho.mqtt.client as mqtt

    from fleet.fix import Fix
    from simulators.noise import fix_to_nmea

    clients = {}
    for tid in tids:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{tid}",
                        protocol=mqtt.MQTTv311, clean_session=True)
        c.username_pw_set(tid, env.passwords[tid])
        c.max_inflight_messages_set(1000)
        c.connect("127.0.0.1", env.mqtt_port)
        c.loop_start()
        clients[tid] = c
    base = datetime.fromtimestamp(start_epoch, UTC).replace(microsecond=0)
    sent = 0
    t_end = time.monotonic() + seconds
    t0 = time.monotonic()
    first_wall = time.time()
    cpu0 = time.process_time()
    infos = []
    step = 0
    while (sent < count) if count is not None else (time.monotonic() < t_end):
        step += 1
        for tid in tids:
            if count is not None and sent >= count:
                break
            if rate_per_s:
                due = t0 + sent / rate_per_s
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                when = datetime.now(UTC)
            else:  # a 1 Hz terminal's day replayed faster than real time
                when = base + timedelta(seconds=step)
            # 30 km/h northwards: realistic, so the filter chain accepts every fix
            fix = Fix(tid, when, 30.6 + step * 7.5e-5, 104.0, speed_kmh=30.0, course=0.0)
            body = "\r\n".join(fix_to_nmea(fix)) + "\r\n"
            infos.append(clients[tid].publish(f"gongche/t/{tid}/nmea", body, qos=1))
            sent += 1
        if len(infos) > 5000:
            infos = [i for i in infos if not i.is_published()]
    for info in infos:
        info.wait_for_publish(30)
    for c in clients.values():
        c.loop_stop()
        c.disconnect()
    out.put((index, sent, first_wall, time.process_time() - cpu0))


def _raw_subscriber(env: Env, ready: Any, out: Any, idle_s: float) -> None:
    import paho.mqtt.client as mqtt

    count = [0, 0.0, 0.0]  # received, first, last (wall clock, as the e2e phase's received_at)
    cpu0 = time.process_time()

    def on_message(_c: Any, _u: Any, _m: Any) -> None:  # paho acknowledges (QoS 1) on return
        now = time.time()
        if count[0] == 0:
            count[1] = now
        count[0] += 1
        count[2] = now

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw-sub",
                    protocol=mqtt.MQTTv311, clean_session=True)
    c.username_pw_set("gateway", env.passwords["gateway"])
    c.max_inflight_messages_set(1000)
    c.on_message = on_message
    c.on_connect = lambda cl, *_: (cl.subscribe("gongche/t/+/nmea", qos=1), ready.set())
    c.connect("127.0.0.1", env.mqtt_port)
    c.loop_start()
    ready.wait(10)
    while True:
        time.sleep(0.2)
        if count[0] and time.time() - count[2] > idle_s:
            break
    c.loop_stop()
    out.put((count[0], count[2], time.process_time() - cpu0))


def _gateway(env: Env, ident: str, stop: Any, ready: Any, subscription: Any = "single"
             ) -> None:
    from fleet.db import make_engine
    from fleet.settings import Settings
    from fleet.store import redis_client
    from gateway.runner import Gateway

    s = Settings(mode="test", secret_key="bench-secret-key-0123456789-abcdefgh",
                 database_url=env.database_url, redis_url=env.redis_url, jt808_port=0,
                 mqtt_url=f"mqtt://gateway:{env.passwords['gateway']}@127.0.0.1:{env.mqtt_port}",
                 mqtt_subscription=subscription, log_level="WARNING")
    from fleet.logging import configure

    configure("WARNING")
    gw = Gateway(s, make_engine(s), redis_client(env.redis_url), mqtt_client_id=ident).start()
    gw.mqtt.connected.wait(60)
    time.sleep(0.5)  # the SUBACK: messages published before it would reach no one
    ready.release()
    stop.wait()
    gw.stop()


def _writer(env: Env, ident: str, stop: Any, ready: Any) -> None:
    import threading

    from fleet.db import make_engine
    from fleet.logging import configure
    from fleet.settings import Settings
    from fleet.store import redis_client
    from telematics.writer import StreamWriter

    configure("WARNING")
    s = Settings(mode="test", secret_key="bench-secret-key-0123456789-abcdefgh",
                 database_url=env.database_url)
    w = StreamWriter(redis_client(env.redis_url), make_engine(s), consumer=ident, batch=2000,
                     block_ms=100)
    t = threading.Thread(target=w.run)
    t.start()
    ready.release()
    stop.wait()
    w.stop()
    t.join()


# ------------------------------------------------------------------------------ CPU
def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its descendants: the live ones
    and those already reaped (``cutime``/``cstime``), read from /proc (0.0 where there is
    none). PostgreSQL's backends are children of the postmaster, itself a child of
    ``runuser`` when the bench runs as root."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        parent[int(d)] = int(fields[1])
        used[int(d)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        for child, ppid in parent.items():
            if ppid == p and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(used.get(p, 0) for p in tree) / tick


def _cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    return {name: sum(_cpu_seconds(p) for p in group) for name, group in pids.items()}


# ------------------------------------------------------------------------------ phases
def _count_positions(database_url: str) -> tuple[int, int]:
    from sqlalchemy import create_engine, text

    e = create_engine(database_url)
    with e.connect() as conn:
        n = conn.execute(text("SELECT count(*), count(DISTINCT (terminal_id, time)) "
                              "FROM positions")).one()
    e.dispose()
    return int(n[0]), int(n[1])


def _truncate(database_url: str) -> None:
    from sqlalchemy import create_engine, text

    e = create_engine(database_url)
    with e.begin() as conn:
        conn.execute(text("TRUNCATE positions"))
    e.dispose()


def _publish(ctx: Any, env: Env, tids: list[str], seconds: float, processes: int,
             rate: float | None, start_epoch: float, counts: list[int] | None = None
             ) -> tuple[list[int], float, float]:
    """Run the publisher processes; → (messages sent by each, wall time of the first, CPU
    seconds they spent publishing)."""
    out = ctx.Queue()
    chunks = [tids[i::processes] for i in range(processes)]
    procs = [ctx.Process(target=_publisher, args=(env, chunk, seconds,
                                                  rate / processes if rate else None,
                                                  start_epoch + k * 3600, out,
                                                  counts[k] if counts else None, k))
             for k, chunk in enumerate(chunks)]
    for p in procs:
        p.start()
    reports = [out.get(timeout=seconds + 300) for _ in procs]
    for p in procs:
        p.join()
    reports.sort()
    return [int(r[1]) for r in reports], min(r[2] for r in reports), sum(r[3] for r in reports)


def phase_raw(ctx: Any, env: Env, tids: list[str], seconds: float, publishers: int,
              broker_pid: int | None = None) -> dict[str, Any]:
    """Publishers for ``seconds`` → Mosquitto → one QoS 1 subscriber (paho's loop, which
    acknowledges each message as it returns from on_message)."""
    ready, out = ctx.Event(), ctx.Queue()
    sub = ctx.Process(target=_raw_subscriber, args=(env, ready, out, 2.0))
    sub.start()
    ready.wait(15)
    broker0 = _cpu_seconds(broker_pid) if broker_pid else 0.0
    sent, first, pub_cpu = _publish(ctx, env, tids, seconds, publishers, None,
                                    time.time() - 86400)
    received, last, sub_cpu = out.get(timeout=seconds + 300)
    broker = _cpu_seconds(broker_pid) - broker0 if broker_pid else 0.0
    sub.join()
    span = last - first
    n = received / 1e6 if received else None
    cpu = {"publishers": round(pub_cpu / n, 1) if n else None,
           "mosquitto": round(broker / n, 1) if n and broker_pid else None,
           "subscriber": round(sub_cpu / n, 1) if n else None}
    return {"sent": sum(sent), "per_publisher": sent, "received": received,
            "msgs_per_s": received / span if span > 0 else 0.0, "cpu_us_per_msg": cpu}


def _wait_stored(env: Env, expected: int, timeout: float) -> tuple[int, int]:
    """Wait until ``expected`` distinct fixes are stored (or nothing moves for ~5 s).

    It polls while the pipeline is still draining, so it keeps out of its way: one
    connection, and a plain ``count(*)`` per poll; the distinct count (a sort of every row)
    only once the rows are all there. (It was both counts on a new connection, i.e. a new
    PostgreSQL backend, four times a second: CPU taken from the pipeline it measures.)"""
    from sqlalchemy import create_engine, text

    e = create_engine(env.database_url)
    try:
        deadline = time.monotonic() + timeout
        last, stable = -1, 0
        with e.connect() as conn:
            while time.monotonic() < deadline:
                rows = int(conn.execute(text("SELECT count(*) FROM positions")).scalar_one())
                if rows >= expected and conn.execute(text(
                        "SELECT count(DISTINCT (terminal_id, time)) FROM positions")
                        ).scalar_one() >= expected:
                    break
                conn.rollback()  # a fresh snapshot for the next poll
                stable = stable + 1 if rows == last else 0
                if stable > 20:
                    break
                last = rows
                time.sleep(0.25)
    finally:
        e.dispose()
    return _count_positions(env.database_url)


def _last_received(database_url: str) -> float:
    """Wall time (epoch s) at which the last fix became queryable."""
    from sqlalchemy import create_engine, text

    e = create_engine(database_url)
    with e.connect() as conn:
        t = conn.execute(text("SELECT EXTRACT(EPOCH FROM max(received_at)) FROM positions")
                         ).scalar_one()
    e.dispose()
    return float(t)


def phase_e2e(ctx: Any, env: Env, tids: list[str], seconds: float, publishers: int,
              counts: list[int], pids: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """The same publishers sending the same number of messages as in the raw phase; the
    rate is measured the same way: messages / (last one at the sink − first one published),
    the sink being ``positions`` (the row's ``received_at``, set in its insert transaction).

    ``pids`` (name → process ids): their CPU time over the phase, per stored fix, is
    reported as ``cpu_us_per_fix`` (it includes the bench's own queries in PostgreSQL),
    with the publishers' (measured in them, as in the raw phase)."""
    _truncate(env.database_url)
    before = _cpu_snapshot(pids or {})
    sent_each, first, pub_cpu = _publish(ctx, env, tids, seconds, publishers, None,
                                         time.time() - 2 * 86400, counts)
    sent = sum(sent_each)
    rows, distinct = _wait_stored(env, sent, 300)
    after = _cpu_snapshot(pids or {})
    span = _last_received(env.database_url) - first if distinct else 0.0
    cpu = {k: round((after[k] - before[k]) / distinct * 1e6, 1) if distinct else None
           for k in after}
    cpu["publishers"] = round(pub_cpu / distinct * 1e6, 1) if distinct else None
    return {"sent": sent, "stored": distinct, "rows": rows,
            "fixes_per_s": distinct / span if span > 0 else 0.0, "cpu_us_per_fix": cpu}


def phase_latency(ctx: Any, env: Env, tids: list[str], seconds: float, rate: float
                  ) -> dict[str, float]:
    from sqlalchemy import create_engine, text

    _truncate(env.database_url)
    sent, _first, _cpu = _publish(ctx, env, tids, seconds, 1, rate, time.time())
    _wait_stored(env, sum(sent), 60)
    e = create_engine(env.database_url)
    with e.connect() as conn:
        lat = [float(r[0]) for r in conn.execute(text(
            "SELECT EXTRACT(EPOCH FROM (received_at - time)) * 1000 FROM positions"))]
    e.dispose()
    lat.sort()
    if not lat:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    return {"p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "n": len(lat), "rate": rate}


# ------------------------------------------------------------------------------ main
def run(seconds: float = 15.0, terminals: int = 50, json_path: str | None = None,
        gateways: int = 1, writers: int = 1, publishers: int = 2) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from fleet import migrate
    from fleet.db import make_engine
    from fleet.localservices import Mosquitto, Postgres, Redis
    from fleet.settings import Settings
    from simulators.run import SimulationSpec, register_terminals

    ctx = mp.get_context("spawn")
    spec = SimulationSpec(terminals=terminals, prefix="B", protocol="nmea")
    tids = spec.terminal_ids()
    pg, rd, mq = Postgres().start(), Redis().start(), Mosquitto()
    for tid in tids:
        mq.users[tid] = f"pw-{tid}"
    mq.start()
    try:
        admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE bench"))
        admin.dispose()
        env = Env(mq.port, rd.url, pg.url("bench"), dict(mq.users))
        settings = Settings(mode="test", secret_key="bench-secret-key-0123456789-abcdefgh",
                            database_url=env.database_url)
        engine = make_engine(settings)
        migrate.upgrade(engine)
        register_terminals(engine, spec)
        engine.dispose()

        raw = phase_raw(ctx, env, tids, seconds, publishers, mq.proc.pid if mq.proc else None)
        raw_rate, raw_sent, raw_received = raw["msgs_per_s"], raw["sent"], raw["received"]

        stop, ready = ctx.Event(), ctx.Semaphore(0)
        # one gateway: its ordinary subscription (the default); more: a shared one
        subscription = "single" if gateways == 1 else "shared"
        procs = [ctx.Process(target=_gateway, args=(env, f"bench-gw-{i}", stop, ready,
                                                    subscription))
                 for i in range(gateways)]
        procs += [ctx.Process(target=_writer, args=(env, f"bench-writer-{i}", stop, ready))
                  for i in range(writers)]
        for p in procs:
            p.start()
        for _ in procs:  # every gateway subscribed and every writer reading
            if not ready.acquire(timeout=120):
                raise TimeoutError("a gateway or writer process did not start")
        gw_procs, wr_procs = procs[:gateways], procs[gateways:]
        pids = {"gateway": [p.pid for p in gw_procs if p.pid],
                "writer": [p.pid for p in wr_procs if p.pid],
                "redis": [rd.proc.pid] if rd.proc else [],
                "postgres": [pg.proc.pid] if pg.proc else [],
                "mosquitto": [mq.proc.pid] if mq.proc else []}
        e2e = phase_e2e(ctx, env, tids, seconds, publishers, raw["per_publisher"], pids)
        latency = phase_latency(ctx, env, tids, min(seconds, 10), e2e["fixes_per_s"] / 2)
        stop.set()
        for p in procs:
            p.join(30)
    finally:
        mq.stop()
        rd.stop()
        pg.stop()

    result = {
        "seconds": seconds, "terminals": terminals, "gateways": gateways, "writers": writers,
        "subscription": "single" if gateways == 1 else "shared", "publishers": publishers,
        "cpus": os.cpu_count(),
        "raw_broker_msgs_per_s": round(raw_rate, 1),
        "raw_broker_sent": raw_sent, "raw_broker_received": raw_received,
        "e2e_fixes_per_s": round(e2e["fixes_per_s"], 1),
        "ratio": round(e2e["fixes_per_s"] / raw_rate, 3) if raw_rate else None,
        "latency_rate_fixes_per_s": round(latency.get("rate", 0.0), 1),
        "latency_p50_ms": round(latency["p50"], 1),
        "latency_p99_ms": round(latency["p99"], 1),
        "sent": int(e2e["sent"]), "stored": int(e2e["stored"]),
        "lost": int(e2e["sent"] - e2e["stored"]),
        "duplicated": int(e2e["rows"] - e2e["stored"]),
        "raw_cpu_us_per_msg": raw["cpu_us_per_msg"],
        "e2e_cpu_us_per_fix": e2e["cpu_us_per_fix"],
        "load_average": list(os.getloadavg()),
    }
    _print(result)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
    return result


def _print(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="gongche ingest benchmark (same machine, same run)")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for key in ("raw_broker_msgs_per_s", "e2e_fixes_per_s", "ratio", "latency_rate_fixes_per_s",
                "latency_p50_ms", "latency_p99_ms", "sent", "stored", "lost", "duplicated"):
        t.add_row(key, str(r[key]))
    for name, us in r["raw_cpu_us_per_msg"].items():
        t.add_row(f"raw CPU µs/msg: {name}", str(us))
    for name, us in r["e2e_cpu_us_per_fix"].items():
        t.add_row(f"e2e CPU µs/fix: {name}", str(us))
    t.add_row("load average (1/5/15 min)", " / ".join(f"{x:.2f}" for x in r["load_average"]))
    Console().print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--gateways", type=int, default=1,
                    help="gateway processes (1: ordinary subscription; more: $share/...)")
    ap.add_argument("--writers", type=int, default=1)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--json", default=str(RESULTS / "ingest.json"))
    a = ap.parse_args()
    run(a.seconds, a.terminals, a.json, a.gateways, a.writers, a.publishers)


if __name__ == "__main__":
    main()
