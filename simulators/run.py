"""``gongche simulate``: cars driving a synthetic city, sending through the real protocols.

Each simulated terminal drives errands (simulators.tracks), its fixes pass through the
terminal model (simulators.noise: σ, drift, dropouts, duplicates, reordering, blind-area
resends), and go out as NMEA over MQTT or JT/T 808 over TCP. The ground truth — true track
distance, trips and stops, and every fix sent with its sequence number — goes to a JSON file
that tests and benchmarks compare against.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from fleet.fix import Fix
from fleet.settings import Settings
from gateway.jt808.messages import RESULT_FAIL
from simulators.city import City, build_city
from simulators.noise import NoiseConfig, fix_to_nmea, observe
from simulators.terminals import Jt808Terminal, MqttTerminal
from simulators.tracks import Track, simulate_itinerary, simulate_route

ERRANDS = ["admin-centre", "hotel-jinjiang", "hotel-tianfu", "district-east", "district-west",
           "district-south", "district-north", "district-hightech", "hotel-airport"]
GARAGES = ["garage-central", "garage-east", "garage-west"]


@dataclass
class SimulationSpec:
    terminals: int = 10
    protocol: str = "nmea"  # or "jt808"
    rate_hz: float = 1.0
    minutes: float = 10.0
    seed: int = 1
    speedup: float = 1.0  # 0 = as fast as the peer takes them
    sigma_m: float = 5.0
    dropout: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    blind_areas: int = 0
    bad_checksum: float = 0.0
    garbage: float = 0.0  # NMEA: share of payloads preceded by a garbage line
    route: dict[str, Any] | None = None  # a GeoJSON LineString (or Feature) to drive instead
    prefix: str = ""
    register: bool = True
    start: datetime | None = None
    password: Callable[[str], str | None] = field(default=lambda _tid: None, repr=False)

    def terminal_ids(self) -> list[str]:
        if self.protocol == "jt808":
            base = self.prefix or "1390000"
            return [f"{base}{i:04d}" for i in range(1, self.terminals + 1)]
        base = self.prefix or "SIM"
        return [f"{base}{i:04d}" for i in range(1, self.terminals + 1)]


def itinerary(rng: random.Random, minutes: float) -> list[tuple[str, float]]:
    """Errands from a garage until the day is long enough (dwell times in seconds)."""
    garage = rng.choice(GARAGES)
    visits: list[tuple[str, float]] = [(garage, rng.uniform(5, 60))]
    budget = minutes * 60
    spent = 0.0
    while spent < budget:
        place = rng.choice([p for p in ERRANDS if p != visits[-1][0]])
        dwell = rng.uniform(60, 600)
        visits.append((place, dwell))
        spent += dwell + 600  # a rough leg time: enough to stop adding errands
    visits.append((garage, budget))
    return visits


def plan_tracks(spec: SimulationSpec, city: City | None = None
                ) -> dict[str, tuple[Track, list[Fix]]]:
    """Ground-truth tracks and the fixes each terminal will send (cut to ``minutes``)."""
    city = city or build_city()
    start = spec.start or datetime.now(UTC).replace(microsecond=0)
    return {tid: plan_track(spec, city, tid, i, start)
            for i, tid in enumerate(spec.terminal_ids())}


def plan_track(spec: SimulationSpec, city: City, tid: str, index: int, start: datetime
               ) -> tuple[Track, list[Fix]]:
    """One terminal's ground-truth track from ``start`` and the fixes it will send."""
    end = start + timedelta(minutes=spec.minutes)
    rng = random.Random(spec.seed * 100_003 + index)
    if spec.route is not None:
        line = spec.route.get("geometry", spec.route)
        track = simulate_route(line, start, tid, seed=spec.seed + index, rate_hz=spec.rate_hz)
    else:
        track = simulate_itinerary(city, itinerary(rng, spec.minutes), start, tid,
                                   seed=spec.seed + index, rate_hz=spec.rate_hz)
    track.samples = [s for s in track.samples if s.time < end]
    track.trips = [t for t in track.trips if t.end <= end]
    track.stops = [s for s in track.stops if s.start < end]
    noise = NoiseConfig(sigma_m=spec.sigma_m, dropout=spec.dropout,
                        duplicate=spec.duplicate, reorder=spec.reorder,
                        blind_areas=spec.blind_areas, outlier=0.0, invalid=0.0,
                        protocol="jt808" if spec.protocol == "jt808" else "nmea-mqtt",
                        seed=spec.seed + index)
    return track, observe(track, noise)


def register_terminals(engine: Engine, spec: SimulationSpec) -> None:
    """Create a 'simulation' department with one car per simulated terminal (idempotent)."""
    from sqlalchemy.orm import sessionmaker

    from fleet.db import unit_of_work
    from fleet.models import (
        Department,
        EnergyType,
        Terminal,
        TerminalProtocol,
        Vehicle,
        VehicleCategory,
    )

    with unit_of_work(sessionmaker(bind=engine)) as db:
        dep = db.scalar(select(Department).where(Department.code == "simulation"))
        if dep is None:
            dep = Department(code="simulation", name="模拟车队")
            db.add(dep)
            db.flush()
        proto = TerminalProtocol.jt808 if spec.protocol == "jt808" else TerminalProtocol.nmea_mqtt
        for tid in spec.terminal_ids():
            term_id = f"J{tid}" if spec.protocol == "jt808" else tid
            if db.get(Terminal, term_id) is not None:
                continue
            plate, vin = _free_plate_and_vin(db, term_id)
            v = Vehicle(plate=plate, vin=vin, category=VehicleCategory.general, seats=5,
                        energy_type=EnergyType.electric, department_id=dep.id)
            db.add(v)
            db.flush()
            db.add(Terminal(id=term_id, protocol=proto, vehicle_id=v.id,
                            phone=tid if spec.protocol == "jt808" else None))
            db.flush()


def _free_plate_and_vin(db: Any, key: str) -> tuple[str, str]:
    """A deterministic plate (川Z…) and VIN for a simulated car, skipping ones in use."""
    from fleet.models import Vehicle

    n = zlib.crc32(key.encode()) % 100_000
    while True:
        plate, vin = f"川Z{n:05d}", f"SIMVN{n:012d}"
        taken = db.scalar(select(Vehicle.id).where((Vehicle.plate == plate) | (Vehicle.vin == vin)))
        if taken is None:
            return plate, vin
        n = (n + 1) % 100_000


def _corrupt(sentence: str) -> str:
    return sentence[:-2] + ("00" if sentence[-2:] != "00" else "FF")


class _Sender:
    """One terminal's connection and how it sends a fix (or a blind-area batch).

    A JT/T 808 terminal behaves like a real one: a location the platform did not
    acknowledge (connection lost, or 0x8001 with result 1, failure) is sent again on a new
    connection,
    after authenticating again with the code it was given at registration.
    MQTT terminals need no such loop: paho reconnects and resends its QoS 1 messages.
    """

    def __init__(self, spec: SimulationSpec, settings: Settings, tid: str, rng: random.Random,
                 stop: threading.Event | None = None, retry_s: float = 60.0) -> None:
        self.spec = spec
        self.rng = rng
        self.tid = tid
        self.stop = stop or threading.Event()
        self.retry_s = retry_s
        self.jt: Jt808Terminal | None = None
        self.mq: MqttTerminal | None = None
        self.auth_code: str | None = None
        if spec.protocol == "jt808":
            self.jt808_port = settings.jt808_port
            self.jt = self._connect()
        else:
            host, port, _, _ = settings.mqtt_endpoint()
            self.mq = MqttTerminal(tid, host, port, password=spec.password(tid))

    def _connect(self) -> Jt808Terminal:
        jt = Jt808Terminal(self.tid, "127.0.0.1", self.jt808_port)
        try:
            if self.auth_code is None:
                self.auth_code = jt.register()
            if jt.authenticate(self.auth_code) != 0:
                raise PermissionError(f"terminal {self.tid} could not authenticate")
        except BaseException:
            jt.close()
            raise
        return jt

    def send(self, fixes: Sequence[Fix]) -> None:
        if self.spec.protocol == "jt808":
            self._send_jt808(fixes)
            return
        assert self.mq is not None
        for fix in fixes:
            lines = fix_to_nmea(fix)
            if self.spec.bad_checksum and self.rng.random() < self.spec.bad_checksum:
                lines = [_corrupt(lines[0]), lines[1]]
            if self.spec.garbage and self.rng.random() < self.spec.garbage:
                lines = ["\x00\xff$GARBAGE,,,*ZZ", *lines]
            self.mq.send_raw("\r\n".join(lines) + "\r\n")

    def _send_jt808(self, fixes: Sequence[Fix]) -> None:
        give_up = time.monotonic() + self.retry_s
        while True:
            try:
                if self.jt is None:
                    self.jt = self._connect()
                if len(fixes) == 1 and not fixes[0].extras.get("batch"):
                    result = self.jt.send(fixes[0])
                else:
                    result = self.jt.send_batch(fixes, blind_area=True)
                if result != RESULT_FAIL:  # 0 ok; 2 and 3 (bad, unsupported) are final
                    return
            except (OSError, ConnectionError, PermissionError):
                pass
            if self.jt is not None:
                self.jt.close()
                self.jt = None
            if time.monotonic() > give_up or self.stop.wait(0.2):
                raise ConnectionError(f"terminal {self.tid}: location not acknowledged "
                                      f"within {self.retry_s:.0f} s")

    def close(self) -> None:
        if self.jt is not None:
            self.jt.close()
        if self.mq is not None:
            self.mq.close()


def _groups(fixes: Sequence[Fix]) -> list[list[Fix]]:
    """Arrival order, with consecutive blind-area fixes grouped into one batch upload."""
    out: list[list[Fix]] = []
    for fix in fixes:
        if fix.extras.get("batch") and out and out[-1][0].extras.get("batch") \
                and len(out[-1]) < 100:
            out[-1].append(fix)
        else:
            out.append([fix])
    return out


def drive(spec: SimulationSpec, settings: Settings, tid: str, fixes: Sequence[Fix],
          stop: threading.Event, t0: datetime) -> int:
    sender = _Sender(spec, settings, tid, random.Random(spec.seed), stop)
    sent = 0
    wall0 = time.monotonic()
    try:
        for group in _groups(fixes):
            if spec.speedup > 0:
                due = (group[-1].time - t0).total_seconds() / spec.speedup
                wait = due - (time.monotonic() - wall0)
                if wait > 0 and stop.wait(wait):
                    break
            if stop.is_set():
                break
            sender.send(group)
            sent += len(group)
    finally:
        sender.close()
    return sent


def run_simulation(settings: Settings, spec: SimulationSpec, truth_path: str | None,
                   engine: Engine | None = None) -> dict[str, Any]:
    """Simulate, send, write the ground truth; returns a summary."""
    if spec.register:
        from fleet.db import make_engine

        register_terminals(engine or make_engine(settings), spec)
    plans = plan_tracks(spec)
    start = min(track.samples[0].time for track, _ in plans.values())
    stop = threading.Event()
    counts: dict[str, int] = {}
    threads = [threading.Thread(target=lambda t=tid, f=fx: counts.__setitem__(
        t, drive(spec, settings, t, f, stop, start)), daemon=True)
        for tid, (_, fx) in plans.items()]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        stop.set()
    truth = ground_truth(plans, spec)
    if truth_path:
        with open(truth_path, "w", encoding="utf-8") as fh:
            json.dump(truth, fh, ensure_ascii=False, default=str)
    return {"terminals": len(plans), "fixes_sent": sum(counts.values()),
            "true_distance_km": round(sum(t["distance_m"] for t in truth["terminals"].values())
                                      / 1000, 3), "truth": truth_path}


def ground_truth(plans: dict[str, tuple[Track, list[Fix]]], spec: SimulationSpec
                 ) -> dict[str, Any]:
    terminals = {}
    for tid, (track, fixes) in plans.items():
        terminals[tid] = {
            "distance_m": track.distance_m,
            "trips": [asdict(t) for t in track.trips],
            "stops": [asdict(s) for s in track.stops],
            "sent": [{"seq": f.extras.get("seq"), "time": f.time.isoformat(), "lat": f.lat,
                      "lon": f.lon, "batch": bool(f.extras.get("batch"))} for f in fixes],
        }
    spec_dict = {k: v for k, v in asdict(spec).items() if k not in ("password", "route")}
    return {"spec": spec_dict, "terminals": terminals}
