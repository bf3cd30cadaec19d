"""What every command shares: the Typer app, the shared options, error reporting, `main`.

Only typer and the standard library are imported at module level (see examctl/cli/__init__.py).
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
from examctl.settings import Settings

if TYPE_CHECKING:
    from examctl.resources import Resources
    from examctl.runner import JobReport

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

# purge-proctoring deletes past this, status counts what is past it
RetentionDays = Annotated[
    int,
    typer.Option(
        "--days", min=1, max=36_500, help="Events older than this many days are past retention."
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


def redis_note(settings: Settings, no_redis: bool) -> str:
    if no_redis:
        return "--no-redis: finished from the database alone; buffered Redis answers ignored"
    if not settings.redis_url:
        return "Redis not configured (--redis-url / REDIS_URL): Redis work skipped"
    return ""


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
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
