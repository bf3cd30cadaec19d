"""Helpers for the sweep and remind tests: waiting, history rows, a sweep process's JSON logs."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, select

from examctl.db.schema import job_runs, reminders
from tests.factories import attempt_row
from tests.invoke import spawn_examctl


def wait_until(condition: Callable[[], Any], timeout_s: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not met within {timeout_s}s: {what or condition}"
        time.sleep(0.02)


def history(engine: Engine, job: str | None = None) -> list[dict[str, Any]]:
    query = select(job_runs).order_by(job_runs.c.id)
    if job:
        query = query.where(job_runs.c.job == job)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def reminder_states(engine: Engine, attempt_id: uuid.UUID) -> dict[int, str]:
    query = select(reminders.c.minutes_before, reminders.c.state).where(
        reminders.c.attempt_id == attempt_id
    )
    with engine.connect() as conn:
        return {m: s for m, s in conn.execute(query)}


def is_finished(engine: Engine, attempt: uuid.UUID) -> Callable[[], bool]:
    return lambda: attempt_row(engine, attempt)["status"] != "IN_PROGRESS"


def stop_process(
    process: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20
) -> tuple[int, str, str]:
    """Signal the process and collect its exit code, stdout and stderr."""
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=timeout_s)
    return process.returncode, stdout, stderr


def log_records(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines a subprocess wrote (subprocess_env asks for JSON logs)."""
    records = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def actions(stderr: str, action: str, job: str) -> list[dict[str, Any]]:
    return [r for r in log_records(stderr) if r.get("action") == action and r.get("job") == job]


def spawner() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Fixture body: spawn examctl processes, and kill any still running when the test ends.

    Use in a module as `spawn = pytest.fixture(spawner, name="spawn")`.
    """
    processes: list[subprocess.Popen[str]] = []

    def spawn(*args: str, **env: str) -> subprocess.Popen[str]:
        processes.append(spawn_examctl(*args, **env))
        return processes[-1]

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
