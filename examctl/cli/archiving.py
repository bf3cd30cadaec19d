"""archive and restore: old attempts out to S3 or a directory, and back into the live tables.

Registered in examctl/cli/__init__.py, in the order `examctl --help` lists them.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated

import typer

from examctl.cli.frame import (
    DatabaseUrl,
    DryRun,
    JsonFlag,
    LogFormat,
    MetricsDir,
    Verbose,
    finish,
    opened,
    reported_errors,
    resolve,
)
from examctl.errors import UsageError
from examctl.settings import Settings

if TYPE_CHECKING:
    from examctl.resources import Resources
    from examctl.stores.archive_store import ArchiveStore

ArchiveDest = Annotated[
    str,
    typer.Option(
        "--dest",
        envvar="EXAMCTL_ARCHIVE_DEST",
        help="s3://bucket/prefix, file:///path or a directory.",
    ),
]


def archive_command(
    days: Annotated[
        int,
        typer.Option(
            "--days",
            max=36_500,  # as RetentionDays: a cutoff 100 years back; far beyond, dates overflow
            help="Archive attempts finished more than this many days ago.",
        ),
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
