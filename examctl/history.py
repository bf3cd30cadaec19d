"""Reading the job-run history that runner.run_job writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Select, select

from examctl.db.schema import job_runs

# The jobs a schedule runs (what `status` reports on), and every job that records its runs.
SCHEDULED_JOBS = (
    "finish-expired",
    "sweep",
    "remind",
    "clean-redis",
    "purge-proctoring",
    "archive",
)
RECORDED_JOBS = (*SCHEDULED_JOBS, "restore")  # restore is run by hand


def recent_runs(engine: Engine, *, job: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs first, as plain dicts (times in ISO 8601)."""
    query = select(job_runs).order_by(job_runs.c.started_at.desc(), job_runs.c.id.desc())
    if job:
        query = query.where(job_runs.c.job == job)
    with engine.connect() as conn:
        rows = conn.execute(query.limit(limit)).mappings().all()
    return [_plain(dict(row)) for row in rows]


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("started_at", "finished_at"):
        if row[key] is not None:
            row[key] = row[key].isoformat()
    return row


def last_run_query(job: str) -> Select[Any]:
    """The newest run of `job` (served by ix_examctl_job_runs_job_started)."""
    runs = job_runs.c
    query = select(runs.started_at, runs.finished_at, runs.status, runs.dry_run)
    return query.where(runs.job == job).order_by(runs.started_at.desc()).limit(1)


def last_success_query(job: str) -> Select[Any]:
    """When `job` last finished a real (not dry) run successfully: newest start first, so the
    (job, started_at) index serves it however long the history grows."""
    runs = job_runs.c
    return (
        select(runs.finished_at)
        .where(runs.job == job, runs.status == "ok", runs.dry_run.is_(False))
        .order_by(runs.started_at.desc())
        .limit(1)
    )
