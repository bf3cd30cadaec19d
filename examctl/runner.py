"""run_job(): the frame every job runs in (SPEC §9).

It records the run in the job-run history before any work (so a killed run stays visible as
`running`), takes the one-at-a-time lock for exclusive jobs, times the work, records the outcome
with its counts, and writes the metrics file. Jobs themselves know nothing of any of this.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, update

from examctl.db.engine import db_now, translate_db_errors
from examctl.db.locks import advisory_lock
from examctl.db.schema import job_runs
from examctl.errors import ExamctlError, JobSkipped, first_line
from examctl.history import last_success_query
from examctl.logs import scrub

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobReport:
    """What a run did: rendered as the summary or the `--json` object, and stored in history."""

    job: str
    status: str  # ok | failed | skipped
    dry_run: bool
    counts: dict[str, Any]
    duration_s: float
    error: str | None = None
    exit_code: int = 0
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The exact object of SPEC §9."""
        return {
            "job": self.job,
            "status": self.status,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass(frozen=True)
class JobContext:
    """What the frame needs besides the work: where to record, what to hide, where metrics go."""

    engine: Engine
    secrets: list[str] = dataclasses.field(default_factory=list)
    metrics_dir: Path | None = None
    notes: tuple[str, ...] = ()


def run_job(
    ctx: JobContext,
    job: str,
    work: Callable[[], object],
    *,
    dry_run: bool = False,
    exclusive: bool = False,
) -> JobReport:
    """Run `work` inside the history, lock and metrics frame. Raises an ExamctlError only when
    the run cannot be recorded at all (the database unreachable: exit 3), after writing the
    metrics file that says so."""
    started = time.monotonic()
    try:
        run_id = _record_start(ctx.engine, job, dry_run)
    except ExamctlError as error:
        unrecorded = JobReport(
            job=job,
            status="failed",
            dry_run=dry_run,
            counts={},
            duration_s=time.monotonic() - started,
            error=scrub(str(error), ctx.secrets),
            exit_code=error.exit_code,
        )
        _write_metrics(ctx, unrecorded, None)
        raise
    if exclusive:
        with advisory_lock(ctx.engine, job) as acquired:
            if not acquired:
                logger.info(
                    "another %s run holds the lock; skipped",
                    job,
                    extra={"job": job, "action": "lock_busy"},
                )
                return _finish(ctx, run_id, job, dry_run, started, status="skipped")
            return _run(ctx, run_id, job, work, dry_run, started)
    return _run(ctx, run_id, job, work, dry_run, started)


def _run(
    ctx: JobContext,
    run_id: int,
    job: str,
    work: Callable[[], object],
    dry_run: bool,
    started: float,
) -> JobReport:
    try:
        with translate_db_errors(ctx.engine):
            result = work()
    except JobSkipped as skip:
        logger.info("%s skipped: %s", job, skip, extra={"job": job, "action": "job_skipped"})
        return _finish(ctx, run_id, job, dry_run, started, status="skipped")
    except ExamctlError as error:
        message = scrub(str(error), ctx.secrets)
        logger.error("%s failed: %s", job, message, extra={"job": job})
        return _finish(
            ctx,
            run_id,
            job,
            dry_run,
            started,
            status="failed",
            counts=_counts(error.partial),
            error=message,
            exit_code=error.exit_code,
        )
    except Exception as error:
        # A bug, not an expected failure: keep the traceback in the log, record it, exit 1.
        logger.exception("%s crashed", job, extra={"job": job})
        message = scrub(f"{type(error).__name__}: {first_line(error)}", ctx.secrets)
        return _finish(
            ctx, run_id, job, dry_run, started, status="failed", error=message, exit_code=1
        )
    return _finish(ctx, run_id, job, dry_run, started, status="ok", counts=_counts(result))


def _finish(
    ctx: JobContext,
    run_id: int,
    job: str,
    dry_run: bool,
    started: float,
    *,
    status: str,
    counts: dict[str, Any] | None = None,
    error: str | None = None,
    exit_code: int = 0,
) -> JobReport:
    report = JobReport(
        job=job,
        status=status,
        dry_run=dry_run,
        counts=counts or {},
        duration_s=time.monotonic() - started,
        error=error,
        exit_code=exit_code,
        notes=ctx.notes,
    )
    _write_metrics(ctx, report, _record_end(ctx.engine, run_id, report))
    return report


def _write_metrics(ctx: JobContext, report: JobReport, finished_at: datetime | None) -> None:
    """The metrics file, stamped with the database's clock; when the database cannot be reached
    (`finished_at` None), with this host's clock and the last success an earlier run wrote."""
    if ctx.metrics_dir is None:
        return
    from examctl.metrics import previous_last_success, write_job_metrics

    last_success = None
    if finished_at is not None:
        try:
            with translate_db_errors(ctx.engine):
                last_success = last_success_at(ctx.engine, report.job)
        except ExamctlError:
            finished_at = None
    if finished_at is None:
        finished_at = datetime.now(UTC)
        last_success = previous_last_success(ctx.metrics_dir, report.job)
    try:
        write_job_metrics(ctx.metrics_dir, report, finished_at, last_success)
    except OSError as error:  # the run's outcome stands; the staleness alert will notice
        logger.error(
            "could not write the metrics file: %s", error, extra={"action": "metrics_not_written"}
        )


def _counts(result: object) -> dict[str, Any]:
    if result is None or not dataclasses.is_dataclass(result) or isinstance(result, type):
        return {}
    return dataclasses.asdict(result)


def _record_start(engine: Engine, job: str, dry_run: bool) -> int:
    row = {
        "job": job,
        "status": "running",
        "dry_run": dry_run,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    with translate_db_errors(engine), engine.begin() as conn:
        statement = insert(job_runs).values(started_at=db_now(conn), **row)
        return int(conn.execute(statement.returning(job_runs.c.id)).scalar_one())


def _record_end(engine: Engine, run_id: int, report: JobReport) -> datetime | None:
    """Store the outcome; if the database is gone by now, say so in the log and go on."""
    try:
        with translate_db_errors(engine), engine.begin() as conn:
            finished_at = db_now(conn)
            conn.execute(
                update(job_runs)
                .where(job_runs.c.id == run_id)
                .values(
                    finished_at=finished_at,
                    status=report.status,
                    counts=report.counts,
                    error=report.error,
                )
            )
            return finished_at
    except ExamctlError as error:
        logger.error("could not record the run in history: %s", error, extra={"run_id": run_id})
        return None


def record_run(engine: Engine, report: JobReport, *, span_s: float) -> None:
    """Store a run that has already ended, in one row (sweep's rounds: idle ones leave none).

    Raises ServiceUnavailable when the database is gone; the caller keeps the report for later.
    """
    with translate_db_errors(engine), engine.begin() as conn:
        finished_at = db_now(conn)
        row = {
            "job": report.job,
            "started_at": finished_at - timedelta(seconds=span_s),
            "finished_at": finished_at,
            "status": report.status,
            "dry_run": report.dry_run,
            "counts": report.counts,
            "error": report.error,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        conn.execute(insert(job_runs).values(row))


def last_success_at(engine: Engine, job: str) -> datetime | None:
    with engine.connect() as conn:
        return conn.execute(last_success_query(job)).scalar_one_or_none()
