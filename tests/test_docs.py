"""Docs: every command's help has a summary and an `Example:` line, and every command, job and
exit code is in docs/operations.md (the operator's guide and runbook)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.deploy.deployfiles import (
    REPO,
    SERVICES,
    SPEC_PERIODS,
    all_command_paths,
    scheduled_commands,
)
from tests.invoke import invoke

OPERATIONS = REPO / "docs" / "operations.md"
COMMANDS = dict(all_command_paths())
# Jobs whose non-zero exits an operator meets: every scheduled one (from the CLI and SPEC §1,
# so the runbook is complete before and after the branches of every job are merged) and restore.
RUNBOOK_JOBS = sorted(scheduled_commands() | set(SPEC_PERIODS) | SERVICES | {"restore"})


def _name(path: tuple[str, ...]) -> str:
    return " ".join(("examctl", *path))


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_docs__every_command__help_has_a_summary_and_an_example(path: tuple[str, ...]) -> None:
    lines = [line.strip() for line in (COMMANDS[path].help or "").splitlines() if line.strip()]
    examples = [line for line in lines if line.startswith("Example:")]

    assert lines and not lines[0].startswith("Example:"), f"{_name(path)}: no summary line"
    assert len(examples) == 1, f"{_name(path)}: expected one `Example:` line"
    assert examples[0].removeprefix("Example:").strip().startswith(_name(path))

    shown = invoke(*path, "--help")
    assert shown.exit_code == 0
    assert " ".join(examples[0].split()) in " ".join(shown.stdout.split()), "not in --help"


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_docs__every_command__in_the_operations_guide(path: tuple[str, ...]) -> None:
    assert f"`{_name(path)}" in OPERATIONS.read_text()


def _runbook_sections() -> dict[str, str]:
    text = OPERATIONS.read_text()
    runbook = text[text.index("## Runbook") :]
    runbook = runbook[: runbook.index("\n## ", 1)]
    sections = re.split(r"^### ", runbook, flags=re.MULTILINE)[1:]
    return {section.split("\n", 1)[0].strip(): section for section in sections}


@pytest.mark.parametrize("job", RUNBOOK_JOBS)
def test_docs__runbook__every_job_has_exits_1_2_and_3(job: str) -> None:
    section = _runbook_sections().get(job)

    assert section is not None, f"docs/operations.md: no `### {job}` in the runbook"
    for code in (1, 2, 3):
        assert f"**exit {code}" in section, f"runbook {job}: exit {code} not covered"


def test_docs__operations_guide__alerts_on_the_metrics_the_runner_writes() -> None:
    from examctl import metrics

    written = set(re.findall(r'"(examctl_[a-z_]+)"', Path(metrics.__file__).read_text()))
    text = OPERATIONS.read_text()

    assert "examctl_last_success_timestamp_seconds" in written
    assert written <= set(re.findall(r"examctl_[a-z_]+", text))
    assert "26 * 3600" in text and "> 600" in text
