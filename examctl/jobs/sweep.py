"""sweep (SPEC §5): finish attempts as their deadlines pass, send reminders as they fall due.

It stands in for Celery's per-attempt `countdown` tasks with two loops in one process, each in
its own thread, so a webhook that hangs delays reminders and never finishing:
- finishing: `finish_expired`, then sleep until the next attempt falls due (deadline + grace,
  + grace_minutes under graceperiod), at most `interval_s`. The cap is what catches a deadline
  the platform moved earlier (extra time revoked) within one interval.
- reminding: `remind`, then sleep until the next attempt crosses a threshold, at most the
  interval.
Both claim their work (SKIP LOCKED batches, the reminder log), so several sweeps on one
database are safe. `stop` (set by SIGTERM/SIGINT) ends both after the batch in hand.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, case, func, select, type_coerce

from examctl.db.engine import db_now
from examctl.db.functions import plus_minutes
from examctl.db.schema import (
    OVERDUE_POLICIES,
    STATUS_IN_PROGRESS,
    exam_attempts,
    exams,
    overdue_policy,
)
from examctl.db.types import UtcDateTime
from examctl.errors import ExamctlError, JobFailed
from examctl.jobs.finish_expired import finish_expired
from examctl.jobs.remind import remind, seconds_until_next_reminder
from examctl.jobs.sweep_loop import RoundLoop
from examctl.notifiers import Notifier
from examctl.runner import JobContext, JobReport, _counts
from examctl.settings import DEFAULT_FINISH_BATCH_SIZE, DEFAULT_FINISH_WORKERS
from examctl.stores.redis_sessions import RedisSessions

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 30.0


@dataclass(frozen=True)
class SweepConfig:
    interval_s: float = DEFAULT_INTERVAL_S
    grace_seconds: int = 0
    batch_size: int = DEFAULT_FINISH_BATCH_SIZE
    workers: int = DEFAULT_FINISH_WORKERS
    thresholds: tuple[int, ...] = (1, 5, 10)  # empty: no reminders
    health_file: Path | None = None


@dataclass(frozen=True)
class SweepResult:
    """Totals over the whole sweep: the counts of finish-expired and remind, and its rounds."""

    rounds: int = 0
    failed_rounds: int = 0
    finished: int = 0
    expired: int = 0
    abandoned: int = 0
    answers_graded: int = 0
    answers_recovered: int = 0
    redis_deleted: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0


def sweep(
    ctx: JobContext,
    sessions: RedisSessions | None,
    notifier: Notifier,
    config: SweepConfig,
    stop: threading.Event,
    *,
    once: bool = False,
    dry_run: bool = False,
) -> SweepResult:
    """Loop until `stop` is set (or run one round with `once`) and return the totals."""
    engine = ctx.engine
    works: dict[str, Callable[[], object]] = {
        "finish-expired": lambda: finish_expired(
            engine,
            sessions,
            grace_seconds=config.grace_seconds,
            batch_size=config.batch_size,
            workers=config.workers,
            dry_run=dry_run,
            should_stop=stop.is_set,
        )
    }
    if config.thresholds:
        works["remind"] = lambda: remind(
            engine, notifier, thresholds=config.thresholds, dry_run=dry_run, should_stop=stop.is_set
        )
    if once:
        result = _once(works)
        if config.health_file is not None and not dry_run:
            config.health_file.touch()
        return result
    if sessions is not None:
        sessions.ping()  # a wrong Redis URL or password shows at start (exit 3), not as a retry
    liveness = _Liveness(ctx, config.health_file)
    loop = functools.partial(RoundLoop, ctx=ctx, interval_s=config.interval_s, stop=stop)
    loops = [
        loop(
            "finish-expired",
            works["finish-expired"],
            lambda: seconds_until_next_overdue(engine, config.grace_seconds, config.interval_s),
            after_round=liveness.after_round,
        )
    ]
    if "remind" in works:
        loops.append(
            loop(
                "remind",
                works["remind"],
                lambda: seconds_until_next_reminder(engine, config.thresholds, config.interval_s),
            )
        )
    liveness.loops = loops
    _run_threads(loops, stop)
    return liveness.totals()


def seconds_until_next_overdue(
    engine: Engine, grace_seconds: int, horizon_s: float
) -> float | None:
    """Seconds until the next IN_PROGRESS attempt becomes overdue, if one does within horizon.

    The range `deadline_at <= now + horizon` is served by the partial index; besides the
    attempts due within the horizon it only meets the few graceperiod ones inside their grace.
    """
    attempt, exam = exam_attempts.c, exams.c
    due = type_coerce(
        case(
            (
                overdue_policy == "graceperiod",
                plus_minutes(attempt.deadline_at, func.coalesce(exam.grace_minutes, 0)),
            ),
            else_=attempt.deadline_at,
        ),
        UtcDateTime(),
    )
    with engine.connect() as conn:
        cutoff = db_now(conn) - timedelta(seconds=grace_seconds)
        horizon = cutoff + timedelta(seconds=horizon_s)
        query = (
            select(func.min(due))
            .select_from(exam_attempts.join(exams, exam.id == attempt.exam_id))
            .where(
                attempt.status == STATUS_IN_PROGRESS,
                attempt.deadline_at <= horizon,
                overdue_policy.in_(OVERDUE_POLICIES),
                due >= cutoff,
                due <= horizon,
            )
        )
        first = conn.execute(query).scalar_one_or_none()
    return None if first is None else (first - cutoff).total_seconds()


def _once(works: dict[str, Callable[[], object]]) -> SweepResult:
    """One round of each: both run even if the first fails; the first error is raised."""
    totals: dict[str, int] = {"rounds": len(works)}
    errors: list[ExamctlError] = []
    for work in works.values():
        try:
            result = work()
        except ExamctlError as error:
            errors.append(error)
            result = error.partial
        _add_counts(totals, result)
    totals["failed_rounds"] = len(errors)
    outcome = SweepResult(**totals)
    if errors:
        message = "; ".join(str(e) for e in errors)
        raise type(errors[0])(message, partial=outcome)
    return outcome


def _run_threads(loops: list[RoundLoop], stop: threading.Event) -> None:
    """Each loop in its own thread; the caller's thread only joins (signals interrupt that)."""
    crashed: list[BaseException] = []

    def guarded(loop: RoundLoop) -> None:
        try:
            loop.run()
        except BaseException as error:
            logger.exception("%s loop crashed; stopping sweep", loop.job)
            crashed.append(error)
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(loop,), name=f"examctl-{loop.job}", daemon=True)
        for loop in loops
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if crashed:
        raise JobFailed(f"sweep stopped: a loop crashed ({crashed[0]!r})")


class _Liveness:
    """After each finishing round: touch the health file (if ok) and write sweep's metrics."""

    def __init__(self, ctx: JobContext, health_file: Path | None) -> None:
        self.ctx = ctx
        self.health_file = health_file
        self.loops: list[RoundLoop] = []
        self.last_success: datetime | None = None

    def after_round(self, report: JobReport) -> None:
        now = datetime.now(UTC)
        if report.status == "ok":
            self.last_success = now
            if self.health_file is not None:
                self.health_file.touch()
        if self.ctx.metrics_dir is not None:
            from examctl.metrics import write_job_metrics

            sweep_report = JobReport(
                job="sweep",
                status=report.status,
                dry_run=False,
                counts=asdict(self.totals()),
                duration_s=report.duration_s,
                exit_code=report.exit_code,
            )
            write_job_metrics(self.ctx.metrics_dir, sweep_report, now, self.last_success)

    def totals(self) -> SweepResult:
        totals: dict[str, int] = {
            "rounds": sum(loop.rounds for loop in self.loops),
            "failed_rounds": sum(loop.failed_rounds for loop in self.loops),
        }
        for loop in self.loops:
            _add_counts(totals, loop.totals)
        return SweepResult(**totals)


def _add_counts(totals: dict[str, int], result: object) -> None:
    names = {f.name for f in fields(SweepResult)}
    counts = result if isinstance(result, dict) else _counts(result)
    for key, value in counts.items():
        if key in names:
            totals[key] = totals.get(key, 0) + int(value)
