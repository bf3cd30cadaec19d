"""Run the examctl command line in-process, as a user would, and capture what it printed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
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
