"""`examctl sweep` as a process: signals, a hanging webhook, two sweeps on one database."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from tests.acceptance.test_finish_concurrency import _audit, _install_audit
from tests.factories import attempt_row, make_attempt, make_exam, now_of, put_session
from tests.sweeping import (
    history,
    is_finished,
    log_records,
    reminder_states,
    spawner,
    stop_process,
    wait_until,
)
from tests.webhooks import WebhookServer

spawn = pytest.fixture(spawner, name="spawn")
Spawn = Callable[..., subprocess.Popen[str]]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sweep__signal_while_asleep__exit_0_and_one_history_row(
    pg_url: str, pg_engine: Engine, tmp_path: Path, sig: signal.Signals, spawn: Spawn
) -> None:
    health = tmp_path / "sweep.health"
    sweep = spawn("sweep", "--interval", "30", "--health-file", str(health), DATABASE_URL=pg_url)
    wait_until(health.exists, timeout_s=30, what="first round")
    time.sleep(0.3)  # both loops asleep now, for up to 30 s

    stopping = time.monotonic()
    code, _, stderr = stop_process(sweep, sig)

    assert code == 0, stderr
    assert time.monotonic() - stopping < 5
    rows = history(pg_engine)
    assert [(r["job"], r["status"]) for r in rows] == [("sweep", "ok")]  # idle rounds: no rows
    assert rows[0]["counts"]["rounds"] >= 2 and rows[0]["finished_at"] is not None


def test_sweep__webhook_hangs__finishing_on_time_and_sigterm_waits_for_the_delivery(
    pg_url: str, pg_engine: Engine, tmp_path: Path, spawn: Spawn
) -> None:
    health = tmp_path / "sweep.health"
    with WebhookServer(hang=True) as hanging:
        sweep = spawn(
            "sweep",
            "--interval",
            "1",  # the attempts below are created while it sleeps: found within the interval
            "--notify",
            hanging.url,
            "--webhook-timeout",
            "3",
            "--health-file",
            str(health),
            DATABASE_URL=pg_url,
        )
        wait_until(health.exists, timeout_s=30, what="first round")
        exam = make_exam(pg_engine)
        now = now_of(pg_engine)
        reminded = make_attempt(pg_engine, exam, deadline_at=now + timedelta(minutes=3))
        due = make_attempt(pg_engine, exam, deadline_at=now + timedelta(seconds=2))
        wait_until(lambda: hanging.received, timeout_s=30, what="a delivery hangs")
        wait_until(is_finished(pg_engine, due), timeout_s=10, what="attempt finished")
        row = attempt_row(pg_engine, due)
        # Not held up by the 3 s hang (slack for a loaded 2-core CI machine).
        assert row["finished_at"] - row["deadline_at"] < timedelta(seconds=1.5)

        tries = len(hanging.received)
        wait_until(lambda: len(hanging.received) > tries, timeout_s=15, what="next delivery")
        code, _, stderr = stop_process(sweep)

    assert code == 0, stderr
    # The delivery in hand ran to its timeout and was recorded: not left claimed as `sending`.
    assert reminder_states(pg_engine, reminded) == {5: "failed", 10: "skipped"}
    failures = [r for r in log_records(stderr) if r.get("action") == "round_failed"]
    assert [r["job"] for r in failures] == ["remind"]  # once, however many rounds failed


def test_sweep__two_sweeps_one_database__each_attempt_finished_and_reminded_once(
    pg_url: str,
    pg_engine: Engine,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    spawn: Spawn,
) -> None:
    _install_audit(pg_engine)
    with WebhookServer() as server:
        sweeps, health = [], [tmp_path / "one.health", tmp_path / "two.health"]
        for path in health:
            sweeps.append(
                spawn(
                    "sweep",
                    "--interval",
                    "1",
                    "--notify",
                    server.url,
                    "--health-file",
                    str(path),
                    DATABASE_URL=pg_url,
                    REDIS_URL=redis_url,
                )
            )
        wait_until(lambda: all(p.exists() for p in health), timeout_s=40, what="both sweeps up")
        exam = make_exam(pg_engine)
        now = now_of(pg_engine)
        due = []
        for n in range(80):
            deadline = now + timedelta(seconds=1, milliseconds=25 * n)
            attempt = make_attempt(pg_engine, exam, deadline_at=deadline)
            put_session(redis_client, attempt, {exam.question_ids[0]: ("B", deadline)})
            due.append(attempt)
        later = [
            make_attempt(pg_engine, exam, deadline_at=now + timedelta(minutes=3, seconds=n))
            for n in range(40)
        ]
        wait_until(lambda: all(is_finished(pg_engine, a)() for a in due), timeout_s=40)
        wait_until(lambda: len(server.received) >= len(later), timeout_s=20)
        outcomes = [stop_process(sweep) for sweep in sweeps]

    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert _audit(pg_engine) == (80, 80, 0)  # 80 transitions, 80 attempts, no re-finishing
    finishing = history(pg_engine, "finish-expired")
    assert sum(r["counts"]["finished"] for r in finishing) == 80
    assert sum(r["counts"]["answers_recovered"] for r in finishing) == 80
    assert len({r["pid"] for r in history(pg_engine, "sweep")}) == 2
    deliveries = [r.headers["X-Examctl-Delivery"] for r in server.received]
    assert len(deliveries) == len(set(deliveries))  # nothing delivered twice
    assert {f"{a}:5" for a in later} <= set(deliveries)
