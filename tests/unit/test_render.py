"""The human summary of a run: text from users and the database is shown, never read as markup."""

from __future__ import annotations

import pytest

from examctl.render import render_report
from examctl.runner import JobReport


def test_render_report__note_and_counts_with_brackets__printed_literally(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    report = JobReport(
        job="remind",
        status="ok",
        dry_run=False,
        counts={"sent": 1, "last_error": "[/x] [parameters: {}]"},
        duration_s=0.1,
        notes=("notify: https://hooks.example/[/team]/[bold]",),
    )

    render_report(report, as_json=False)

    out = capsys.readouterr().out
    assert "note: notify: https://hooks.example/[/team]/[bold]" in out
    assert "[/x] [parameters: {}]" in out
    assert out.startswith("remind: ok in 0.10s")
