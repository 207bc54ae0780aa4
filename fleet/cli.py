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
    """Serve the API (and console) with uvicorn."""
    import uvicorn

    from fleet.logging import configure

    settings = _settings()
    configure(settings.log_level)
    uvicorn.run("fleet.app:create_app", factory=True, host=host or settings.host,
                port=port or settings.port, workers=workers, log_level="info")


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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
