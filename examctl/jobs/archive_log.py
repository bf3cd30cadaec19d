"""The archive's record in the database: runs, and each object's state (planned → deleted).

The one step that removes students' results is `delete_archived`: in a single transaction it
deletes an object's answers, events and attempts and marks the object `deleted`. It refuses (and
rolls back) when the rows it would delete are not exactly the rows the object holds, so no row
leaves the database unless a verified object holds it, and no attempt can be in two objects.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Connection,
    Engine,
    Text,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Uuid

from examctl.db.engine import db_now, is_postgres
from examctl.db.schema import (
    FINISHED_STATUSES,
    archive_runs,
    archived_objects,
    attempt_answers,
    exam_attempts,
    proctoring_events,
)
from examctl.db.types import UtcDateTime
from examctl.jobs.archive_export import IN_CHUNK, Exported
from examctl.stores.archive_store import StoredObject


@dataclass(frozen=True)
class RunRecord:
    id: str
    dest: str
    status: str
    cutoff: datetime
    started_at: datetime


@dataclass(frozen=True)
class ObjectRecord:
    id: int
    key: str
    state: str


def new_run_id(now: datetime) -> str:
    """Sortable and unique: `20250701T030000Z-1a2b3c`."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def object_key(run_id: str, day: date, number: int) -> str:
    return f"attempts/{day:%Y/%m/%d}/{run_id}-{number:04d}.jsonl.gz"


def manifest_key(run_id: str) -> str:
    return f"manifests/{run_id}.json"


def start_run(engine: Engine, dest: str, cutoff: datetime) -> RunRecord:
    with engine.begin() as conn:
        now = db_now(conn)
        run = RunRecord(new_run_id(now), dest, "running", cutoff, now)
        conn.execute(
            insert(archive_runs).values(
                id=run.id, dest=dest, started_at=now, cutoff=cutoff, status=run.status
            )
        )
    return run


def plan_object(engine: Engine, run_id: str, key: str, day: date, ids: Sequence[UUID]) -> int:
    """Record the object before a byte of it is written, so a rerun knows to clean it up."""
    with engine.begin() as conn:
        values = {
            "run_id": run_id,
            "key": key,
            "day": day.isoformat(),
            "state": "planned",
            "attempt_ids": [str(i) for i in ids],
            "attempts": len(ids),
            "planned_at": db_now(conn),
        }
        statement = insert(archived_objects).values(values).returning(archived_objects.c.id)
        return int(conn.execute(statement).scalar_one())


def delete_archived(
    engine: Engine, object_id: int, exported: Exported, stored: StoredObject, cutoff: datetime
) -> bool:
    """Delete the object's rows and mark it deleted, in one transaction; False (and nothing
    deleted) when the live rows differ from what the object holds."""
    try:
        with engine.begin() as conn:
            _delete_rows(conn, object_id, exported, stored, cutoff)
    except _RowsChanged:
        return False  # rolled back: every row is still live
    return True


class _RowsChanged(Exception):
    pass


def _delete_rows(
    conn: Connection, object_id: int, exported: Exported, stored: StoredObject, cutoff: datetime
) -> None:
    ids = exported.attempt_ids
    if is_postgres(conn) and exported.snapshot_xmin is not None:
        counts, changed = _delete_postgres(conn, exported, cutoff, exported.snapshot_xmin)
    else:
        counts, changed = _delete_chunked(conn, ids, cutoff), False
    if changed or counts != (len(ids), exported.answers, exported.events):
        raise _RowsChanged
    conn.execute(
        update(archived_objects)
        .where(archived_objects.c.id == object_id)
        .values(
            state="deleted",
            attempt_ids=[str(i) for i in ids],
            attempts=len(ids),
            answers=exported.answers,
            events=exported.events,
            bytes=stored.bytes,
            sha256=stored.sha256,
            deleted_at=db_now(conn),
        )
    )


_PG_DELETE = """
    WITH d AS (DELETE FROM {table} WHERE {where} RETURNING age(xmin) AS age)
    SELECT count(*), coalesce(bool_or(age <= :horizon), false) FROM d
"""
_PG_IDS = bindparam("ids", type_=ARRAY(Uuid()))
_PG_DELETES = {
    table: text(_PG_DELETE.format(table=table, where="attempt_id = ANY(:ids)")).bindparams(_PG_IDS)
    for table in ("attempt_answers", "proctoring_events")
} | {
    "exam_attempts": text(
        _PG_DELETE.format(
            table="exam_attempts",
            where="id = ANY(:ids) AND status = ANY(:finished) AND finished_at < :cutoff"
            " AND finished_at BETWEEN :first AND :last",
        )
    ).bindparams(
        _PG_IDS,
        bindparam("finished", type_=ARRAY(Text())),
        bindparam("cutoff", type_=UtcDateTime()),
        bindparam("first", type_=UtcDateTime()),
        bindparam("last", type_=UtcDateTime()),
    )
}


def _delete_postgres(
    conn: Connection, exported: Exported, cutoff: datetime, snapshot_xmin: int
) -> tuple[tuple[int, int, int], bool]:
    """Delete, and tell whether any row was written after the export began: age(xmin) counts
    the transactions since a row version was written, so a regrade meanwhile shows up here."""
    current = conn.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
    horizon = int(current) - snapshot_xmin
    assert exported.finished_between is not None
    first, last = exported.finished_between
    counts, changed = {}, False
    for table, statement in _PG_DELETES.items():
        params = {"ids": list(exported.attempt_ids), "horizon": horizon}
        if table == "exam_attempts":
            params.update(finished=list(FINISHED_STATUSES), cutoff=cutoff, first=first, last=last)
        count, newer = conn.execute(statement, params).one()
        counts[table], changed = int(count), changed or bool(newer)
    answers, events = counts["attempt_answers"], counts["proctoring_events"]
    return (counts["exam_attempts"], answers, events), changed


def _delete_chunked(
    conn: Connection, ids: Sequence[UUID], cutoff: datetime
) -> tuple[int, int, int]:
    """SQLite: the same deletes, in IN lists short enough for its parameter limit."""
    attempt = exam_attempts.c
    counts = [0, 0, 0]
    for start in range(0, len(ids), IN_CHUNK):
        chunk = ids[start : start + IN_CHUNK]
        counts[1] += conn.execute(
            delete(attempt_answers).where(attempt_answers.c.attempt_id.in_(chunk))
        ).rowcount
        counts[2] += conn.execute(
            delete(proctoring_events).where(proctoring_events.c.attempt_id.in_(chunk))
        ).rowcount
        counts[0] += conn.execute(
            delete(exam_attempts).where(
                attempt.id.in_(chunk),
                attempt.status.in_(FINISHED_STATUSES),
                attempt.finished_at < cutoff,
            )
        ).rowcount
    return counts[0], counts[1], counts[2]


def discard_object(engine: Engine, object_id: int) -> None:
    """The object was removed from the store (or never finished); its rows stayed live."""
    with engine.begin() as conn:
        conn.execute(
            update(archived_objects)
            .where(archived_objects.c.id == object_id, archived_objects.c.state == "planned")
            .values(state="discarded")
        )


def runs_without_manifest(engine: Engine) -> list[RunRecord]:
    """Runs that were killed, or failed before their manifest could be written."""
    run = archive_runs.c
    query = (
        select(run.id, run.dest, run.status, run.cutoff, run.started_at)
        .where(run.manifest_key.is_(None))
        .order_by(run.started_at, run.id)
    )
    with engine.connect() as conn:
        return [RunRecord(*row) for row in conn.execute(query)]


def planned_objects(engine: Engine, run_id: str) -> list[ObjectRecord]:
    obj = archived_objects.c
    query = (
        select(obj.id, obj.key, obj.state)
        .where(obj.run_id == run_id, obj.state == "planned")
        .order_by(obj.id)
    )
    with engine.connect() as conn:
        return [ObjectRecord(*row) for row in conn.execute(query)]


def deleted_objects(engine: Engine, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's archived objects for its manifest, streamed in the order they were written."""
    obj = archived_objects.c
    query = (
        select(
            obj.key,
            obj.bytes,
            obj.sha256,
            obj.day,
            obj.attempts.label("attempt_count"),
            obj.answers.label("answer_count"),
            obj.events.label("event_count"),
            obj.attempt_ids,
        )
        .where(obj.run_id == run_id, obj.state == "deleted")
        .order_by(obj.id)
    )
    with engine.connect() as conn:
        streamed = conn.execution_options(stream_results=True, yield_per=100)
        for row in streamed.execute(query).mappings():
            yield dict(row)


def finish_run(
    engine: Engine,
    run_id: str,
    *,
    status: str,
    manifest: StoredObject | None,
    error: str | None = None,
) -> None:
    """Record how the run ended; a recovered run keeps its first end time and error."""
    run = archive_runs.c
    values: dict[str, Any] = {"status": status}
    if error is not None:
        values["error"] = error
    if manifest is not None:
        values.update(manifest_key=manifest.key, manifest_sha256=manifest.sha256)
    with engine.begin() as conn:
        now = literal(db_now(conn), UtcDateTime())
        values["finished_at"] = func.coalesce(run.finished_at, now)
        conn.execute(update(archive_runs).where(run.id == run_id).values(values))
