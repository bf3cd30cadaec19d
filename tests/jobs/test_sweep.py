"""sweep in-process: one round, the loop's timing, its history rows and its stop event."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update

from examctl.db.schema import exam_attempts
from examctl.errors import ServiceUnavailable
from examctl.jobs.sweep import SweepConfig, SweepResult, seconds_until_next_overdue, sweep
from examctl.jobs.sweep_loop import HistoryRows, backoff_s
from examctl.notifiers import LogNotifier
from examctl.runner import JobContext, JobReport
from examctl.stores.redis_sessions import RedisSessions
from tests.factories import attempt_row, make_attempt, make_exam, now_of
from tests.servers import free_port
from tests.sweeping import history, is_finished, wait_until


class Background:
    """sweep() in a thread, as the CLI runs it, stopped by setting its event."""

    def __init__(self, engine: Engine, config: SweepConfig, metrics_dir: Path | None) -> None:
        self.stop = threading.Event()
        self.result: SweepResult | None = None
        ctx = JobContext(engine=engine, metrics_dir=metrics_dir)

        def run() -> None:
            self.result = sweep(ctx, None, LogNotifier(), config, self.stop)

        self.thread = threading.Thread(target=run)

    def finish(self) -> SweepResult:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive() and self.result is not None
        return self.result


@pytest.fixture
def background() -> Iterator[Callable[..., Background]]:
    started: list[Background] = []

    def start(engine: Engine, metrics_dir: Path | None = None, **config: Any) -> Background:
        runner = Background(engine, SweepConfig(**config), metrics_dir)
        runner.thread.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop.set()
        runner.thread.join(timeout=10)


# --- one round ---------------------------------------------------------------------------------


def overdue_and_reminded(engine: Engine) -> uuid.UUID:
    """An attempt 5 s overdue (returned) and one 3 minutes from its deadline."""
    exam = make_exam(engine)
    now = now_of(engine)
    make_attempt(engine, exam, deadline_at=now + timedelta(minutes=3))
    return make_attempt(engine, exam, deadline_at=now - timedelta(seconds=5))


def one_round(engine: Engine, sessions: RedisSessions | None = None, **kw: Any) -> SweepResult:
    ctx = JobContext(engine=engine)
    return sweep(ctx, sessions, LogNotifier(), SweepConfig(), threading.Event(), once=True, **kw)


def test_sweep__once__finishes_overdue_and_sends_due_reminders(engine: Engine) -> None:
    overdue = overdue_and_reminded(engine)

    result = one_round(engine)

    assert result == SweepResult(rounds=2, finished=1, expired=1, sent=1, skipped=1)
    assert attempt_row(engine, overdue)["status"] == "EXPIRED"


def test_sweep__once_redis_down__nothing_finished_reminders_still_sent(engine: Engine) -> None:
    overdue = overdue_and_reminded(engine)
    down = RedisSessions(f"redis://127.0.0.1:{free_port()}/0", "exam:attempt:")

    with pytest.raises(ServiceUnavailable, match="Redis unreachable") as raised:
        one_round(engine, down)

    assert raised.value.partial == SweepResult(rounds=2, failed_rounds=1, sent=1, skipped=1)
    assert attempt_row(engine, overdue)["status"] == "IN_PROGRESS"


def test_sweep__once_dry_run__counts_changes_nothing(engine: Engine) -> None:
    overdue = overdue_and_reminded(engine)

    result = one_round(engine, dry_run=True)

    assert (result.finished, result.sent, result.skipped) == (1, 1, 1)
    assert attempt_row(engine, overdue)["status"] == "IN_PROGRESS"
    assert history(engine) == []


# --- the loop ----------------------------------------------------------------------------------


def test_sweep__deadline_passes__finished_within_a_second_not_the_interval(
    engine: Engine, background: Callable[..., Background]
) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) + timedelta(seconds=2))
    runner = background(engine, interval_s=30)

    wait_until(is_finished(engine, attempt), timeout_s=8)
    row = attempt_row(engine, attempt)
    stopping = time.monotonic()
    result = runner.finish()

    assert timedelta(0) < row["finished_at"] - row["deadline_at"] < timedelta(seconds=1)
    assert time.monotonic() - stopping < 2  # the 30 s sleep ends at the stop event
    assert result.finished == 1
    assert result.rounds <= 8  # it slept until the deadline instead of polling


def test_sweep__deadline_moved_earlier__finished_within_the_interval(
    pg_engine: Engine, background: Callable[..., Background]
) -> None:
    exam = make_exam(pg_engine)
    attempt = make_attempt(pg_engine, exam, deadline_at=now_of(pg_engine) + timedelta(hours=1))
    background(pg_engine, interval_s=1)
    time.sleep(0.3)  # the loop is asleep, expecting nothing for an hour

    moved_at = now_of(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(
            update(exam_attempts)
            .where(exam_attempts.c.id == attempt)
            .values(deadline_at=moved_at - timedelta(seconds=1))
        )
    wait_until(is_finished(pg_engine, attempt), timeout_s=5)

    assert attempt_row(pg_engine, attempt)["finished_at"] - moved_at < timedelta(seconds=1.5)


def test_sweep__rounds__working_ones_recorded_idle_ones_not(
    pg_engine: Engine, background: Callable[..., Background]
) -> None:
    exam = make_exam(pg_engine)
    now = now_of(pg_engine)
    first = make_attempt(pg_engine, exam, deadline_at=now + timedelta(milliseconds=500))
    second = make_attempt(pg_engine, exam, deadline_at=now + timedelta(milliseconds=1200))
    runner = background(pg_engine, interval_s=0.2, thresholds=())

    wait_until(is_finished(pg_engine, second))
    time.sleep(0.6)  # a few idle rounds
    result = runner.finish()

    rows = history(pg_engine)
    assert result.rounds >= 6
    assert [r["job"] for r in rows] == ["finish-expired", "finish-expired"]
    assert [r["counts"]["finished"] for r in rows] == [1, 1]
    assert {r["status"] for r in rows} == {"ok"}
    assert attempt_row(pg_engine, first)["status"] == "EXPIRED"


def test_sweep__health_file_and_metrics__written_after_a_successful_round(
    pg_engine: Engine, background: Callable[..., Background], tmp_path: Path
) -> None:
    exam = make_exam(pg_engine)
    attempt = make_attempt(pg_engine, exam, deadline_at=now_of(pg_engine) + timedelta(seconds=1))
    health, metrics = tmp_path / "sweep.health", tmp_path / "metrics"
    runner = background(pg_engine, metrics, interval_s=5, health_file=health)

    wait_until(is_finished(pg_engine, attempt))
    wait_until(lambda: 'count="finished",job="sweep"} 1.0' in _read(metrics / "examctl_sweep.prom"))
    runner.finish()

    assert health.exists()
    assert "examctl_last_success_timestamp_seconds" in _read(metrics / "examctl_sweep.prom")


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_seconds_until_next_overdue__policies_and_grace__earliest_due(engine: Engine) -> None:
    grace = make_exam(engine, policy="graceperiod", grace_minutes=1)
    plain = make_exam(engine)
    now = now_of(engine)
    make_attempt(engine, grace, deadline_at=now - timedelta(seconds=40))  # due in 20 s
    make_attempt(engine, plain, deadline_at=now + timedelta(seconds=25))  # due in 25 s
    make_attempt(engine, plain, deadline_at=now - timedelta(seconds=5), status="SUBMITTED")

    assert 18 < (seconds_until_next_overdue(engine, 0, horizon_s=30) or 0) <= 20
    assert 23 < (seconds_until_next_overdue(engine, 10, horizon_s=60) or 0) <= 30
    assert seconds_until_next_overdue(engine, 0, horizon_s=10) is None


def test_backoff__consecutive_failures__doubles_up_to_interval() -> None:
    assert [backoff_s(n, 30) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_s(3, 1) == 1


def test_history_rows__busy_rounds__coalesced_within_window(pg_engine: Engine) -> None:
    rows = HistoryRows(JobContext(engine=pg_engine), window_s=60)

    def report(finished: int, status: str = "ok") -> JobReport:
        return JobReport("finish-expired", status, False, {"finished": finished}, 0.01)

    for n in (1, 2, 3):
        rows.add(report(n), time.monotonic())
    assert [r["counts"]["finished"] for r in history(pg_engine)] == [1]
    rows.add(report(0, "failed"), time.monotonic(), now=True)

    assert [(r["status"], r["counts"]["finished"]) for r in history(pg_engine)] == [
        ("ok", 1),
        ("ok", 5),
        ("failed", 0),
    ]
