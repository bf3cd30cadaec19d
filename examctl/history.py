"""Reading the job-run history that runner.run_job writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from examctl.db.schema import job_runs


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
