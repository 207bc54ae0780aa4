"""ETC toll statements (ETC 通行费): import CSV/Excel, match each charge to a trip, anomalies.

Import is all-or-nothing: every row is validated first and malformed rows are reported with
their line numbers; only a clean file books anything (one toll cost entry per charge).

Matching: a charge is explained by a trip of the same vehicle whose time span overlaps
[entry, exit] within ``tolerance``; when both stations have coordinates and the trip has a
path, the path must also pass within ``station_radius_m`` of both stations. A charge on a trip
that was not booked, or on no trip at all, is an anomaly for supervisors.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.errors import Conflict, Invalid
from fleet.models import User, Vehicle
from ledger import service
from ledger.mileage import (
    BookedPredicate,
    TripRecord,
    TripsProvider,
    booking_oracle,
    distance_to_path_m,
    month_window,
    trips_from_positions,
)
from ledger.models import (
    CostCategory,
    EntryKind,
    EtcCharge,
    EtcImport,
    EtcStation,
    MatchStatus,
)
from telematics.mileage import CST

#: Accepted column headings (English or the statement's Chinese) → field.
HEADERS = {
    "plate": "plate", "车牌号": "plate", "车牌": "plate",
    "card": "card_no", "card_no": "card_no", "etc卡号": "card_no", "卡号": "card_no",
    "entry_station": "entry_station", "入口站": "entry_station", "入口收费站": "entry_station",
    "entry_time": "entry_time", "入口时间": "entry_time",
    "exit_station": "exit_station", "出口站": "exit_station", "出口收费站": "exit_station",
    "exit_time": "exit_time", "出口时间": "exit_time",
    "amount": "amount", "金额": "amount", "金额(元)": "amount", "金额（元）": "amount",
    "通行费": "amount",
}
REQUIRED = ("plate", "card_no", "entry_station", "entry_time", "exit_station", "exit_time",
            "amount")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    reason: str


@dataclass(slots=True)
class ParsedCharge:
    line: int
    plate: str
    card_no: str
    entry_station: str
    entry_time: datetime
    exit_station: str
    exit_time: datetime
    amount_fen: int
    vehicle_id: int = 0


def _rows_csv(content: bytes) -> list[tuple[int, list[Any]]]:
    text = content.decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    return [(reader.line_num, row) for row in reader]


def _rows_xlsx(content: bytes) -> list[tuple[int, list[Any]]]:
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    ws = wb.worksheets[0]
    out = [(i, list(row)) for i, row in enumerate(ws.iter_rows(values_only=True), start=1)]
    wb.close()
    return out


def _time(value: Any) -> datetime:
    """Statement times are Beijing time unless they carry an offset."""
    if isinstance(value, datetime):
        t = value
    else:
        s = str(value).strip().replace("/", "-")
        if not s:
            raise ValueError("empty")
        t = datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=CST)
    return t.astimezone(UTC)


def _amount_fen(value: Any) -> int:
    """Yuan with at most two decimals (元) → fen."""
    try:
        d = Decimal(str(value).strip().replace(",", "").replace("¥", ""))
    except InvalidOperation as exc:
        raise ValueError("not a number") from exc
    if d.is_nan() or d <= 0:
        raise ValueError("must be a positive amount in yuan")
    fen = d * 100
    if fen != fen.to_integral_value():
        raise ValueError("more than two decimals")
    return int(fen)


def parse_statement(filename: str, content: bytes) -> tuple[list[ParsedCharge], list[RowError]]:
    """Parse a toll statement (CSV or .xlsx); returns charges and per-line errors."""
    try:
        rows = _rows_xlsx(content) if filename.lower().endswith((".xlsx", ".xlsm")) \
            else _rows_csv(content)
    except Exception as exc:  # a broken file is one error at line 0
        return [], [RowError(0, "file", f"cannot read {filename}: {exc}")]
    rows = [(n, r) for n, r in rows if any(c is not None and str(c).strip() for c in r)]
    if not rows:
        return [], [RowError(0, "file", "empty statement")]
    header_line, header = rows[0]
    columns: dict[str, int] = {}
    for i, h in enumerate(header):
        key = HEADERS.get(str(h or "").strip().lower().replace(" ", ""))
        if key:
            columns[key] = i
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        return [], [RowError(header_line, "header", f"missing columns: {', '.join(missing)}")]
    charges: list[ParsedCharge] = []
    errors: list[RowError] = []
    for line, row in rows[1:]:
        cell = {k: (row[i] if i < len(row) else None) for k, i in columns.items()}
        row_errors: list[RowError] = []
        for k in REQUIRED:
            if cell[k] is None or not str(cell[k]).strip():
                row_errors.append(RowError(line, k, "missing"))
        if row_errors:
            errors.extend(row_errors)
            continue
        parsed: dict[str, Any] = {}
        for k, fn in (("entry_time", _time), ("exit_time", _time), ("amount", _amount_fen)):
            try:
                parsed[k] = fn(cell[k])
            except (ValueError, TypeError) as exc:
                row_errors.append(RowError(line, k, f"{cell[k]!r}: {exc}"))
        if not row_errors and parsed["exit_time"] < parsed["entry_time"]:
            row_errors.append(RowError(line, "exit_time", "exit before entry"))
        if row_errors:
            errors.extend(row_errors)
            continue
        plate = str(cell["plate"]).strip().upper().replace(" ", "").replace("·", "")
        charges.append(ParsedCharge(line, plate, str(cell["card_no"]).strip(),
                                    str(cell["entry_station"]).strip(), parsed["entry_time"],
                                    str(cell["exit_station"]).strip(), parsed["exit_time"],
                                    parsed["amount"]))
    return charges, errors


@dataclass(slots=True)
class ImportResult:
    import_id: int
    rows: int
    total_fen: int
    matched: int
    unbooked: int
    unmatched: int


def import_statement(db: Session, actor: User | None, filename: str, content: bytes, *,
                     match: bool = True, is_booked: BookedPredicate | None = None,
                     trips_provider: TripsProvider | None = None) -> ImportResult:
    """Import a statement: all rows or none; raises Invalid listing every bad line."""
    service.require_writer(actor, "import ETC statements")
    digest = hashlib.sha256(content).hexdigest()
    if db.scalar(select(EtcImport.id).where(EtcImport.sha256 == digest)):
        raise Conflict(f"statement {filename} was already imported")
    charges, errors = parse_statement(filename, content)
    plates = {v.plate: v for v in db.scalars(select(Vehicle).where(
        Vehicle.plate.in_({c.plate for c in charges})))}
    seen: set[tuple[str, datetime]] = set()
    for c in charges:
        v = plates.get(c.plate)
        if v is None:
            errors.append(RowError(c.line, "plate", f"unknown plate {c.plate}"))
            continue
        c.vehicle_id = v.id
        key = (c.card_no, c.exit_time)
        dup = db.scalar(select(EtcCharge.id).where(EtcCharge.card_no == c.card_no,
                                                   EtcCharge.exit_time == c.exit_time))
        if key in seen or dup:
            errors.append(RowError(c.line, "exit_time", "duplicate charge (card, exit time)"))
        seen.add(key)
        day = c.exit_time.astimezone(CST).date()
        if service.is_closed(db, v.id, f"{day.year:04d}-{day.month:02d}"):
            errors.append(RowError(c.line, "exit_time", f"month of {day} is closed for {c.plate}"))
    if errors:
        errors.sort(key=lambda e: e.line)
        lines = sorted({e.line for e in errors})
        raise Invalid(f"{len(lines)} malformed row(s) in {filename}: nothing imported",
                      field="file",
                      errors=[{"line": e.line, "field": e.field, "reason": e.reason}
                              for e in errors])
    with db.begin_nested():  # a failure half-way leaves nothing behind
        imp = EtcImport(filename=filename[:255], sha256=digest,
                        actor_id=service.actor_id(actor), rows=len(charges),
                        total_fen=sum(c.amount_fen for c in charges))
        db.add(imp)
        db.flush()
        rows = []
        for c in charges:
            entry = service.book(
                db, actor, kind=EntryKind.cost, occurred_on=c.exit_time.astimezone(CST).date(),
                vehicle_id=c.vehicle_id, category=CostCategory.toll, amount_fen=c.amount_fen,
                reason=f"ETC {c.entry_station}→{c.exit_station}",
                payload={"source": "etc", "import": filename, "line": c.line,
                         "card_no": c.card_no, "entry_station": c.entry_station,
                         "exit_station": c.exit_station,
                         "entry_time": c.entry_time.isoformat(),
                         "exit_time": c.exit_time.isoformat()})
            row = EtcCharge(import_id=imp.id, line_no=c.line, plate=c.plate, card_no=c.card_no,
                            vehicle_id=c.vehicle_id, entry_station=c.entry_station,
                            entry_time=c.entry_time, exit_station=c.exit_station,
                            exit_time=c.exit_time, amount_fen=c.amount_fen,
                            ledger_entry_id=entry.id, match_status=MatchStatus.pending)
            db.add(row)
            rows.append(row)
        db.flush()
    counts = {s: 0 for s in MatchStatus}
    if match:
        for row in match_charges(db, rows, is_booked=is_booked, trips_provider=trips_provider):
            counts[row.match_status] += 1
    return ImportResult(imp.id, len(rows), imp.total_fen, counts[MatchStatus.matched],
                        counts[MatchStatus.unbooked], counts[MatchStatus.unmatched])


# --------------------------------------------------------------------------- matching


def set_station(db: Session, actor: User | None, name: str, lat: float | None,
                lon: float | None) -> EtcStation:
    service.require_writer(actor, "edit toll stations")
    st = db.get(EtcStation, name)
    if st is None:
        st = EtcStation(name=name)
        db.add(st)
    st.lat, st.lon = lat, lon
    db.flush()
    return st


def _overlap_s(a0: datetime, a1: datetime, b0: datetime, b1: datetime) -> float:
    return (min(a1, b1) - max(a0, b0)).total_seconds()


def match_one(charge: EtcCharge, trips: Sequence[TripRecord], is_booked: BookedPredicate,
              stations: dict[str, EtcStation], tolerance: timedelta = timedelta(minutes=15),
              station_radius_m: float = 2000.0) -> tuple[MatchStatus, TripRecord | None, str]:
    """Find the trip that explains a charge: (status, trip, note)."""
    lo, hi = charge.entry_time - tolerance, charge.exit_time + tolerance
    cands = [t for t in trips if t.vehicle_id == charge.vehicle_id
             and _overlap_s(t.start, t.end, lo, hi) > 0]
    if not cands:
        return MatchStatus.unmatched, None, "no trip of this vehicle at that time"
    a, b = stations.get(charge.entry_station), stations.get(charge.exit_station)
    have_coords = (a is not None and b is not None and None not in (a.lat, a.lon, b.lat, b.lon))
    if have_coords:
        assert a is not None and b is not None
        on_route = []
        for t in cands:
            path = getattr(t, "path", ())
            if not path:
                on_route.append(t)  # no geometry: time overlap only
                continue
            da = distance_to_path_m(a.lat, a.lon, path)  # type: ignore[arg-type]
            db_ = distance_to_path_m(b.lat, b.lon, path)  # type: ignore[arg-type]
            if da <= station_radius_m and db_ <= station_radius_m:
                on_route.append(t)
        if not on_route:
            return (MatchStatus.unmatched, None,
                    "trips at that time do not pass the entry and exit stations")
        cands = on_route
    best = max(cands, key=lambda t: _overlap_s(t.start, t.end, lo, hi))
    how = "route and time" if have_coords else "time overlap"
    if is_booked(best):
        return MatchStatus.matched, best, f"matched by {how}"
    return MatchStatus.unbooked, best, f"matched by {how} to a trip without booking"


def match_charges(db: Session, charges: Sequence[EtcCharge], *,
                  is_booked: BookedPredicate | None = None,
                  trips_provider: TripsProvider | None = None,
                  tolerance: timedelta = timedelta(minutes=15)) -> list[EtcCharge]:
    """Match charges to trips (from ``trips_provider``, default: stored positions)."""
    provider = trips_provider or trips_from_positions
    predicate = is_booked or booking_oracle()
    stations = {s.name: s for s in db.scalars(select(EtcStation))}
    by_vehicle: dict[int, list[EtcCharge]] = {}
    for c in charges:
        by_vehicle.setdefault(c.vehicle_id, []).append(c)
    for vid, cs in by_vehicle.items():
        start = min(c.entry_time for c in cs) - timedelta(hours=3)
        end = max(c.exit_time for c in cs) + timedelta(hours=3)
        trips = list(provider(db, vid, start, end))
        for c in cs:
            status, trip, note = match_one(c, trips, predicate, stations, tolerance)
            c.match_status = status
            c.trip_start = trip.start if trip else None
            c.trip_end = trip.end if trip else None
            c.match_note = note
    db.flush()
    return list(charges)


def rematch(db: Session, actor: User | None, period: str,
            is_booked: BookedPredicate | None = None,
            trips_provider: TripsProvider | None = None) -> list[EtcCharge]:
    """Match again (e.g. once bookings or trips are complete) the charges of a month."""
    service.require_writer(actor, "match ETC charges")
    start, end = month_window(period)
    charges = list(db.scalars(select(EtcCharge).where(EtcCharge.exit_time >= start,
                                                      EtcCharge.exit_time < end)))
    return match_charges(db, charges, is_booked=is_booked, trips_provider=trips_provider)


def list_charges(db: Session, actor: User | None, period: str | None = None,
                 vehicle_id: int | None = None, anomalies_only: bool = False
                 ) -> list[EtcCharge]:
    """Charges in scope; ``anomalies_only``: unmatched and unbooked (异常通行费)."""
    stmt = service.scoped(db, actor, select(EtcCharge).join(
        Vehicle, Vehicle.id == EtcCharge.vehicle_id), Vehicle.department_id)
    if period:
        start, end = month_window(period)
        stmt = stmt.where(EtcCharge.exit_time >= start, EtcCharge.exit_time < end)
    if vehicle_id:
        stmt = stmt.where(EtcCharge.vehicle_id == vehicle_id)
    if anomalies_only:
        stmt = stmt.where(EtcCharge.match_status.in_([MatchStatus.unmatched,
                                                       MatchStatus.unbooked]))
    return list(db.scalars(stmt.order_by(EtcCharge.exit_time, EtcCharge.id)))


@dataclass(frozen=True, slots=True)
class EtcEvidence:
    """One toll charge as evidence (for dispatch's private-use evidence bundle)."""

    charge_id: int
    vehicle_id: int
    plate: str
    card_no: str
    entry_station: str
    entry_time: datetime
    exit_station: str
    exit_time: datetime
    amount_fen: int
    match_status: str
    match_note: str
    ledger_entry_id: int | None


def etc_charges_for(db: Session, vehicle_id: int, start: datetime, end: datetime
                    ) -> list[EtcEvidence]:
    """Toll charges of a vehicle whose passage overlaps [start, end) (no scope check:
    the caller — dispatch's evidence bundle — has already checked the vehicle)."""
    stmt = (select(EtcCharge).where(EtcCharge.vehicle_id == vehicle_id,
                                    EtcCharge.entry_time < end, EtcCharge.exit_time >= start)
            .order_by(EtcCharge.entry_time))
    return [EtcEvidence(c.id, c.vehicle_id, c.plate, c.card_no, c.entry_station, c.entry_time,
                        c.exit_station, c.exit_time, c.amount_fen, str(c.match_status),
                        c.match_note, c.ledger_entry_id) for c in db.scalars(stmt)]
