"""history and status: what the jobs did, and what work is pending. Both change nothing.

Registered in examctl/cli/__init__.py, in the order `examctl --help` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from examctl.cli.frame import (
    DatabaseUrl,
    JsonFlag,
    LogFormat,
    RedisPrefix,
    RedisUrl,
    RetentionDays,
    Verbose,
    opened,
    reported_errors,
    resolve,
)
from examctl.errors import UsageError


def history_command(
    job: Annotated[str | None, typer.Option("--job", help="Only runs of this job.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 20,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Show the newest job runs: status, counts, error, host.

    Example: examctl history --job finish-expired --limit 5
    """
    with reported_errors():
        settings = resolve(database_url, log_format=log_format, verbose=verbose)
        _check_job_name(job)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.history import recent_runs

        rows = recent_runs(res.engine, job=job, limit=limit)
    if as_json:
        from examctl.render import print_json

        print_json(rows)
        return
    from examctl.render import render_rows

    render_rows(
        rows,
        ["id", "job", "status", "started_at", "finished_at", "dry_run", "counts", "error", "host"],
        title="examctl history (newest first)",
    )


def _check_job_name(job: str | None) -> None:
    """A typo in `--job` is a usage error, not an empty history that reads as "never ran"."""
    from examctl.history import RECORDED_JOBS

    if job is not None and job not in RECORDED_JOBS:
        jobs = ", ".join(RECORDED_JOBS)
        raise UsageError(f"--job: no job is named {job!r}; the jobs are {jobs}")


def status_command(
    days: RetentionDays = 90,
    archive_days: Annotated[
        int,
        typer.Option(
            "--archive-days", min=1, max=36_500, help="Attempts finished longer ago are due."
        ),
    ] = 180,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Show pending work (in progress, overdue, past retention, due for archive) and job runs.

    Example: examctl status --json
    """
    with reported_errors():
        settings = resolve(database_url, redis_url, redis_prefix, log_format, None, verbose)
    with reported_errors(settings.secrets), opened(settings) as res:
        from examctl.status import collect_status, render_status

        status = collect_status(
            res.engine, res.sessions, retention_days=days, archive_days=archive_days
        )
    if as_json:
        from examctl.render import print_json

        print_json(status.as_json())
        return
    render_status(status)
