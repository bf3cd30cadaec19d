"""restore (SPEC §7): put archived attempts back into the live tables, from a run's manifest.

Each object is downloaded into a private temporary file while its SHA-256 is computed, and used
only if its size and checksum match the manifest (otherwise nothing of it is restored and the
run exits 1). Rows already live are skipped (ON CONFLICT DO NOTHING), so a restore can be
repeated. Each object is restored in one transaction. An attempt whose exam or questions no
longer exist cannot be restored (the foreign keys need them): it is counted as failed.
"""

from __future__ import annotations

import gzip
import logging
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import PurePosixPath
from typing import IO
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from examctl.db.engine import translate_db_errors
from examctl.db.schema import exams, questions
from examctl.errors import ExamctlError, JobFailed, UsageError
from examctl.jobs.archive_manifest import Manifest, ManifestObject, parse_manifest
from examctl.jobs.restore_rows import IN_CHUNK, Doc, advance_identities, insert_docs
from examctl.stores.archive_store import (
    ArchiveStore,
    Destination,
    ObjectMissing,
    VerificationFailed,
    parse_destination,
    read_digest,
)

logger = logging.getLogger(__name__)

BATCH_ATTEMPTS = 500

Progress = Callable[[int, int], None]  # (objects done, objects to read)


@dataclass(frozen=True)
class RestoreResult:
    attempts: int = 0  # rows inserted into exam_attempts
    answers: int = 0
    events: int = 0
    skipped: int = 0  # rows already live, left as they are
    objects: int = 0  # objects verified and read
    failed: int = 0  # attempts not restored: object missing or corrupt, or exam/question gone

    def __add__(self, other: RestoreResult) -> RestoreResult:
        names = [f.name for f in fields(RestoreResult)]
        return RestoreResult(*(getattr(self, n) + getattr(other, n) for n in names))


def locate_manifest(manifest: str) -> tuple[Destination, str]:
    """The archive's root and the manifest's key in it, from `s3://…/manifests/x.json` or a path.

    Keys in a manifest are relative to the root, so an archive copied elsewhere restores too.
    """
    where = parse_destination(manifest, what="MANIFEST")
    full = PurePosixPath(where.prefix if where.scheme == "s3" else str(where.path))
    if not full.name.endswith(".json"):
        raise UsageError(f"MANIFEST {manifest!r} should name a manifests/<run-id>.json file")
    depth = 2 if full.parent.name == "manifests" else 1
    root = full.parents[depth - 1]
    key = str(full.relative_to(root))
    if where.scheme == "s3":
        prefix = "" if str(root) == "." else str(root)
        return Destination("s3", bucket=where.bucket, prefix=prefix), key
    return parse_destination(str(root)), key


def parse_attempt_ids(values: Iterable[str]) -> list[UUID]:
    ids = []
    for value in values:
        try:
            ids.append(UUID(value))
        except ValueError:
            raise UsageError(f"--attempt {value!r} is not an attempt id (a UUID)") from None
    return ids


def restore(
    engine: Engine,
    store: ArchiveStore,
    manifest_key: str,
    *,
    attempt_ids: Sequence[UUID] = (),
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore (or, with dry_run, count) the manifest's attempts, or only `attempt_ids`."""
    manifest = read_manifest(store, manifest_key)
    wanted = frozenset(attempt_ids)
    unknown = wanted - manifest.attempt_ids
    if unknown:
        listed = ", ".join(sorted(map(str, unknown))[:5])
        raise UsageError(f"attempt(s) not in manifest {manifest_key}: {listed}")
    chosen = [obj for obj in manifest.objects if not wanted or obj.attempt_ids & wanted]
    result, problems = _restore_objects(engine, store, chosen, wanted, dry_run, progress)
    if result.failed:
        problems = problems or ["their exam or questions are no longer live"]
        message = f"{result.failed} attempt(s) not restored: {'; '.join(problems[:3])}"
        raise JobFailed(message, partial=result)
    return result


def _restore_objects(
    engine: Engine,
    store: ArchiveStore,
    chosen: list[ManifestObject],
    wanted: frozenset[UUID],
    dry_run: bool,
    progress: Progress | None,
) -> tuple[RestoreResult, list[str]]:
    """Restore each object; one that fails is counted, a store or database lost ends the run."""
    result, problems = RestoreResult(), []
    try:
        with translate_db_errors(engine):
            for done, obj in enumerate(chosen, 1):
                try:
                    result += _restore_object(engine, store, obj, wanted, dry_run)
                except JobFailed as error:  # this object only: the others are still restored
                    logger.error(
                        "%s", error, extra={"action": "object_not_restored", "key": obj.key}
                    )
                    problems.append(str(error))
                    lost = obj.attempt_ids & wanted if wanted else obj.attempt_ids
                    result += RestoreResult(failed=len(lost))
                if progress:
                    progress(done, len(chosen))
    except ExamctlError as error:  # the objects restored before it stay: report their counts
        raise error.with_partial(result) from error
    return result, problems


def read_manifest(store: ArchiveStore, key: str) -> Manifest:
    where = f"{store.destination}/{key}"
    with tempfile.TemporaryFile() as spool:
        try:
            read_digest(store, key, into=spool)
        except ObjectMissing:
            raise UsageError(f"manifest {where} not found") from None
        spool.seek(0)
        return parse_manifest(spool.read(), where)


def _restore_object(
    engine: Engine, store: ArchiveStore, obj: ManifestObject, wanted: frozenset[UUID], dry_run: bool
) -> RestoreResult:
    with tempfile.TemporaryFile() as spool:
        digest = read_digest(store, obj.key, into=spool)
        size = spool.tell()
        if (size, digest) != (obj.bytes, obj.sha256):
            raise VerificationFailed(
                f"object {obj.key} does not match its manifest ({size} bytes, SHA-256 {digest}; "
                f"expected {obj.bytes} bytes, {obj.sha256}): nothing restored from it"
            )
        spool.seek(0)
        try:
            with engine.connect() as conn, conn.begin() as transaction:
                result = RestoreResult(objects=1)
                for batch in _batches(spool, wanted):
                    result += _restore_batch(conn, batch)
                if dry_run:  # counted by doing it, so the counts are the real run's; undone
                    transaction.rollback()
                else:  # with the rows it covers: no crash can leave restored ids ahead of it
                    advance_identities(conn)
        except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as error:
            raise VerificationFailed(f"object {obj.key} is not gzip JSON Lines: {error}") from None
    logger.info("object restored", extra={"action": "object_restored", "key": obj.key})
    return result


def _batches(spool: IO[bytes], wanted: frozenset[UUID]) -> Iterator[list[Doc]]:
    batch: list[Doc] = []
    with gzip.GzipFile(fileobj=spool, mode="rb") as lines:
        for raw in lines:
            if not raw.strip():
                continue
            doc = Doc.parse(raw.decode())
            if wanted and doc.attempt_id not in wanted:
                continue
            batch.append(doc)
            if len(batch) >= BATCH_ATTEMPTS:
                yield batch
                batch = []
    if batch:
        yield batch


def _restore_batch(conn: Connection, docs: list[Doc]) -> RestoreResult:
    usable = _with_parents(conn, docs)
    offered = sum(1 + len(d.answers) + len(d.events) for d in usable)
    attempts, answers, events = insert_docs(conn, usable)
    skipped = offered - attempts - answers - events
    return RestoreResult(attempts, answers, events, skipped, 0, len(docs) - len(usable))


def _with_parents(conn: Connection, docs: list[Doc]) -> list[Doc]:
    """The docs whose exam and questions are live; the others cannot be inserted."""
    exam_ids = {d.exam_id for d in docs}
    question_ids = {q for d in docs for q in d.question_ids}
    live_exams = set(conn.execute(select(exams.c.id).where(exams.c.id.in_(exam_ids))).scalars())
    live_questions: set[UUID] = set()
    ids = list(question_ids)
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        live_questions |= set(
            conn.execute(select(questions.c.id).where(questions.c.id.in_(chunk))).scalars()
        )
    usable = []
    for doc in docs:
        if doc.exam_id in live_exams and doc.question_ids <= live_questions:
            usable.append(doc)
        else:
            logger.error(
                "attempt not restored: its exam or a question no longer exists",
                extra={"action": "attempt_orphaned", "attempt_id": str(doc.attempt_id)},
            )
    return usable
