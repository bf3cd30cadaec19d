"""purge-proctoring and clean-redis: deleting what is past retention or belongs to no attempt.

Registered in examctl/cli/__init__.py, in the order `examctl --help` lists them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from examctl.cli.frame import (
    DatabaseUrl,
    DryRun,
    JsonFlag,
    LogFormat,
    MetricsDir,
    RedisPrefix,
    RedisUrl,
    RetentionDays,
    Verbose,
    finish,
    opened,
    redis_note,
    reported_errors,
    resolve,
)


def purge_proctoring_command(
    days: RetentionDays = 90,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, max=1_000_000, help="Events per transaction."),
    ] = 10_000,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Delete proctoring events past retention in short batches; drop whole old partitions.

    Example: examctl purge-proctoring --days 90 --json
    """
    with reported_errors():
        settings = resolve(database_url, None, None, log_format, metrics_dir, verbose)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.jobs.purge_proctoring import purge_proctoring

        report = res.run_job(
            "purge-proctoring",
            lambda: purge_proctoring(res.engine, days=days, batch_size=batch_size, dry_run=dry_run),
            dry_run=dry_run,
            exclusive=True,
        )
    finish(report, as_json=as_json)


def clean_redis_command(
    min_idle_minutes: Annotated[
        int,
        typer.Option(
            "--min-idle-minutes",
            min=0,
            max=10_080,
            help="A session whose attempt does not exist is deleted only once idle this long.",
        ),
    ] = 10,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Delete Redis sessions of finished or unknown attempts and malformed keys.

    Example: examctl clean-redis --redis-url redis://cache:6379/0 --json
    """
    with reported_errors():
        settings = resolve(database_url, redis_url, redis_prefix, log_format, metrics_dir, verbose)
    with reported_errors(settings.secrets), opened(settings) as res:
        from examctl.jobs.clean_redis import clean_redis

        report = res.run_job(
            "clean-redis",
            lambda: clean_redis(
                res.engine,
                res.sessions,
                dry_run=dry_run,
                min_idle_seconds=min_idle_minutes * 60,
            ),
            dry_run=dry_run,
            exclusive=True,
            notes=[redis_note(settings, False)],
        )
    finish(report, as_json=as_json)
