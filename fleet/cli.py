"""The ``gongche`` command line (typer)."""

from __future__ import annotations

import getpass
import os
from typing import Annotated

import typer
from rich.console import Console

from fleet.settings import Settings, get_settings

app = typer.Typer(help="gongche — official-car platform: booking, dispatch, command, "
                       "supervision (预约 · 调度 · 指挥 · 监管).", no_args_is_help=True)
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def migrate(revision: str = "heads") -> None:
    """Apply database migrations (PostgreSQL+PostGIS or SQLite+SpatiaLite)."""
    from fleet import migrate as m
    from fleet.db import make_engine

    engine = make_engine(_settings())
    m.upgrade(engine, revision)
    console.print(f"database at revision [bold]{m.current(engine)}[/bold]")


@app.command()
def seed() -> None:
    """Load the demo bureau (departments, vehicles, drivers, terminals, demo users)."""
    from fleet.db import make_engine, make_sessionmaker, unit_of_work
    from fleet.seed import seed as do_seed

    settings = _settings()
    with unit_of_work(make_sessionmaker(make_engine(settings))) as db:
        result = do_seed(db, demo_users=settings.demo)
    console.print(f"seeded: {result}" if result else "already seeded: nothing to do")


@app.command("create-admin")
def create_admin(
    username: Annotated[str, typer.Option(prompt=True)],
    department: Annotated[str, typer.Option(help="department code (created if missing)")]
    = "bureau",
    password: Annotated[str | None, typer.Option(help="default: prompt")] = None,
) -> None:
    """Create an administrator (and the root department when the database is empty)."""
    from sqlalchemy import select

    from fleet import schemas, service
    from fleet.db import make_engine, make_sessionmaker, unit_of_work
    from fleet.errors import DomainError
    from fleet.models import Department, Role

    password = password or os.environ.get("GONGCHE_ADMIN_PASSWORD") or getpass.getpass()
    with unit_of_work(make_sessionmaker(make_engine(_settings()))) as db:
        dep = db.scalar(select(Department).where(Department.code == department))
        if dep is None:
            dep = Department(code=department, name=department)
            db.add(dep)
            db.flush()
        try:
            user = service.create_user(db, None, schemas.UserCreate(
                username=username, password=password, role=Role.admin, department_id=dep.id))
        except (DomainError, ValueError) as exc:
            console.print(f"[red]cannot create admin:[/red] {exc}")
            raise typer.Exit(1) from exc
    console.print(f"admin [bold]{user.username}[/bold] created")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option(envvar="GONGCHE_PORT")] = None,
    workers: int = 1,
) -> None:
    """Serve the API (and console) with uvicorn; ``--workers N``: N processes, each on its
    own SO_REUSEPORT socket (fleet.server)."""
    from fleet.logging import configure
    from fleet.server import serve as run

    settings = _settings()
    configure(settings.log_level)
    run(host or settings.host, port or settings.port, workers)


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(envvar="GONGCHE_PORT")] = None,
    terminals: Annotated[int, typer.Option(help="simulated terminals driving")] = 20,
) -> None:
    """Run the whole system on embedded defaults with simulated terminals."""
    from fleet.demo import run_demo

    os.environ.setdefault("GONGCHE_MODE", "demo")
    get_settings.cache_clear()
    run_demo(_settings(), port=port, terminals=terminals)


def _wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT (the processes stop cleanly on either)."""
    import signal
    import threading

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()


@app.command()
def gateway(
    jt808_port: Annotated[int | None, typer.Option(help="default: GONGCHE_JT808_PORT")] = None,
    client_id: Annotated[str, typer.Option(envvar="GONGCHE_GATEWAY_ID",
                                           help="stable MQTT client id of this instance")] = "",
) -> None:
    """Run the gateway: NMEA over MQTT and JT/T 808 over TCP → Redis stream."""
    from fleet.db import make_engine
    from fleet.logging import configure
    from fleet.store import redis_client
    from gateway.runner import Gateway

    settings = _settings()
    configure(settings.log_level)
    gw = Gateway(settings, make_engine(settings), redis_client(settings.redis_url),
                 mqtt_client_id=client_id, jt808_port=jt808_port).start()
    _wait_for_signal()
    gw.stop()


@app.command()
def worker() -> None:
    """Run a position writer: Redis stream → positions → trips, stops, events."""
    import threading

    from fleet.db import make_engine, writing
    from fleet.logging import configure
    from fleet.store import redis_client
    from telematics.processing import TelematicsProcessor, processor_config
    from telematics.writer import StreamWriter

    settings = _settings()
    configure(settings.log_level)
    engine, client = writing(make_engine(settings)), redis_client(settings.redis_url)
    processor = TelematicsProcessor(engine, client, processor_config(settings))
    writer = StreamWriter(client, engine, on_stored=processor.on_stored)
    threads = [threading.Thread(target=writer.run, name="writer"),
               threading.Thread(target=processor.run_ticks, args=(writer.stopped,),
                                name="telematics-ticks")]
    for t in threads:
        t.start()
    _wait_for_signal()
    writer.stop()
    for t in threads:
        t.join()


@app.command("mqtt-passwd")
def mqtt_passwd(
    path: Annotated[str, typer.Argument(help="password file to write, e.g. "
                                              "/etc/mosquitto/gongche.passwd")],
    gateway_password: Annotated[str | None, typer.Option(
        envvar="GONGCHE_MQTT_GATEWAY_PASSWORD", help="the gateway account's password")] = None,
) -> None:
    """Write Mosquitto's password file from the terminals table (then SIGHUP mosquitto)."""
    from fleet.db import make_engine, make_sessionmaker
    from fleet.security import hash_mqtt_secret
    from fleet.service import mosquitto_password_lines

    settings = _settings()
    _, _, user, password = settings.mqtt_endpoint()
    password = gateway_password or password
    with make_sessionmaker(make_engine(settings))() as db:
        lines = mosquitto_password_lines(db, user or "gateway",
                                         hash_mqtt_secret(password) if password else None)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)  # never a half-written file under mosquitto's feet
    console.print(f"wrote {len(lines)} accounts to {path}")


decode_app = typer.Typer(help="Decode terminal traffic to JSON lines (one object per fix).")
app.add_typer(decode_app, name="decode")


def _read_input(source: str) -> str:
    import sys

    if source == "-":
        return sys.stdin.read()
    if os.path.exists(source):
        with open(source, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    return source


def _print_json_lines(rows: object) -> int:
    import json

    errors = 0
    for row in rows:  # type: ignore[attr-defined]
        errors += "error" in row
        typer.echo(json.dumps(row, ensure_ascii=False))
    return errors


@decode_app.command("nmea")
def decode_nmea(source: Annotated[str, typer.Argument(help="file, or - for stdin")],
                terminal: str = "nmea") -> None:
    """NMEA 0183 sentences (RMC, GGA, GNS, VTG, GSA; GP/BD/GB/GN/GL/GA talkers)."""
    from gateway.decode import decode_nmea_text

    _print_json_lines(decode_nmea_text(_read_input(source), terminal))


@decode_app.command("jt808")
def decode_jt808(source: Annotated[str, typer.Argument(help="hex frames, a file, or -")]) -> None:
    """JT/T 808 frames (2013 and 2019) given as hex."""
    from gateway.decode import decode_jt808_text

    _print_json_lines(decode_jt808_text(_read_input(source)))


@app.command()
def simulate(
    terminals: int = 10,
    protocol: Annotated[str, typer.Option(help="nmea or jt808")] = "nmea",
    rate: Annotated[float, typer.Option(help="fixes per second per terminal")] = 1.0,
    minutes: float = 10.0,
    seed: int = 1,
    speedup: Annotated[float, typer.Option(help="play faster than real time (0 = flat out)")]
    = 1.0,
    sigma: Annotated[float, typer.Option(help="GPS noise σ, metres")] = 5.0,
    dropout: float = 0.0,
    duplicate: float = 0.0,
    reorder: float = 0.0,
    blind_areas: Annotated[int, typer.Option(help="JT/T 808 blind-area resends per car")] = 0,
    bad_checksum: Annotated[float, typer.Option(help="NMEA: share of corrupted sentences")]
    = 0.0,
    garbage: Annotated[float, typer.Option(help="NMEA: share of payloads with garbage")]
    = 0.0,
    route: Annotated[str | None, typer.Option(help="drive this GeoJSON LineString instead "
                                                  "of errands in the synthetic city")] = None,
    truth: Annotated[str, typer.Option(help="where to write the ground truth (JSON)")]
    = "simulation-truth.json",
    prefix: Annotated[str, typer.Option(help="terminal ids / phones to use")] = "",
) -> None:
    """Drive simulated cars through a synthetic city and send their fixes to the gateway."""
    import json

    from simulators.run import SimulationSpec, run_simulation

    line = None
    if route:
        with open(route, encoding="utf-8") as fh:
            line = json.load(fh)
    spec = SimulationSpec(garbage=garbage, route=line, terminals=terminals, protocol=protocol,
                          rate_hz=rate,
                          minutes=minutes, seed=seed, speedup=speedup, sigma_m=sigma,
                          dropout=dropout, duplicate=duplicate, reorder=reorder,
                          blind_areas=blind_areas, bad_checksum=bad_checksum, prefix=prefix)
    summary = run_simulation(_settings(), spec, truth)
    console.print(summary)


bench_app = typer.Typer(help="Benchmarks: each prints a table and writes JSON.")
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest")
def bench_ingest(seconds: float = 15.0, terminals: int = 50, gateways: int = 1,
                 writers: int = 1, publishers: int = 2,
                 json_path: Annotated[str, typer.Option("--json")] = "bench/results/ingest.json"
                 ) -> None:
    """Raw broker vs end-to-end ingest throughput, latency, lost and duplicated fixes."""
    from bench.ingest import run

    run(seconds, terminals, json_path, gateways, writers, publishers)


@bench_app.command("mileage")
def bench_mileage(json_path: Annotated[str, typer.Option("--json")]
                  = "bench/results/mileage.json") -> None:
    """Distance error and parked drift on noisy scenarios, next to the naive sum."""
    from bench.mileage import run

    run(json_path)


@bench_app.command("scheduler")
def bench_scheduler(
    set_name: Annotated[str, typer.Option("--set")] = "lilim100",
    seconds: float = 10.0,
    json_path: Annotated[str | None, typer.Option("--json")] = None,
    instances: Annotated[str | None, typer.Option(help="comma-separated instance names")] = None,
) -> None:
    """gongche's planner against best known solutions and peer solvers."""
    from bench.scheduler import run

    run(set_name, seconds, json_path or f"bench/results/scheduler-{set_name}.json",
        instances.split(",") if instances else None)


@bench_app.command("faults")
def bench_faults(terminals: int = 4, rate: float = 4.0,
                 json_path: Annotated[str, typer.Option("--json")] = "bench/results/faults.json"
                 ) -> None:
    """Restarts and SIGKILLs under steady load: sent, stored, lost, duplicated per fault."""
    from bench.faults import run

    run(json_path, terminals=terminals, rate=rate)


@bench_app.command("fuzz")
def bench_fuzz(inputs: int = 100_000, seed: int = 1,
               json_path: Annotated[str, typer.Option("--json")] = "bench/results/fuzz.json"
               ) -> None:
    """Coverage-guided fuzzing (atheris) of the NMEA and JT/T 808 decoders."""
    from bench.fuzz import run

    if run(inputs, json_path, seed)["crashes"]:
        raise typer.Exit(1)


@bench_app.command("api")
def bench_api(rate: float = 200.0, seconds: float = 10.0, concurrency: int = 32,
              workers: Annotated[int | None, typer.Option(
                  help="uvicorn worker processes (default: cores + 1)")] = None,
              json_path: Annotated[str, typer.Option("--json")] = "bench/results/api.json"
              ) -> None:
    """Booking and query API throughput and p50/p99 latency (uvicorn on PostGIS)."""
    from bench.api import DEFAULT_WORKERS, run

    run(json_path, rate=rate, seconds=seconds, concurrency=concurrency,
        workers=workers or DEFAULT_WORKERS)


def _register_domain_commands() -> None:
    """Sub-commands owned by domain packages (each exposes a typer app)."""
    from ledger.cli import ledger_app
    from telematics.cli import analyze_command

    app.add_typer(ledger_app, name="ledger")
    app.command("analyze")(analyze_command)


_register_domain_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
