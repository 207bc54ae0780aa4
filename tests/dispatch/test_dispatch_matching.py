"""Trip matching end to end: a simulated car drives a booking (→ completed with mileage), an
unbooked night trip raises a private-use suspicion with evidence, a detour is a deviation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from dispatch.matching import EtcCharge, TripRecord, match_trips
from dispatch.models import Suspicion, TripMatch
from fleet.models import Vehicle
from simulators.city import City, build_city
from simulators.noise import NoiseConfig, observe
from simulators.tracks import Track, Visit, simulate_itinerary
from telematics.models import Position
from tests import factories as f
from tests.dispatch.conftest import Api, Org, tomorrow


@pytest.fixture(scope="module")
def city() -> City:
    return build_city()


def place(city: City, pid: str) -> dict[str, Any]:
    p = city.place(pid)
    return {"address": p.name, "lat": p.lat, "lon": p.lon}


def store(db: Session, track: Track, vehicle_id: int, seed: int = 1) -> None:
    fixes = observe(track, NoiseConfig(duplicate=0.0, reorder=0.0, seed=seed))
    seen: set[datetime] = set()
    rows = []
    for fx in fixes:
        if fx.time in seen:
            continue
        seen.add(fx.time)
        rows.append({"terminal_id": fx.terminal_id, "time": fx.time, "vehicle_id": vehicle_id,
                     "lat": fx.lat, "lon": fx.lon, "speed_kmh": fx.speed_kmh,
                     "course": fx.course, "altitude_m": fx.altitude_m, "hdop": fx.hdop,
                     "satellites": fx.satellites, "valid": fx.valid, "protocol": fx.protocol,
                     "alarm": fx.alarm, "status": fx.status, "extras": fx.extras,
                     "received_at": fx.time})
    db.execute(insert(Position), rows)
    db.commit()


@pytest.fixture
def car(db: Session, org: Org, city: City) -> Vehicle:
    garage = city.place("garage-central")
    v = f.vehicle(db, org.admin, org.bureau, home_garage={"lat": garage.lat, "lon": garage.lon})
    db.commit()
    return v


class FakeEtc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, datetime, datetime]] = []

    def charges(self, db: Session, vehicle_id: int, start: datetime, end: datetime
                ) -> list[EtcCharge]:
        self.calls.append((vehicle_id, start, end))
        return [EtcCharge(start + timedelta(minutes=5), "成都东站", "龙泉站", 1500)]


def test_booking_driven_by_simulated_car_completes_with_mileage(
        api: Api, org: Org, db: Session, city: City, car: Vehicle) -> None:
    b = api.assigned(org, vehicle=car, pickup=place(city, "admin-centre"),
                     destinations=[place(city, "district-south")],
                     start_at=tomorrow(10).isoformat(), end_at=tomorrow(12).isoformat())
    t0 = tomorrow(10) - timedelta(minutes=25)
    track = simulate_itinerary(city, [Visit("garage-central", 600), Visit("admin-centre", 600),
                                      Visit("district-south", 1800), Visit("admin-centre", 600),
                                      Visit("garage-central", 900)], t0, "SIM-E2E", seed=3,
                               rate_hz=0.5)
    store(db, track, car.id)
    r = api.post(org.dispatcher, f"/vehicles/{car.id}/match",
                 params={"from": (t0 - timedelta(hours=1)).isoformat(),
                         "to": (t0 + timedelta(hours=5)).isoformat()})
    assert r.status_code == 200, r.text
    matches = r.json()
    assert len(matches) == len(track.trips) == 4
    assert {m["booking_id"] for m in matches} == {b["id"]}
    assert {m["verdict"] for m in matches} == {"served"}, matches
    assert all(m["suspicion_id"] is None for m in matches)
    got = api.get(org.staff_a, f"/bookings/{b['id']}").json()
    assert got["status"] == "completed"
    assert got["started_at"][:19] == matches[0]["trip_start"][:19]
    # the booking was completed when the car brought them back to the pickup (trip 3)
    assert got["completed_at"][:19] == matches[2]["trip_end"][:19]
    truth = track.distance_m
    assert got["distance_m"] == pytest.approx(truth, rel=0.1), (got["distance_m"], truth)
    actions = [e["action"] for e in api.get(org.supervisor, f"/bookings/{b['id']}/history"
                                            ).json()]
    assert actions[-6:] == ["match_trip", "start", "match_trip", "match_trip", "complete",
                            "match_trip"]
    # matching again is idempotent
    api.post(org.dispatcher, f"/vehicles/{car.id}/match",
             params={"from": (t0 - timedelta(hours=1)).isoformat(),
                     "to": (t0 + timedelta(hours=5)).isoformat()})
    assert db.scalar(select(func.count()).select_from(TripMatch).where(
        TripMatch.vehicle_id == car.id)) == 4
    # statistics count the kilometres
    s = api.get(org.supervisor, "/stats", params={"from": tomorrow(0).isoformat(),
                                                  "to": tomorrow(0, days=2).isoformat()}).json()
    assert s["total"]["km"] == pytest.approx(truth / 1000, rel=0.1)


def test_unbooked_night_trip_raises_suspicion_with_evidence(
        api: Api, org: Org, db: Session, city: City, car: Vehicle) -> None:
    t0 = tomorrow(23)
    track = simulate_itinerary(city, [Visit("garage-central", 600), Visit("hotel-tianfu", 2400),
                                      Visit("garage-central", 600)], t0, "SIM-NIGHT", seed=5,
                               rate_hz=0.5)
    store(db, track, car.id, seed=2)
    from dispatch.matching import match_period

    etc = FakeEtc()
    results = match_period(db, car.id, t0 - timedelta(hours=1), t0 + timedelta(hours=3),
                           etc=etc)
    db.commit()
    assert [r.verdict for r in results] == ["unbooked", "unbooked"]
    assert len(etc.calls) == 2
    r = api.get(org.supervisor, "/suspicions", params={"vehicle_id": car.id})
    sus = r.json()
    assert len(sus) == 2 and {s["kind"] for s in sus} == {"no_booking"}
    s = sus[0]
    assert s["severity"] == "high" and s["booking_id"] is None and s["status"] == "open"
    ev = s["evidence"]
    assert ev["booking"] is None and ev["times"]["night"] is True
    assert " 23:" in ev["times"]["start_local"]  # Beijing time, not UTC
    assert ev["vehicle"]["plate"] == car.plate
    assert len(ev["track"]) > 20 and len(ev["track"][0]) == 3
    assert ev["etc"] == [{"time": ev["etc"][0]["time"], "entry": "成都东站", "exit": "龙泉站",
                          "amount_fen": 1500}]
    assert ev["places"]["start"]["nearest"] == "garage"
    hotel = city.place("hotel-tianfu")
    assert abs(ev["places"]["end"]["lat"] - hotel.lat) < 0.002
    assert "无单出车" in ev["reasons"][0]
    # scoped: department A's approver sees none of the bureau's car suspicions
    assert api.get(org.approver_a, "/suspicions").json() == []
    assert api.get(org.staff_a, "/suspicions").status_code == 403
    one = api.get(org.supervisor, f"/suspicions/{s['id']}").json()
    assert one["id"] == s["id"]
    assert api.post(org.supervisor, f"/suspicions/{s['id']}/resolve",
                    {"status": "cleared", "reason": "x"}).status_code == 403
    r = api.post(org.admin, f"/suspicions/{s['id']}/resolve",
                 {"status": "confirmed", "reason": "核实为私用"})
    assert r.json()["status"] == "confirmed"
    trail = api.get(org.supervisor, "/audit", params={"entity": "suspicion"}).json()
    assert [e["action"] for e in trail if e["entity_id"] == str(s["id"])] == ["raise",
                                                                              "resolve"]


def test_deviation_and_exempt_cars_from_trip_records(api: Api, org: Org, db: Session,
                                                     city: City, car: Vehicle) -> None:
    pickup, dest = city.place("admin-centre"), city.place("hotel-jinjiang")
    far = city.place("hotel-airport")
    b = api.assigned(org, vehicle=car, pickup=place(city, "admin-centre"),
                     destinations=[place(city, "hotel-jinjiang")])
    t = tomorrow(10, minute=5)
    trips = [
        TripRecord(t, t + timedelta(minutes=10), pickup.lat, pickup.lon, dest.lat, dest.lon,
                   3000.0, [(pickup.lat, pickup.lon, t), (dest.lat, dest.lon, t)]),
        # from the destination to the airport hotel: not a booked place
        TripRecord(t + timedelta(minutes=30), t + timedelta(minutes=50), dest.lat, dest.lon,
                   far.lat, far.lon, 9000.0, [], closed=True),
    ]
    results = match_trips(db, car.id, trips)
    db.commit()
    assert [r.verdict for r in results] == ["served", "deviation"]
    assert results[1].booking_id == b["id"] and "km from every booked place" in \
        results[1].reasons[0]
    s = db.get(Suspicion, results[1].suspicion_id)
    assert s is not None and s.kind == "route_deviation" and s.booking_id == b["id"]
    # the ledger is wired in (fleet.wiring): looked up, no tolls for this trip
    assert s.evidence["booking"]["id"] == b["id"] and s.evidence["etc"] == []
    assert api.get(org.staff_a, f"/bookings/{b['id']}").json()["status"] == "in_progress"
    # a track leaving the booked corridor is a deviation even when both ends are booked
    detour = [(pickup.lat, pickup.lon, t), (far.lat, far.lon, t), (dest.lat, dest.lon, t)]
    again = match_trips(db, car.id, [TripRecord(
        t + timedelta(hours=1), t + timedelta(hours=1, minutes=40), dest.lat, dest.lon,
        pickup.lat, pickup.lon, 25000.0, detour)])
    assert again[0].verdict == "deviation" and "leaves the booked route" in again[0].reasons[0]
    # duty cars (执法执勤) drive without bookings: no suspicion
    duty = f.vehicle(db, org.admin, org.enforce, category="law_enforcement")
    res = match_trips(db, duty.id, [TripRecord(t, t + timedelta(minutes=20), pickup.lat,
                                               pickup.lon, far.lat, far.lon, 9000.0)])
    assert res[0].verdict == "exempt" and res[0].suspicion_id is None
