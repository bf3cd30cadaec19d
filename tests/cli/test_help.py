"""`--help` is instant: it imports no database driver, Redis client or boto3 (issue 3, part 7)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from examctl.cli import app
from tests.invoke import subprocess_env

HEAVY = ("sqlalchemy", "psycopg", "redis", "boto3", "botocore")


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        paths += [[name, sub] for sub in getattr(command, "commands", {})]
    return paths


def _imported_modules(*args: str) -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "examctl", *args, "--help"],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = [line for line in completed.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "examctl")
def test_help__every_command__imports_no_driver(path: list[str]) -> None:
    modules = _imported_modules(*path)

    assert "typer" in modules  # the measurement itself works
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
