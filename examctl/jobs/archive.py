"""archive (SPEC §7): move finished attempts older than `days` into verified objects in a store.

The protocol, for each object (one UTC day, at most `max_object_attempts` attempts):
 1. plan   - record the object (key, attempt ids, `planned`) before a byte of it is written;
 2. write  - stage and commit it in the store;
 3. verify - read its size and bytes back from the store and compare size and SHA-256;
 4. delete - one transaction deletes its attempts' answers, events and attempts and marks it
             `deleted`; it is refused (rolled back) if the live rows differ from the object's.
The run's manifest, written last (also when the run fails part way), lists every deleted object.

A rerun first finishes what a killed or failed run left. Objects still `planned` had none of
their rows deleted: they are removed from the store (with any partial upload) and their attempts
are archived again under new keys. A run whose manifest was never written gets it now, listing
the objects whose rows it deleted. So every attempt is live or in exactly one manifest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import timedelta
from functools import partial

from sqlalchemy import Engine

from examctl.db.engine import db_now, is_postgres
from examctl.errors import ExamctlError, ServiceUnavailable
from examctl.jobs import archive_log
from examctl.jobs.archive_export import (
    Exported,
    PlannedObject,
    count_due,
    export_object,
    plan_objects,
)
from examctl.jobs.archive_log import RunRecord
from examctl.jobs.archive_manifest import write_manifest
from examctl.stores.archive_store import (
    ArchiveStore,
    Destination,
    HashingWriter,
    StoredObject,
    open_store,
    parse_destination,
    verify_object,
    write_object,
)

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 180
DEFAULT_OBJECT_ATTEMPTS = 5000

Progress = Callable[[int, int], None]  # (attempts archived so far, attempts due)


@dataclass(frozen=True)
class ArchiveResult:
    attempts: int = 0
    answers: int = 0
    events: int = 0
    objects: int = 0
    bytes: int = 0

    def __add__(self, other: ArchiveResult) -> ArchiveResult:
        names = [f.name for f in fields(ArchiveResult)]
        return ArchiveResult(*(getattr(self, n) + getattr(other, n) for n in names))


def _reached(step: str) -> None:
    """A named step of the protocol. Does nothing; the SIGKILL tests replace it to die here."""


def archive(
    engine: Engine,
    store: ArchiveStore,
    *,
    days: int = DEFAULT_DAYS,
    max_object_attempts: int = DEFAULT_OBJECT_ATTEMPTS,
    dry_run: bool = False,
    open_store: Callable[[Destination], ArchiveStore] = open_store,
    progress: Progress | None = None,
) -> ArchiveResult:
    """Archive (or, with dry_run, count) every attempt finished more than `days` ago."""
    with engine.connect() as conn:
        cutoff = db_now(conn) - timedelta(days=days)
    if dry_run:
        attempts, answers, events, objects = count_due(engine, cutoff, max_object_attempts)
        return ArchiveResult(attempts, answers, events, objects)
    store.check()  # unreachable or unwritable: exit 3 before anything changes
    recover_runs(engine, store, open_store)
    due = count_due(engine, cutoff, max_object_attempts)[0] if progress else 0
    run = archive_log.start_run(engine, str(store.destination), cutoff)
    logger.info("archive run started", extra={"run_id": run.id, "dest": str(store.destination)})
    result, failure = ArchiveResult(), None
    with _Deleter(engine) as deleter:
        try:
            for number, planned in enumerate(plan_objects(engine, cutoff, max_object_attempts), 1):
                verified = _write_verified(engine, store, run, number, planned)
                result += deleter.settle()  # the previous object's rows, deleted meanwhile
                deleter.submit(partial(_delete_verified, engine, store, run, verified))
                if progress:
                    progress(result.attempts, due)
        except ExamctlError as error:
            failure = error
        result += deleter.settle()
    _close_run(engine, store, run, result, failure)
    return result


@dataclass(frozen=True)
class _Verified:
    """An object written and read back from the store; its rows are still live."""

    object_id: int
    key: str
    exported: Exported
    stored: StoredObject


def _write_verified(
    engine: Engine, store: ArchiveStore, run: RunRecord, number: int, planned: PlannedObject
) -> _Verified:
    """Steps 1-3: plan, write, verify. A failure removes the object (or leaves it planned, for
    the next run to remove, when the store is down); no row was deleted."""
    key = archive_log.object_key(run.id, planned.day, number)
    object_id = archive_log.plan_object(engine, run.id, key, planned.day, planned.attempt_ids)
    _reached("planned")
    exported = Exported()

    def fill(out: HashingWriter) -> None:
        nonlocal exported
        exported = export_object(engine, planned, out)

    try:
        stored = write_object(store, key, fill)
        _reached("stored")
        verify_object(store, stored)
        _reached("verified")
    except ExamctlError:
        _discard(engine, store, object_id, key)
        raise
    return _Verified(object_id, key, exported, stored)


def _delete_verified(
    engine: Engine, store: ArchiveStore, run: RunRecord, verified: _Verified
) -> ArchiveResult:
    """Step 4: delete the object's rows and mark it deleted, in one transaction."""
    exported, stored, key = verified.exported, verified.stored, verified.key
    if not exported.attempt_ids or not archive_log.delete_archived(
        engine, verified.object_id, exported, stored, run.cutoff
    ):
        logger.warning(
            "attempts changed while their object was written; they stay live for the next run",
            extra={"action": "object_discarded", "key": key},
        )
        _discard(engine, store, verified.object_id, key)
        return ArchiveResult()
    _reached("deleted")
    logger.info(
        "object archived",
        extra={"action": "object_archived", "key": key, "attempts": len(exported.attempt_ids)},
    )
    return ArchiveResult(
        len(exported.attempt_ids), exported.answers, exported.events, 1, stored.bytes
    )


class _Deleter:
    """Deletes an object's rows while the next object is written. On PostgreSQL that runs in a
    thread with a connection of its own, so the server deletes and builds JSON at the same
    time (measured: the deletes, foreign-key checks included, take about 40 % of a run). On
    SQLite, one writer at a time, it runs inline. Each object's own steps stay in order."""

    def __init__(self, engine: Engine) -> None:
        self.pool = ThreadPoolExecutor(1, "archive-delete") if is_postgres(engine) else None
        self.pending: Future[ArchiveResult] | None = None

    def submit(self, work: Callable[[], ArchiveResult]) -> None:
        if self.pool is not None:
            self.pending = self.pool.submit(work)
            return
        self.pending = Future()
        try:
            self.pending.set_result(work())
        except BaseException as error:  # raised by settle(), as the thread's would be
            self.pending.set_exception(error)

    def settle(self) -> ArchiveResult:
        """Wait for the pending delete; its result, or its error raised here."""
        pending, self.pending = self.pending, None
        return pending.result() if pending is not None else ArchiveResult()

    def __enter__(self) -> _Deleter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _discard(engine: Engine, store: ArchiveStore, object_id: int, key: str) -> None:
    """Remove an object whose rows stayed live; if the store is down, the next run does it."""
    try:
        store.remove(key)
    except ExamctlError as error:
        logger.warning("could not remove %s now (%s); the next run removes it", key, error)
        return
    archive_log.discard_object(engine, object_id)


def _close_run(
    engine: Engine,
    store: ArchiveStore,
    run: RunRecord,
    result: ArchiveResult,
    failure: ExamctlError | None,
) -> None:
    """Write the manifest (also after a failure), record the run, re-raise what went wrong."""
    _reached("manifest")
    try:
        manifest = write_manifest(engine, store, run, status="partial" if failure else "complete")
        _reached("manifest_written")
    except ExamctlError as error:
        failure = failure or error
        message = f"{failure}; the manifest of run {run.id} will be written by the next run"
        archive_log.finish_run(engine, run.id, status="failed", manifest=None, error=message)
        raise type(failure)(message, partial=result) from failure
    status = "failed" if failure else "complete"
    reason = str(failure) if failure else None
    archive_log.finish_run(engine, run.id, status=status, manifest=manifest, error=reason)
    logger.info(
        "archive manifest written",
        extra={"action": "manifest_written", "run_id": run.id, "key": manifest.key},
    )
    if failure is not None:
        message = (
            f"{failure}; run {run.id} archived {result.objects} object(s), listed in "
            f"{manifest.key}; the attempts not archived stay live"
        )
        raise type(failure)(message, partial=result) from failure


def recover_runs(
    engine: Engine,
    store: ArchiveStore,
    open_store: Callable[[Destination], ArchiveStore] = open_store,
) -> None:
    """Finish what killed or failed runs left: remove their unfinished objects, write their
    manifests. A run recorded with another destination is finished there; if that one cannot
    be reached now, it stays pending (its unfinished objects' rows are live, and are archived
    here meanwhile; no object of it can ever be listed twice) and this run goes on."""
    for run in archive_log.runs_without_manifest(engine):
        if run.dest == str(store.destination):
            _recover_run(engine, store, run)
            continue
        destination = parse_destination(run.dest)
        other = open_store(destination)
        try:
            if destination.path is not None and not destination.path.is_dir():
                raise ServiceUnavailable(f"directory {destination.path} does not exist here")
            other.check()
            _recover_run(engine, other, run)
        except ExamctlError as error:
            logger.warning(
                "run %s archived to %s, which cannot be reached now (%s): its manifest stays "
                "pending until a run can reach it",
                run.id,
                run.dest,
                error,
                extra={"action": "recovery_pending", "run_id": run.id},
            )
        finally:
            other.close()


def _recover_run(engine: Engine, store: ArchiveStore, run: RunRecord) -> None:
    for leftover in archive_log.planned_objects(engine, run.id):
        store.remove(leftover.key)
        archive_log.discard_object(engine, leftover.id)
        logger.info(
            "removed an object a killed run left unverified; its attempts stayed live",
            extra={"action": "object_removed", "run_id": run.id, "key": leftover.key},
        )
        _reached("discarded")
    status = "recovered" if run.status == "running" else "partial"
    store.remove(archive_log.manifest_key(run.id))  # with what a killed writer left of it
    manifest = write_manifest(engine, store, run, status=status)
    archive_log.finish_run(
        engine,
        run.id,
        status="recovered" if run.status == "running" else run.status,
        manifest=manifest,
    )
    logger.info(
        "wrote the manifest a killed or failed run left unwritten",
        extra={"action": "manifest_recovered", "run_id": run.id, "key": manifest.key},
    )
