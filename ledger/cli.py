"""``gongche ledger …`` commands (typer): verify the chain, import ETC statements, write the
monthly 三公经费 report, close a month. Register with
``app.add_typer(ledger_app, name="ledger")`` in ``fleet/cli.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

ledger_app = typer.Typer(help="Ledger (台账): hash chain, ETC tolls, costs and reports.",
                         no_args_is_help=True)
console = Console(stderr=True)


def _factory():  # type: ignore[no-untyped-def]
    from fleet.db import make_engine, make_sessionmaker
    from fleet.settings import get_settings

    try:
        settings = get_settings()
    except ValueError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    return make_sessionmaker(make_engine(settings))


def _actor(db, username: str | None):  # type: ignore[no-untyped-def]
    if username is None:
        return None
    from fleet import service as fleet_service

    user = fleet_service.user_by_name(db, username)
    if user is None or not user.active:
        console.print(f"[red]unknown user {username}[/red]")
        raise typer.Exit(2)
    return user


@ledger_app.command()
def verify(chain: Annotated[str | None, typer.Option(help="one chain (default: all)")] = None
           ) -> None:
    """Walk the hash chain and name the first broken entry (exit 1 when broken)."""
    from fleet.db import unit_of_work
    from ledger import chain as ch

    with unit_of_work(_factory()) as db:
        results = [ch.verify(db, chain)] if chain else ch.verify_all(db)
    for r in results:
        console.print(("[green]OK[/green] " if r.ok else "[red]BROKEN[/red] ") + r.describe())
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@ledger_app.command("import-etc")
def import_etc(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    user: Annotated[str | None, typer.Option("--user", help="acting admin (audit trail)")]
    = None,
    match: Annotated[bool, typer.Option(help="match charges to trips")] = True,
) -> None:
    """Import an ETC toll statement (CSV or .xlsx): every row or none."""
    from fleet.db import unit_of_work
    from fleet.errors import DomainError
    from ledger import etc

    try:
        with unit_of_work(_factory()) as db:
            r = etc.import_statement(db, _actor(db, user), file.name, file.read_bytes(),
                                     match=match)
    except DomainError as exc:
        console.print(f"[red]not imported:[/red] {exc.message}")
        for e in exc.detail.get("errors", []):
            console.print(f"  line {e['line']}: {e['field']}: {e['reason']}")
        raise typer.Exit(1) from exc
    console.print(f"imported {r.rows} charges, {r.total_fen / 100:.2f} 元: matched {r.matched}, "
                  f"unbooked {r.unbooked}, unmatched {r.unmatched}")


@ledger_app.command()
def report(
    file: Annotated[Path, typer.Argument(dir_okay=False)],
    month: Annotated[str, typer.Option("--month", help="YYYY-MM")],
) -> None:
    """Write the monthly 三公经费 report (公务用车购置及运行维护费) as Excel."""
    from fleet.db import unit_of_work
    from fleet.errors import DomainError
    from ledger import reports

    try:
        with unit_of_work(_factory()) as db:
            data = reports.sangong_data(db, None, month)
    except DomainError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
    reports.write_workbook(data, file)
    console.print(f"wrote {file}: {len(data.rows)} departments, total "
                  f"{data.total() / 100:.2f} 元")


@ledger_app.command("close-month")
def close_month(
    vehicle_id: int,
    month: Annotated[str, typer.Option("--month", help="YYYY-MM")],
    user: Annotated[str | None, typer.Option("--user")] = None,
) -> None:
    """Close a vehicle's month (月结) with its mileage and costs."""
    from fleet.db import unit_of_work
    from fleet.errors import DomainError
    from ledger import mileage

    try:
        with unit_of_work(_factory()) as db:
            e = mileage.close_month(db, _actor(db, user), vehicle_id, month)
            console.print(f"closed {month} for vehicle {vehicle_id}: entry {e.seq}, "
                          f"{e.distance_m / 1000:.1f} km")
    except DomainError as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(1) from exc
