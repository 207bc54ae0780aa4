"""``gongche analyze FILE|-``: offline analysis (离线分析) of an NMEA log or JSON lines of fixes.

Prints one JSON object (``distance_km``, ``trips``, ``stops``, ``rejected``) computed by
:mod:`telematics.analyze`, with :mod:`gateway.nmea` as the parser and the gateway's
:class:`~gateway.filters.FilterChain` as the filter — the same steps live data goes through.

Register in ``fleet/cli.py``::

    from telematics.cli import analyze_command
    app.command("analyze")(analyze_command)
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from fleet.fix import Fix
from gateway.filters import FilterChain
from gateway.nmea import decode_nmea_lines
from telematics.analyze import analyze_text


def _parse_nmea(terminal_id: str) -> Any:
    def parse(text: str) -> tuple[list[Fix], Counter[str]]:
        fixes, errors = decode_nmea_lines(text.splitlines(), terminal_id)
        rejected: Counter[str] = Counter()
        for e in errors:
            rejected["checksum" if "checksum" in e.reason.lower() else "garbage"] += 1
        return fixes, rejected
    return parse


def analyze(text: str, terminal_id: str = "nmea") -> dict[str, Any]:
    """The analysis of a log's text (NMEA or JSON lines, auto-detected)."""
    chain = FilterChain()
    return analyze_text(text, filter_fn=chain.apply, parse_nmea=_parse_nmea(terminal_id),
                        terminal_id=terminal_id)


def analyze_command(
    path: Annotated[str, typer.Argument(help="NMEA log or JSON lines of fixes; '-' = stdin")],
    terminal: Annotated[str, typer.Option(help="terminal id for an NMEA log")] = "nmea",
) -> None:
    """Analyse a fix log offline: distance, trips, stops and rejected fixes as JSON."""
    if path == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            typer.echo(f"no such file: {path}", err=True)
            raise typer.Exit(2)
        text = p.read_text(encoding="utf-8", errors="replace")
    typer.echo(json.dumps(analyze(text, terminal), ensure_ascii=False))


app = typer.Typer(help="Telematics tools.", no_args_is_help=True)
app.command("analyze")(analyze_command)


@app.callback()
def _main() -> None:
    """Telematics tools (a group, so ``analyze`` stays a named sub-command)."""


if __name__ == "__main__":
    app()
