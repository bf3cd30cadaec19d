"""The command line: parse, resolve Settings, open resources, run a job, render, exit.

Only typer and the standard library are imported at module level, so `examctl --help` and every
`--help` stay instant: database drivers, Redis and boto3 load inside the command that needs them.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

# Typer >= 0.26 vendors Click (typer._click) and no longer installs the `click` package: its
# usage errors must be caught as Typer's, or `--bogus` ends in a traceback instead of exit 2.
from typer._click import exceptions as click_errors

from examctl.errors import ExamctlError, UsageError
from examctl.settings import DEFAULT_FINISH_BATCH_SIZE, DEFAULT_FINISH_WORKERS, Settings

if TYPE_CHECKING:
    from examctl.notifiers import Notifier
    from examctl.resources import Resources
    from examctl.runner import JobReport
    from examctl.stores.archive_store import ArchiveStore

logger = logging.getLogger("examctl.cli")

app = typer.Typer(
    name="examctl",
    help="Maintenance jobs of the online exam platform (PostgreSQL, Redis, S3).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Create or check the schema examctl works on.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# --- options shared by every command (flags win over the environment) -----------------------

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="DATABASE_URL",
        show_default=False,
        help="postgresql://… or sqlite:///path  [default: sqlite:///examctl.db]",
    ),
]
RedisUrl = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="REDIS_URL",
        show_default=False,
        help="redis://host:port/db; without it Redis work is skipped.",
    ),
]
RedisPrefix = Annotated[
    str | None,
    typer.Option(
        "--redis-prefix",
        envvar="EXAMCTL_REDIS_PREFIX",
        show_default=False,
        help="Session key prefix.  [default: exam:attempt:]",
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        envvar="EXAMCTL_LOG_FORMAT",
        show_default=False,
        help="text or json  [default: text on a terminal, json otherwise]",
    ),
]
MetricsDir = Annotated[
    Path | None,
    typer.Option(
        "--metrics-dir",
        envvar="EXAMCTL_METRICS_DIR",
        file_okay=False,
        help="Write examctl_<job>.prom here after each run.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs and tracebacks.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Count what would change; change nothing.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
GraceSeconds = Annotated[
    int,
    typer.Option("--grace-seconds", min=0, help="Finish only attempts overdue by more than this."),
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


def resolve(
    database_url: str | None,
    redis_url: str | None = None,
    redis_prefix: str | None = None,
    log_format: str | None = None,
    metrics_dir: Path | None = None,
    verbose: bool = False,
) -> Settings:
    """Validate the options and start logging; UsageError (exit 2) on bad configuration."""
    settings = Settings.resolve(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        log_format=log_format,
        metrics_dir=metrics_dir,
        verbose=verbose,
    )
    from examctl.logs import setup_logging

    setup_logging(settings.log_format, verbose=verbose, secrets=settings.secrets())
    return settings


@contextlib.contextmanager
def reported_errors(secrets: Callable[[], list[str]] = list) -> Iterator[None]:
    """The one place that turns errors into a line on stderr and an exit code."""
    try:
        yield
    except ExamctlError as error:
        from examctl.logs import scrub

        _fail(scrub(str(error), secrets()), error.exit_code)
    except (typer.Exit, click_errors.ClickException):
        raise
    except Exception as error:  # a bug: keep the traceback in the log
        from examctl.logs import scrub

        logger.exception("unexpected error")
        _fail(scrub(f"unexpected {type(error).__name__}: {error}", secrets()), 1)


def _fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"examctl: error: {message}\n")
    raise typer.Exit(code=code)


def finish(report: JobReport, *, as_json: bool) -> NoReturn:
    """Render the report on stdout; a failed run also gets its one error line on stderr."""
    from examctl.render import render_report

    render_report(report, as_json=as_json)
    if report.status == "failed":
        _fail(report.error or "the job failed", report.exit_code)
    raise typer.Exit(code=report.exit_code)


def opened(
    settings: Settings, *, use_redis: bool = True
) -> contextlib.AbstractContextManager[Resources]:
    from examctl.resources import open_resources

    return open_resources(settings, use_redis=use_redis)


# --- jobs -----------------------------------------------------------------------------------


@app.command("finish-expired")
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
            notes=[_redis_note(settings, no_redis)],
        )
    finish(report, as_json=as_json)


def _redis_note(settings: Settings, no_redis: bool) -> str:
    if no_redis:
        return "--no-redis: finished from the database alone; buffered Redis answers ignored"
    if not settings.redis_url:
        return "Redis not configured (--redis-url / REDIS_URL): Redis work skipped"
    return ""


# --- history, schema ------------------------------------------------------------------------


@app.command("history")
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


@db_app.command("init")
def db_init_command(
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Create every missing table, column and index (safe to run again).

    Example: examctl db init --database-url postgresql://examctl@db/exams
    """
    with reported_errors():
        settings = resolve(database_url, log_format=log_format, verbose=verbose)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.db.migrate import init_schema

        created = init_schema(res.engine)
    typer.echo("\n".join(f"created {item}" for item in created) or "schema complete: nothing to do")


@db_app.command("check")
def db_check_command(
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Report missing tables, columns and indexes; exit 1 if anything is missing.

    Example: examctl db check --json
    """
    with reported_errors():
        settings = resolve(database_url, log_format=log_format, verbose=verbose)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.db.migrate import check_schema

        missing = check_schema(res.engine)
    if as_json:
        from examctl.render import print_json

        print_json({"ok": not missing, "missing": missing})
    else:
        typer.echo("\n".join(f"missing {item}" for item in missing) or "schema complete")
    raise typer.Exit(code=1 if missing else 0)


# --- remind, sweep ---------------------------------------------------------------------------

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


@app.command("remind")
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

        with _stop_on_signals() as stop:  # a claim in hand is delivered and recorded, not lost
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


@app.command("sweep")
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
        with _stop_on_signals() as stop:
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
                notes=[_redis_note(settings, no_redis), reminders_note],
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


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the event: the batch in hand completes, then the job returns.

    Only the main thread ever runs this handler, and it never waits on the event there (sweep's
    main thread only joins its loop threads), so setting it cannot deadlock.
    """
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logger.info("%s received: stopping after the batch in hand", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- purge-proctoring, clean-redis, status ---------------------------------------------------

RetentionDays = Annotated[
    int,
    typer.Option(
        "--days", min=1, max=36_500, help="Events older than this many days are past retention."
    ),
]


@app.command("purge-proctoring")
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


@app.command("clean-redis")
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
            notes=[_redis_note(settings, False)],
        )
    finish(report, as_json=as_json)


@app.command("status")
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


# --- archive, restore ------------------------------------------------------------------------

ArchiveDest = Annotated[
    str,
    typer.Option(
        "--dest",
        envvar="EXAMCTL_ARCHIVE_DEST",
        help="s3://bucket/prefix, file:///path or a directory.",
    ),
]


@app.command("archive")
def archive_command(
    days: Annotated[
        int, typer.Option("--days", help="Archive attempts finished more than this many days ago.")
    ] = 180,
    dest: ArchiveDest = "./examctl-archive",
    max_object_attempts: Annotated[
        int,
        typer.Option(
            "--max-object-attempts",
            min=1,
            max=100_000,
            help="Attempts per data object (each object holds one UTC day).",
        ),
    ] = 5000,
    sse: Annotated[
        str | None, typer.Option("--sse", help="S3 server-side encryption: AES256 or aws:kms.")
    ] = None,
    sse_kms_key_id: Annotated[
        str | None, typer.Option("--sse-kms-key-id", help="KMS key id for --sse aws:kms.")
    ] = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Export old finished attempts to S3 or a directory, verify them, then delete them.

    Example: examctl archive --days 180 --dest s3://exam-archive/prod --sse aws:kms
    """
    with reported_errors():
        settings = resolve(database_url, None, None, log_format, metrics_dir, verbose)
        if days < 1:
            raise UsageError(f"--days must be at least 1, not {days}")
        from examctl.stores.archive_store import open_store, parse_destination, parse_encryption

        destination = parse_destination(dest)
        encryption = parse_encryption(destination, sse, sse_kms_key_id)
        store = open_store(destination, encryption)
    with _store_job(settings, store, "archiving attempts") as (res, progress):
        from examctl.jobs.archive import archive

        report = res.run_job(
            "archive",
            lambda: archive(
                res.engine,
                store,
                days=days,
                max_object_attempts=max_object_attempts,
                dry_run=dry_run,
                open_store=lambda other: open_store(other, encryption),
                progress=progress,
            ),
            dry_run=dry_run,
            exclusive=True,
        )
    finish(report, as_json=as_json)


@app.command("restore")
def restore_command(
    manifest: Annotated[
        str,
        typer.Argument(
            help="A run's manifest: s3://bucket/prefix/manifests/<run-id>.json or a local path.",
            show_default=False,
        ),
    ],
    attempt: Annotated[
        list[str] | None,
        typer.Option("--attempt", help="Restore only this attempt id (repeatable)."),
    ] = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    metrics_dir: MetricsDir = None,
    verbose: Verbose = False,
) -> None:
    """Put archived attempts back into the live tables, verifying each object's checksum first.

    Example: examctl restore ./examctl-archive/manifests/20250701T030000Z-1a2b3c.json --dry-run
    """
    with reported_errors():
        settings = resolve(database_url, None, None, log_format, metrics_dir, verbose)
        from examctl.jobs.restore import locate_manifest, parse_attempt_ids
        from examctl.stores.archive_store import open_store

        root, key = locate_manifest(manifest)
        attempt_ids = parse_attempt_ids(attempt or [])
        store = open_store(root)
    with _store_job(settings, store, "restoring objects") as (res, progress):
        from examctl.jobs.restore import restore

        report = res.run_job(
            "restore",
            lambda: restore(
                res.engine,
                store,
                key,
                attempt_ids=attempt_ids,
                dry_run=dry_run,
                progress=progress,
            ),
            dry_run=dry_run,
        )
    finish(report, as_json=as_json)


ProgressCallback = Callable[[int, int], None]


@contextlib.contextmanager
def _store_job(
    settings: Settings, store: ArchiveStore, description: str
) -> Iterator[tuple[Resources, ProgressCallback | None]]:
    """What archive and restore run in: errors reported, the store closed, a progress bar."""
    with (
        reported_errors(settings.secrets),
        contextlib.closing(store),
        opened(settings, use_redis=False) as res,
        _progress(description) as progress,
    ):
        yield res, progress


@contextlib.contextmanager
def _progress(description: str) -> Iterator[ProgressCallback | None]:
    """A Rich progress bar on a terminal (stderr), and none otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update


# --- demo -----------------------------------------------------------------------------------


@app.command("demo")
def demo_command(
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Fill the database with a realistic sample and run the jobs on it once.

    Example: examctl demo   (uses ./examctl.db, no server needed)
    """
    with reported_errors():
        settings = resolve(database_url, redis_url, redis_prefix, log_format, None, verbose)
    with reported_errors(settings.secrets), opened(settings) as res:
        from examctl.demo import run_demo

        code = run_demo(res)
    raise typer.Exit(code=code)


def main() -> None:
    """Entry point: Click's usage errors become one line and exit 2, like every other error."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="examctl", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as error:
        typer.echo(error.ctx.get_help() if error.ctx else "")
        code = 0
    except click_errors.UsageError as error:
        sys.stderr.write(f"examctl: error: {_usage_message(error)}\n")
        code = UsageError.exit_code
    except typer.Abort:
        sys.stderr.write("examctl: aborted\n")
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


def _usage_message(error: click_errors.UsageError) -> str:
    """Click's message, prefixed with the command, on one line."""
    where = error.ctx.command_path if error.ctx else "examctl"
    message = " ".join(error.format_message().split())
    return f"{where}: {message} (see '{where} --help')"
