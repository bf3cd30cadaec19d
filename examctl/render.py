"""Results on stdout: one JSON object for scripts, or a short Rich summary for people."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from examctl.runner import JobReport

_STATUS_STYLE = {"ok": "green", "failed": "bold red", "skipped": "yellow", "running": "cyan"}


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, default=str) + "\n")
    sys.stdout.flush()


def render_report(report: JobReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report.as_json())
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    title = f"[bold]{escape(report.job)}[/]: {_styled_status(report.status)}"
    if report.dry_run:
        title += " [dim](dry run: nothing changed)[/]"
    console.print(f"{title} in {report.duration_s:.2f}s")
    if report.counts:
        table = Table(show_header=False, box=None, padding=(0, 2))
        for name, value in report.counts.items():
            shown = f"{value:,}" if isinstance(value, int) else str(value)
            table.add_row(escape(name.replace("_", " ")), escape(shown))
        console.print(table)
    for note in report.notes:
        console.print(f"[dim]note:[/] {escape(note)}")


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, title: str) -> None:
    """A plain Rich table of dict rows, for `history` and friends. Cells are database text
    (errors quote paths and `[parameters: …]`), so they are escaped, never read as markup."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left")
    for column in columns:
        table.add_column(escape(column.replace("_", " ")))
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            text = "" if value is None else str(value)
            cells.append(_styled_status(text) if column == "status" else escape(text))
        table.add_row(*cells)
    Console().print(table)


def _styled_status(status: str) -> str:
    """`status` as markup: coloured when it is one examctl writes, escaped whatever it is."""
    from rich.markup import escape

    style = _STATUS_STYLE.get(status)
    return f"[{style}]{escape(status)}[/]" if style else escape(status)
