"""``gongche demo``: the whole system in one process on embedded defaults.

SQLite+SpatiaLite file database, in-process MQTT broker (amqtt) and Redis-compatible store
(fakeredis), the gateway (MQTT + JT/T 808), the position writer, the API, and simulated cars
driving itineraries around a synthetic city with real protocol terminals.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import uvicorn
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from fleet import migrate
from fleet.app import create_app
from fleet.broker import EmbeddedBroker
from fleet.db import make_engine, make_sessionmaker, unit_of_work, writing
from fleet.logging import configure, get_logger
from fleet.models import Terminal, TerminalProtocol
from fleet.seed import DEMO_PASSWORD, DEMO_USERS, seed
from fleet.settings import Settings
from fleet.store import redis_client
from gateway.runner import Gateway
from simulators.city import City, build_city
from simulators.run import SimulationSpec, drive, plan_track
from telematics.processing import TelematicsProcessor, processor_config
from telematics.writer import StreamWriter

log = get_logger(__name__)
console = Console()

DEMO_MINUTES = 150.0  # one morning of errands per car, then it stays parked


@dataclass
class DemoCar:
    terminal_id: str
    protocol: TerminalProtocol
    phone: str | None


@dataclass
class Simulation:
    """Cars driving errands in real time through the real protocols.

    Each car is one terminal of :mod:`simulators.run` (same itineraries, noise model,
    pacing and JT/T 808 reconnect-and-resend as ``gongche simulate``), paced at 1×.
    """

    settings: Settings
    cars: list[DemoCar]
    jt808_port: int
    minutes: float = DEMO_MINUTES
    city: City = field(default_factory=build_city)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        settings = self.settings.model_copy(update={"jt808_port": self.jt808_port})
        t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        for i, car in enumerate(self.cars):
            t = threading.Thread(target=self._drive, args=(i, car, settings, t0),
                                 name=f"sim-{car.terminal_id}", daemon=True)
            t.start()
            self.threads.append(t)

    def _drive(self, i: int, car: DemoCar, settings: Settings, t0: datetime) -> None:
        jt808 = car.protocol is TerminalProtocol.jt808 and car.phone is not None
        spec = SimulationSpec(terminals=1, protocol="jt808" if jt808 else "nmea",
                              minutes=self.minutes, seed=i, speedup=1.0, sigma_m=4.0,
                              dropout=0.01, register=False, start=t0)
        tid = car.phone if jt808 and car.phone else car.terminal_id
        try:
            _track, fixes = plan_track(spec, self.city, tid, i, t0)
            drive(spec, settings, tid, fixes, self.stop, t0)
        except Exception as exc:  # a simulated car may fail; the demo goes on
            log.warning("simulated_car_failed", terminal=car.terminal_id, error=str(exc))

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def demo_cars(engine: Engine, limit: int) -> list[DemoCar]:
    with Session(engine) as db:
        rows = db.scalars(select(Terminal).where(Terminal.vehicle_id.is_not(None),
                                                 Terminal.active.is_(True))
                          .order_by(Terminal.id).limit(limit))
        return [DemoCar(t.id, t.protocol, t.phone) for t in rows]


def print_logins(settings: Settings, port: int) -> None:
    table = Table(title=f"gongche demo — http://127.0.0.1:{port}  (API docs: /docs)")
    table.add_column("user")
    table.add_column("password")
    table.add_column("role")
    for username, name, role, _dep in DEMO_USERS:
        table.add_row(username, DEMO_PASSWORD, f"{role} — {name}")
    console.print(table)
    console.print("Demo logins work in demo mode only. Stop with Ctrl-C.")


def run_demo(settings: Settings, port: int | None = None, terminals: int = 20) -> None:
    configure(settings.log_level, json=False)
    port = port or settings.port
    engine = make_engine(settings)
    migrate.upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as db:
        seed(db, demo_users=True)

    host, mqtt_port, _, _ = settings.mqtt_endpoint()
    broker = EmbeddedBroker(host, mqtt_port).start()
    client = redis_client(settings.redis_url)
    gateway = Gateway(settings, engine, client, mqtt_client_id="gongche-demo-gateway").start()
    processor = TelematicsProcessor(writing(engine), client, processor_config(settings))
    writer = StreamWriter(client, writing(engine), block_ms=200, on_stored=processor.on_stored)
    writer_thread = threading.Thread(target=writer.run, name="writer", daemon=True)
    writer_thread.start()
    threading.Thread(target=processor.run_ticks, args=(writer.stopped, 30.0),
                     name="telematics-ticks", daemon=True).start()
    simulation = Simulation(settings, demo_cars(engine, terminals), gateway.jt808_port)
    simulation.start()

    app = create_app(settings, engine=engine)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=port,
                                           log_level="warning"))
    print_logins(settings, port)
    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    try:
        server.run()
    finally:
        simulation.close()
        gateway.stop()
        writer.stop()
        writer_thread.join(5)
        broker.stop()
        engine.dispose()
