"""finish-expired, remind and sweep: finishing attempts at their deadlines, reminders before.

Registered in examctl/cli/__init__.py, in the order `examctl --help` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from examctl.cli.frame import (
    DatabaseUrl,
    DryRun,
    JsonFlag,
    LogFormat,
    MetricsDir,
    RedisPrefix,
    RedisUrl,
    Verbose,
    finish,
    opened,
    redis_note,
    reported_errors,
    resolve,
    stop_on_signals,
)
from examctl.errors import UsageError
from examctl.settings import DEFAULT_FINISH_BATCH_SIZE, DEFAULT_FINISH_WORKERS, Settings

if TYPE_CHECKING:
    from examctl.notifiers import Notifier

# --- finishing options (finish-expired, sweep) ----------------------------------------------

GraceSeconds = Annotated[
    int,
    typer.Option(
        "--grace-seconds",
        min=0,
        max=366 * 86_400,  # a year: far past any exam, and inside every date range
        help="Finish only attempts overdue by more than this.",
    ),
]
BatchSize = Annotated[
    int, typer.Option("--batch-size", min=1, max=100_000, help="Attempts per transaction.")
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        max=16,
        help="Batches finished at once on PostgreSQL, each its own connection (SQLite: 1).",
    ),
]
NoRedis = Annotated[
    bool,
    typer.Option(
        "--no-redis", help="Finish from the database alone, ignoring buffered Redis answers."
    ),
]

# --- reminding options (remind, sweep) ------------------------------------------------------

Thresholds = Annotated[
    str,
    typer.Option(
        "--at", help="Minutes before the deadline to remind at, comma-separated, e.g. 10,5,1."
    ),
]
Notify = Annotated[
    str,
    typer.Option(
        "--notify",
        envvar="EXAMCTL_NOTIFY",
        help="log, or an http(s):// webhook URL that receives each reminder as a JSON POST "
        "(signed with EXAMCTL_WEBHOOK_SECRET when set).",
    ),
]
WebhookTimeout = Annotated[
    float,
    typer.Option("--webhook-timeout", min=0.1, max=300, help="Seconds a webhook may take."),
]


def finish_expired_command(
    grace_seconds: GraceSeconds = 0,
    batch_size: BatchSize = DEFAULT_FINISH_BATCH_SIZE,
    workers: Workers = DEFAULT_FINISH_WORKERS,
    no_redis: NoRedis = False,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Finish overdue attempts once: recover Redis answers, grade, mark EXPIRED or ABANDONED.

    Example: examctl finish-expired --grace-seconds 60 --json
    """
    with reported_errors():
        settings = resolve(database_url, redis_url, redis_prefix, log_format, metrics_dir, verbose)
    with reported_errors(settings.secrets), opened(settings, use_redis=not no_redis) as res:
        from examctl.jobs.finish_expired import finish_expired

        report = res.run_job(
            "finish-expired",
            lambda: finish_expired(
                res.engine,
                res.sessions,
                grace_seconds=grace_seconds,
                batch_size=batch_size,
                workers=workers,
                dry_run=dry_run,
            ),
            dry_run=dry_run,
            notes=[redis_note(settings, no_redis)],
        )
    finish(report, as_json=as_json)


def remind_command(
    at: Thresholds = "10,5,1",
    notify: Notify = "log",
    webhook_timeout: WebhookTimeout = 5.0,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Send due reminders once: at most one per attempt and threshold, ever; exit 1 if one failed.

    Example: examctl remind --at 10,5,1 --notify https://platform.example/hooks/reminders
    """
    with reported_errors():
        settings = resolve(database_url, None, None, log_format, metrics_dir, verbose)
        thresholds, notifier = _reminders(settings, at, notify, webhook_timeout)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.jobs.remind import remind

        with stop_on_signals() as stop:  # a claim in hand is delivered and recorded, not lost
            report = res.run_job(
                "remind",
                lambda: remind(
                    res.engine,
                    notifier,
                    thresholds=thresholds,
                    dry_run=dry_run,
                    should_stop=stop.is_set,
                ),
                dry_run=dry_run,
                notes=[f"notify: {notifier.display}"],
            )
    finish(report, as_json=as_json)


def sweep_command(
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.1, max=3600, help="Longest sleep between rounds, in seconds."
        ),
    ] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Run a single round and exit.")] = False,
    health_file: Annotated[
        Path | None,
        typer.Option("--health-file", dir_okay=False, help="Touched after each successful round."),
    ] = None,
    grace_seconds: GraceSeconds = 0,
    batch_size: BatchSize = DEFAULT_FINISH_BATCH_SIZE,
    workers: Workers = DEFAULT_FINISH_WORKERS,
    at: Thresholds = "10,5,1",
    no_remind: Annotated[
        bool, typer.Option("--no-remind", help="Only finish attempts; send no reminders.")
    ] = False,
    notify: Notify = "log",
    webhook_timeout: WebhookTimeout = 5.0,
    no_redis: NoRedis = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what one round would do (implies --once).")
    ] = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Finish attempts as their deadlines pass and send reminders, until SIGTERM or SIGINT.

    Example: examctl sweep --health-file /run/examctl/sweep.health --notify https://hooks.example/r
    """
    with reported_errors():
        settings = resolve(database_url, redis_url, redis_prefix, log_format, metrics_dir, verbose)
        thresholds, notifier = _reminders(settings, at, notify, webhook_timeout)
        if health_file is not None and not health_file.parent.is_dir():
            raise UsageError(f"--health-file: directory {health_file.parent} does not exist")
    with reported_errors(settings.secrets), opened(settings, use_redis=not no_redis) as res:
        from examctl.jobs.sweep import SweepConfig, sweep

        config = SweepConfig(
            interval_s=interval,
            grace_seconds=grace_seconds,
            batch_size=batch_size,
            workers=workers,
            thresholds=() if no_remind else thresholds,
            health_file=health_file,
        )
        reminders_note = "reminders off" if no_remind else f"notify: {notifier.display}"
        with stop_on_signals() as stop:
            report = res.run_job(
                "sweep",
                lambda: sweep(
                    res.job_context(),
                    res.sessions,
                    notifier,
                    config,
                    stop,
                    once=once or dry_run,
                    dry_run=dry_run,
                ),
                dry_run=dry_run,
                notes=[redis_note(settings, no_redis), reminders_note],
            )
    finish(report, as_json=as_json)


def _reminders(
    settings: Settings, at: str, notify: str, timeout_s: float
) -> tuple[tuple[int, ...], Notifier]:
    """--at and --notify, validated before anything is opened (exit 2 on a bad value)."""
    from examctl.jobs.remind import parse_thresholds
    from examctl.notifiers import make_notifier

    notifier = make_notifier(notify, secret=settings.webhook_secret, timeout_s=timeout_s)
    return parse_thresholds(at), notifier
