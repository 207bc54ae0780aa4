"""Pipeline CPU per fix beyond the broker: gateway (with a real Redis) and writer (with a
real PostGIS), each in this process, on private services.

    .venv/bin/python -m bench.pipeline_cpu --fixes 40000 --terminals 50 --repeat 5

The throughput of ``bench ingest`` swings with whatever else runs on the machine; CPU time
per fix does much less, so this is the figure to compare a change of the gateway or writer
by. The messages are ``bench.gateway_cpu``'s (realistic RMC+GGA epochs, one per MQTT
message, terminals interleaved). Two stages, each ``--repeat`` times on fresh state (the
table shows the least of the runs: other load on the machine only ever adds CPU time, through
caches and frequency, so the minimum is the steadiest figure):

  gateway   the MQTT worker's path without the socket: for batches of ``--batch`` messages
            ``Ingest.route_nmea`` per message, then ``RedisSink.put`` (stream + live state)
  writer    ``StreamWriter.drain`` of those stream entries into ``positions`` (reads of
            ``--writer-batch`` entries; 2,000 as the ingest benchmark's writer)

CPU is this process's (``time.process_time``) plus the Redis server's and the PostgreSQL
cluster's (its backends included), read from /proc; paho's receive path and Mosquitto are
not in it (``bench ingest`` reports them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.gateway_cpu import _Directory, build_messages
from bench.ingest import _cpu_seconds

RESULTS = Path(__file__).resolve().parent / "results"


def _gateway(messages: Sequence[tuple[str, str, list[str]]], client: Any, batch: int
             ) -> None:
    from gateway.ingest import Ingest
    from gateway.sink import RedisSink

    tids = sorted({m[0] for m in messages})
    ingest = Ingest(_Directory(tids), RedisSink(client))  # type: ignore[arg-type]
    payloads = [(tid, payload.encode()) for tid, payload, _ in messages]
    route, put = ingest.route_nmea, ingest.sink.put
    for i in range(0, len(payloads), batch):
        routed: list[Any] = []
        for tid, payload in payloads[i : i + batch]:
            routed += route(tid, payload)
        put(routed)


def run(n_fixes: int, n_terminals: int, repeat: int, batch: int, writer_batch: int = 2000
        ) -> dict[str, Any]:
    import redis
    from sqlalchemy import create_engine, text

    from fleet import migrate
    from fleet.db import make_engine
    from fleet.heap import freeze_startup_heap
    from fleet.localservices import Postgres, Redis
    from fleet.settings import Settings
    from telematics.writer import StreamWriter

    now = datetime.now(UTC).replace(microsecond=0)
    messages = build_messages(n_fixes, n_terminals, now - timedelta(seconds=5))
    pg, rd = Postgres().start(), Redis().start()
    try:
        admin = create_engine(pg.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE bench"))
        admin.dispose()
        settings = Settings(mode="test", secret_key="bench-secret-key-0123456789-abcdefgh",
                            database_url=pg.url("bench"))
        engine = make_engine(settings)
        migrate.upgrade(engine)
        client = redis.Redis.from_url(rd.url)
        assert rd.proc is not None and pg.proc is not None
        servers = {"redis": rd.proc.pid, "postgres": pg.proc.pid}
        # as the gateway and writer processes do once started (fleet.heap); it also keeps
        # this harness's own data (the messages) out of the collector's way
        freeze_startup_heap()
        samples: dict[str, list[float]] = {k: [] for k in (
            "gateway", "gateway_redis", "writer", "writer_redis", "writer_postgres")}
        for _ in range(repeat + 1):  # the first round warms up (caches, JIT-less imports)
            client.flushall()
            with engine.begin() as conn:
                conn.execute(text("TRUNCATE positions"))
            cpu0, srv0 = time.process_time(), {k: _cpu_seconds(p) for k, p in servers.items()}
            _gateway(messages, client, batch)
            cpu1, srv1 = time.process_time(), {k: _cpu_seconds(p) for k, p in servers.items()}
            writer = StreamWriter(client, engine, consumer="bench", batch=writer_batch,
                                  block_ms=10)
            writer.ensure_group()
            stored = writer.drain(idle_rounds=1)
            cpu2, srv2 = time.process_time(), {k: _cpu_seconds(p) for k, p in servers.items()}
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT count(*) FROM positions")).scalar_one()
            assert stored == rows == len(messages), (stored, rows, len(messages))
            n = len(messages) / 1e6
            for key, value in (("gateway", cpu1 - cpu0),
                               ("gateway_redis", srv1["redis"] - srv0["redis"]),
                               ("writer", cpu2 - cpu1),
                               ("writer_redis", srv2["redis"] - srv1["redis"]),
                               ("writer_postgres", srv2["postgres"] - srv1["postgres"])):
                samples[key].append(value / n)
        engine.dispose()
    finally:
        rd.stop()
        pg.stop()
    us = {k: round(min(v[1:]), 1) for k, v in samples.items()}
    return {"fixes": len(messages), "terminals": n_terminals, "repeat": repeat,
            "batch": batch, "writer_batch": writer_batch, "when": now.isoformat(),
            "cpu_us_per_fix": us,
            "total_us_per_fix": round(sum(us.values()), 1)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixes", type=int, default=40_000)
    p.add_argument("--terminals", type=int, default=50)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--batch", type=int, default=500, help="messages per gateway batch")
    p.add_argument("--writer-batch", type=int, default=2000,
                   help="entries per writer read (the ingest benchmark's writer: 2,000; "
                        "it reads less when it keeps up)")
    p.add_argument("--json", type=Path, default=RESULTS / "pipeline_cpu.json")
    args = p.parse_args(argv)
    result = run(args.fixes, args.terminals, args.repeat, args.batch, args.writer_batch)
    print(f"pipeline CPU per fix, {result['fixes']} fixes from {result['terminals']} "
          f"terminals, least of {result['repeat']} runs")
    for k, v in result["cpu_us_per_fix"].items():
        print(f"  {k:<18}{v:>8.1f} µs")
    print(f"  {'total':<18}{result['total_us_per_fix']:>8.1f} µs")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
