"""`examctl status` (SPEC §9): what is pending, and how each job last ran. Cheap on big databases.

Every figure is read through an index of SPEC §3 and touches only the rows it counts, never the
whole table:

- attempts in progress, overdue, next deadline: the partial index
  `exam_attempts (deadline_at) WHERE status = 'IN_PROGRESS'` (index-only scans);
- events past retention: `proctoring_events (occurred_at)`;
- attempts due for archive (finished statuses only, as archive takes them): the partial index
  `exam_attempts (finished_at) WHERE status <> …`;
- each job's last run and last success: `examctl_job_runs (job, started_at)`.

The Redis figure is a full SCAN of the session prefix (COUNT 1000 per call), so it costs time in
proportion to Redis' key count; Redis is optional here: unreachable or not configured is shown,
not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select

from examctl.db.engine import db_now
from examctl.db.schema import (
    FINISHED_STATUSES,
    STATUS_IN_PROGRESS,
    exam_attempts,
    proctoring_events,
)
from examctl.errors import ServiceUnavailable
from examctl.history import SCHEDULED_JOBS, last_run_query, last_success_query
from examctl.stores.redis_sessions import RedisSessions

DEFAULT_RETENTION_DAYS = 90
DEFAULT_ARCHIVE_DAYS = 180


@dataclass(frozen=True)
class JobStatus:
    job: str
    last_run_at: datetime | None = None  # when the newest run started
    last_status: str | None = None  # running | ok | failed | skipped
    last_dry_run: bool | None = None
    last_success_at: datetime | None = None  # when the newest real, successful run ended


@dataclass(frozen=True)
class Status:
    now: datetime
    attempts_in_progress: int
    attempts_overdue: int
    next_deadline_at: datetime | None
    redis: str  # ok | not configured | unreachable: …
    redis_sessions: int | None
    retention_days: int
    events_past_retention: int
    archive_days: int
    attempts_due_for_archive: int
    jobs: tuple[JobStatus, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "now": _iso(self.now),
            "attempts_in_progress": self.attempts_in_progress,
            "attempts_overdue": self.attempts_overdue,
            "next_deadline_at": _iso(self.next_deadline_at),
            "redis": self.redis,
            "redis_sessions": self.redis_sessions,
            "retention_days": self.retention_days,
            "events_past_retention": self.events_past_retention,
            "archive_days": self.archive_days,
            "attempts_due_for_archive": self.attempts_due_for_archive,
            "jobs": {
                j.job: {
                    "last_run_at": _iso(j.last_run_at),
                    "last_status": j.last_status,
                    "last_dry_run": j.last_dry_run,
                    "last_success_at": _iso(j.last_success_at),
                }
                for j in self.jobs
            },
        }


def status_queries(
    now: datetime, *, retention_days: int, archive_days: int
) -> dict[str, Select[Any]]:
    """The figures' queries, by name (also what the EXPLAIN test checks)."""
    attempts, events = exam_attempts.c, proctoring_events.c
    live = attempts.status == STATUS_IN_PROGRESS
    count = select(func.count())
    return {
        "attempts_in_progress": count.select_from(exam_attempts).where(live),
        "attempts_overdue": count.select_from(exam_attempts).where(
            live, attempts.deadline_at < now
        ),
        "next_deadline_at": select(func.min(attempts.deadline_at)).where(
            live, attempts.deadline_at >= now
        ),
        "events_past_retention": count.select_from(proctoring_events).where(
            events.occurred_at < now - timedelta(days=retention_days)
        ),
        # What archive takes (the finished statuses); `<> IN_PROGRESS` lets the partial index
        # serve it.
        "attempts_due_for_archive": count.select_from(exam_attempts).where(
            attempts.status != STATUS_IN_PROGRESS,
            attempts.status.in_(FINISHED_STATUSES),
            attempts.finished_at < now - timedelta(days=archive_days),
        ),
    }


def collect_status(
    engine: Engine,
    sessions: RedisSessions | None,
    *,
    retention_days: int = DEFAULT_RETENTION_DAYS,
    archive_days: int = DEFAULT_ARCHIVE_DAYS,
) -> Status:
    """Read every figure (database clock), then count the Redis sessions if Redis is set up."""
    with engine.connect() as conn:
        now = db_now(conn)
        queries = status_queries(now, retention_days=retention_days, archive_days=archive_days)
        figures: dict[str, Any] = {n: conn.execute(q).scalar() for n, q in queries.items()}
        jobs = tuple(_job_status(conn, job) for job in SCHEDULED_JOBS)
    redis, sessions_count = _redis_sessions(sessions)
    return Status(
        now=now,
        attempts_in_progress=int(figures["attempts_in_progress"]),
        attempts_overdue=int(figures["attempts_overdue"]),
        next_deadline_at=figures["next_deadline_at"],
        redis=redis,
        redis_sessions=sessions_count,
        retention_days=retention_days,
        events_past_retention=int(figures["events_past_retention"]),
        archive_days=archive_days,
        attempts_due_for_archive=int(figures["attempts_due_for_archive"]),
        jobs=jobs,
    )


def _job_status(conn: Connection, job: str) -> JobStatus:
    last = conn.execute(last_run_query(job)).first()
    if last is None:
        return JobStatus(job)
    success = conn.execute(last_success_query(job)).scalar_one_or_none()
    return JobStatus(job, last.started_at, last.status, last.dry_run, success)


def _redis_sessions(sessions: RedisSessions | None) -> tuple[str, int | None]:
    if sessions is None:
        return "not configured", None
    try:
        return "ok", sessions.count_keys()
    except ServiceUnavailable as error:
        return f"unreachable: {error}", None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def render_status(status: Status) -> None:
    """The human view: pending work, then one line per job."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    figures = Table(show_header=False, box=None, padding=(0, 2), title="examctl status")
    rows = [
        ("attempts in progress", f"{status.attempts_in_progress:,}"),
        ("overdue now", f"{status.attempts_overdue:,}"),
        ("next deadline", _iso(status.next_deadline_at) or "none"),
        (
            "Redis sessions",
            f"{status.redis_sessions:,}" if status.redis_sessions is not None else status.redis,
        ),
        (
            f"proctoring events older than {status.retention_days} days",
            f"{status.events_past_retention:,}",
        ),
        (
            f"attempts finished over {status.archive_days} days ago",
            f"{status.attempts_due_for_archive:,}",
        ),
    ]
    for name, value in rows:  # text from Redis or the database is shown as is, never as markup
        figures.add_row(name, escape(value))
    console.print(figures)
    jobs = Table(title="jobs", title_justify="left")
    for column in ("job", "last run", "status", "last success"):
        jobs.add_column(column)
    for job in status.jobs:
        state = (job.last_status or "never run") + (" (dry run)" if job.last_dry_run else "")
        cells = (job.job, _iso(job.last_run_at) or "", state, _iso(job.last_success_at) or "")
        jobs.add_row(*map(escape, cells))
    console.print(jobs)
