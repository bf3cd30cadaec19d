"""Run the examctl command line in-process, as a user would, and capture what it printed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

from examctl.cli import main


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def error_line(self) -> str:
        """The one `examctl: error: …` line (logs are JSON lines on a non-terminal)."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("examctl: error:")]
        assert len(lines) == 1, self.stderr
        return lines[0]


def invoke(*args: str, env: dict[str, str] | None = None) -> CliResult:
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env or {}),
        mock.patch.object(sys, "argv", ["examctl", *args]),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return CliResult(code, stdout.getvalue(), stderr.getvalue())


REPO_ROOT = Path(__file__).resolve().parent.parent


def examctl_command(*args: str) -> list[str]:
    """argv for examctl as a separate process, running this checkout's code."""
    return [sys.executable, "-m", "examctl", *args]


def subprocess_env(**overrides: str) -> dict[str, str]:
    """The environment for an examctl subprocess: this checkout first on the path, JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("EXAMCTL_LOG_FORMAT", "json")
    env.update(overrides)
    return env


def run_examctl(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run examctl to completion in a subprocess and capture its output."""
    return subprocess.run(
        examctl_command(*args),
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def spawn_examctl(*args: str, **env: str) -> subprocess.Popen[str]:
    """Start examctl in a subprocess (to race, signal or kill it); output is captured."""
    return subprocess.Popen(
        examctl_command(*args),
        env=subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
