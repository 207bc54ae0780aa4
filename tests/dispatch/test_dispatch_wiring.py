"""Domains connected by the composition root: ledger ETC charges in dispatch's evidence,
dispatch's trip matches in the ledger's booked/unbooked kilometres."""

from __future__ import annotations

from datetime import UTC, timedelta

from sqlalchemy.orm import Session, sessionmaker

from dispatch.matching import match_period
from dispatch.models import Suspicion
from fleet.models import Vehicle
from fleet.wiring import wire_domains
from ledger import etc as ledger_etc
from ledger import mileage as ledger_mileage
from simulators.city import City
from simulators.tracks import Visit, simulate_itinerary
from tests.dispatch.conftest import Org, tomorrow
from tests.dispatch.test_dispatch_matching import car, city, store  # noqa: F401 (fixtures)

HEADER = "车牌号,ETC卡号,入口站,入口时间,出口站,出口时间,金额(元)\n"


def _local(t) -> str:  # type: ignore[no-untyped-def]
    return (t.astimezone(UTC) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")


def test_unbooked_trip_evidence_carries_the_ledgers_toll(
        db: Session, org: Org, city: City, car: Vehicle,  # noqa: F811 (fixtures)
        session_factory: sessionmaker[Session]) -> None:
    wire_domains(session_factory)
    t0 = tomorrow(22)
    track = simulate_itinerary(city, [Visit("garage-central", 600), Visit("hotel-airport", 1800),
                                      Visit("garage-central", 600)], t0, "SIM-ETC", seed=3,
                               rate_hz=0.5)
    store(db, track, car.id, seed=4)
    leg = track.trips[0]
    statement = HEADER + (f"{car.plate},C77,城东收费站,{_local(leg.start + timedelta(minutes=2))},"
                          f"机场收费站,{_local(leg.end - timedelta(minutes=2))},18.00\n")
    ledger_etc.import_statement(db, org.admin, "night.csv", statement.encode(), match=False)
    results = match_period(db, car.id, t0 - timedelta(hours=1), t0 + timedelta(hours=3))
    assert results and results[0].verdict == "unbooked"
    suspicion = db.get(Suspicion, results[0].suspicion_id)
    assert suspicion is not None
    tolls = suspicion.evidence["etc"]
    assert [(t["entry"], t["exit"], t["amount_fen"]) for t in tolls] == [
        ("城东收费站", "机场收费站", 1800)]
    db.commit()
    # and the ledger counts those kilometres as unbooked through dispatch's matches
    oracle = ledger_mileage.booking_oracle()
    trip = type("T", (), {"vehicle_id": car.id, "start": leg.start, "end": leg.end})()
    assert oracle(trip) is False


def test_disposed_car_can_no_longer_be_assigned(api, org: Org, db: Session) -> None:  # type: ignore[no-untyped-def]
    """The ledger's disposal by auction (拍卖处置) takes the car out of dispatch."""
    from datetime import date

    from ledger.lifecycle import dispose_by_auction

    booking = api.approved(org)
    dispose_by_auction(db, org.admin, org.van.id, proceeds_fen=3_500_000,
                       sold_on=date(2026, 11, 1), auction_ref="PM-2026-11")
    db.commit()
    r = api.post(org.dispatcher, f"/bookings/{booking['id']}/assign",
                 {"vehicle_id": org.van.id, "driver_id": org.driver.id})
    assert r.status_code == 409, r.text
    assert "disposed" in r.text
    ok = api.post(org.dispatcher, f"/bookings/{booking['id']}/assign",
                  {"vehicle_id": org.car.id, "driver_id": org.driver.id})
    assert ok.status_code == 200, ok.text
