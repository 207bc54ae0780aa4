"""The hash chain: append-only in the database, tamper detection, no fork under concurrency."""

from __future__ import annotations

import threading
import uuid
from datetime import date

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from fleet.errors import Conflict
from ledger import chain, costs, service
from ledger.models import CostCategory, EntryKind, LedgerEntry
from tests import factories as f
from tests.ledger.conftest import Org


def _book_some(db: Session, org: Org, n: int = 4) -> list[LedgerEntry]:
    v = f.vehicle(db, org.admin, org.a)
    return [costs.record_cost(db, org.admin, v.id, CostCategory.fuel, 10_000 + i,
                              date(2024, 5, 1 + i)) for i in range(n)]


def test_entries_chain_and_verify(db: Session, org: Org) -> None:
    entries = _book_some(db, org)
    for prev, cur in zip(entries, entries[1:], strict=False):
        assert cur.prev_hash == prev.hash and cur.seq == prev.seq + 1
        assert len(cur.hash) == 64
    db.expire_all()
    result = chain.verify(db)
    assert result.ok, result.describe()
    assert result.checked >= 4


def test_database_refuses_update_and_delete(db: Session, org: Org) -> None:
    e = _book_some(db, org, 1)[0]
    for sql in (f"UPDATE ledger_entries SET amount_fen = 1 WHERE id = {e.id}",
                f"DELETE FROM ledger_entries WHERE id = {e.id}"):
        with pytest.raises(DBAPIError, match="append-only"), db.begin_nested():
            db.execute(text(sql))
    db.expire_all()
    assert db.get(LedgerEntry, e.id).amount_fen == 10_000  # type: ignore[union-attr]


def _bypass_trigger(db: Session) -> None:
    """What a superuser could do behind the application's back."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only"))
    else:
        db.execute(text("DROP TRIGGER ledger_entries_no_update"))
        db.execute(text("DROP TRIGGER ledger_entries_no_delete"))


def test_tampering_behind_the_back_is_caught(db: Session, org: Org) -> None:
    entries = _book_some(db, org, 5)
    victim = entries[2]
    _bypass_trigger(db)
    db.execute(text("UPDATE ledger_entries SET amount_fen = 1 WHERE id = :id"),
               {"id": victim.id})
    db.expire_all()
    result = chain.verify(db)
    assert not result.ok
    assert (result.broken_seq, result.broken_id) == (victim.seq, victim.id)
    assert "hash" in result.reason
    assert f"seq {victim.seq}" in result.describe()


def test_rewritten_hash_breaks_the_next_link(db: Session, org: Org) -> None:
    entries = _book_some(db, org, 4)
    victim = entries[1]
    _bypass_trigger(db)
    victim.amount_fen = 5
    db.flush()  # the ORM update (trigger bypassed) ...
    victim.hash = chain.entry_hash(victim)  # ... and a forger recomputes its hash
    db.flush()
    db.expire_all()
    result = chain.verify(db)
    assert not result.ok and result.broken_seq == victim.seq + 1
    assert "prev_hash" in result.reason


def test_deleted_entry_is_named(db: Session, org: Org) -> None:
    entries = _book_some(db, org, 4)
    victim_id, victim_seq = entries[1].id, entries[1].seq
    _bypass_trigger(db)
    db.execute(text("DELETE FROM ledger_entries WHERE id = :id"), {"id": victim_id})
    db.expire_all()
    result = chain.verify(db)
    assert not result.ok and result.broken_seq == victim_seq
    assert "missing" in result.reason


def test_corrections_are_compensating_entries(db: Session, org: Org) -> None:
    entry = _book_some(db, org, 1)[0]
    reversal, rebook = service.correct_entry(db, org.admin, entry.id, "wrong receipt",
                                             amount_fen=9_000)
    assert reversal.kind == EntryKind.correction and reversal.amount_fen == -10_000
    assert reversal.reverses_id == entry.id and rebook.amount_fen == 9_000
    sums = costs.ledger_sums(db, None, "2024-05", group_by_vehicle=True)
    assert sums[(entry.vehicle_id, "fuel")] == 9_000
    with pytest.raises(Conflict):
        service.correct_entry(db, org.admin, entry.id, "twice")
    assert chain.verify(db).ok


def test_concurrent_appends_do_not_fork(engine: Engine) -> None:
    name = f"t{uuid.uuid4().hex[:20]}"
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(tag: str) -> None:
        try:
            barrier.wait()
            for i in range(15):
                with factory() as s, s.begin():
                    chain.append(s, kind=EntryKind.genesis, occurred_on=date(2024, 1, 1),
                                 chain=name, reason=f"{tag}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as s:
        result = chain.verify(s, name)
        assert result.ok, result.describe()
        assert result.checked == 30
