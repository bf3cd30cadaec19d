"""Which attempts are due for archive, and their data objects (SPEC §7, clarification 8).

Objects are planned one at a time, in (finished_at, id) order from the partial index on
finished_at: up to `max_attempts` attempts that all finished on one UTC day. An object's bytes are
gzip JSON Lines, one self-contained attempt per line:
`{"attempt": {...every column...}, "answers": [...], "proctoring_events": [...]}`.

On PostgreSQL the server builds each line (row_to_json keeps every column the platform's tables
have, numerics exact, timestamps ISO 8601 in UTC) and the rows come through a server-side cursor
in small batches, so memory stays flat however large the backlog. SQLite lines are built here
from the same columns, in the same shapes.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import queue
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    Table,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Uuid

from examctl.db.engine import is_postgres
from examctl.db.schema import (
    FINISHED_STATUSES,
    STATUS_IN_PROGRESS,
    attempt_answers,
    exam_attempts,
    proctoring_events,
)
from examctl.db.types import UtcDateTime
from examctl.stores.archive_store import HashingWriter

_T = TypeVar("_T")

FETCH_ROWS = 200  # attempts per round trip of the server-side cursor (about 2.5 MB of JSON)
GZIP_LEVEL = 6  # gzip(1)'s default: a fifth of the CPU of level 9 for a few % more bytes
IN_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class PlannedObject:
    day: date
    attempt_ids: list[UUID]
    first_at: datetime  # finished_at of the first attempt: it bounds every scan of the object
    last: tuple[datetime, UUID]  # keyset position of the last attempt, for the next plan


@dataclass
class Exported:
    """What an object holds, counted while it was written."""

    attempt_ids: list[UUID] = field(default_factory=list)
    finished_between: tuple[datetime, datetime] | None = None  # the planned object's range
    answers: int = 0
    events: int = 0
    snapshot_xmin: int | None = None  # PostgreSQL: rows written from this xid on are newer


def due(cutoff: datetime) -> ColumnElement[bool]:
    """Finished before the cutoff; `status <> 'IN_PROGRESS'` lets the partial index serve it."""
    attempt = exam_attempts.c
    return and_(
        attempt.status != STATUS_IN_PROGRESS,
        attempt.status.in_(FINISHED_STATUSES),
        attempt.finished_at < cutoff,
    )


def plan_objects(engine: Engine, cutoff: datetime, max_attempts: int) -> Iterator[PlannedObject]:
    """The next object's attempts, planned when the caller asks for it (after its deletes)."""
    attempt = exam_attempts.c
    after: tuple[datetime, UUID] | None = None
    while True:
        query = select(attempt.id, attempt.finished_at).where(due(cutoff))
        if after is not None:
            query = query.where(
                attempt.finished_at >= after[0],
                or_(attempt.finished_at > after[0], attempt.id > after[1]),
            )
        query = query.order_by(attempt.finished_at, attempt.id).limit(max_attempts)
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return
        day = rows[0].finished_at.date()
        rows = [row for row in rows if row.finished_at.date() == day]
        after = (rows[-1].finished_at, rows[-1].id)
        yield PlannedObject(day, [row.id for row in rows], rows[0].finished_at, after)


def count_due(engine: Engine, cutoff: datetime, max_attempts: int) -> tuple[int, int, int, int]:
    """(attempts, answers, events, objects) an archive run would take now."""
    attempt = exam_attempts.c
    due_ids = select(attempt.id).where(due(cutoff))
    per_day = (
        select(func.count())
        .select_from(exam_attempts)
        .where(due(cutoff))
        .group_by(func.date(attempt.finished_at))
    )
    with engine.connect() as conn:
        days = conn.execute(per_day).scalars().all()
        answers = conn.execute(
            select(func.count()).where(attempt_answers.c.attempt_id.in_(due_ids))
        ).scalar_one()
        events = conn.execute(
            select(func.count()).where(proctoring_events.c.attempt_id.in_(due_ids))
        ).scalar_one()
    objects = sum(-(-n // max_attempts) for n in days)
    return sum(days), answers, events, objects


def export_object(engine: Engine, planned: PlannedObject, out: HashingWriter) -> Exported:
    """Write the attempts' gzip JSON Lines to `out`, in (finished_at, id) order."""
    between = (planned.first_at, planned.last[0])
    exported = Exported(finished_between=between)
    attempt_ids = planned.attempt_ids
    with (
        gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as gz,
        engine.connect() as conn,
    ):
        batches: Iterator[Sequence[Any]]
        if is_postgres(conn):
            exported.snapshot_xmin = conn.execute(
                text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            ).scalar_one()
            batches = _postgres_lines(conn, attempt_ids, between)
        else:
            batches = _python_lines(conn, attempt_ids)
        for batch in batches:
            lines = []
            for attempt_id, answers, events, line in batch:
                exported.attempt_ids.append(attempt_id)
                exported.answers += answers
                exported.events += events
                # JSON strings cannot hold a raw newline: any is whitespace from a `json` column.
                lines.append(line.replace("\n", " ") if "\n" in line else line)
            lines.append("")
            gz.write("\n".join(lines).encode())
    return exported


# The attempts are ordered before their lines are built, so PostgreSQL sorts narrow rows
# instead of spilling megabytes of JSON to disk; a nested loop keeps that order.
_POSTGRES_LINES = text(
    """
    SELECT a.id, ans.n, ev.n,
           json_build_object('attempt', row_to_json(a),
                             'answers', coalesce(ans.rows, '[]'::json),
                             'proctoring_events', coalesce(ev.rows, '[]'::json))::text
    FROM (SELECT * FROM exam_attempts
          WHERE id = ANY(:ids) AND finished_at BETWEEN :first AND :last
          ORDER BY finished_at, id) a
    CROSS JOIN LATERAL (
        SELECT array_to_json(array_agg(x ORDER BY x.id)) AS rows, count(*) AS n
        FROM attempt_answers x WHERE x.attempt_id = a.id) ans
    CROSS JOIN LATERAL (
        SELECT array_to_json(array_agg(e ORDER BY e.id)) AS rows, count(*) AS n
        FROM proctoring_events e WHERE e.attempt_id = a.id) ev
    """
).bindparams(
    bindparam("ids", type_=ARRAY(Uuid())),
    bindparam("first", type_=UtcDateTime()),
    bindparam("last", type_=UtcDateTime()),
)


def _postgres_lines(
    conn: Connection, attempt_ids: Sequence[UUID], between: tuple[datetime, datetime]
) -> Iterator[Sequence[Any]]:
    """Batches of lines from a server-side cursor, fetched one batch ahead in a thread, so the
    server builds the next batch while this process compresses the current one."""
    # A cursor is planned for its first rows (cursor_tuple_fraction 0.1); every row is read.
    conn.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    # max_row_buffer, not yield_per: with yield_per, partitions() kept every row (measured).
    streamed = conn.execution_options(stream_results=True, max_row_buffer=FETCH_ROWS)
    params = {"ids": list(attempt_ids), "first": between[0], "last": between[1]}
    result = streamed.execute(_POSTGRES_LINES, params)
    yield from prefetched(result.partitions(FETCH_ROWS))


def prefetched(batches: Iterator[_T], depth: int = 2) -> Iterator[_T]:
    """Iterate `batches` in a thread, up to `depth` ahead; its errors are raised here."""
    ready: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                ready.put(("batch", batch))
                if stop.is_set():
                    return
            ready.put(("end", None))
        except BaseException as error:  # handed to the consumer, which raises it
            ready.put(("error", error))

    thread = threading.Thread(target=produce, name="archive-fetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting for room, then let it finish
            with contextlib.suppress(queue.Empty):
                ready.get(timeout=0.1)
        thread.join()


def _python_lines(
    conn: Connection, attempt_ids: Sequence[UUID]
) -> Iterator[list[tuple[UUID, int, int, str]]]:
    """SQLite: read each chunk's rows table by table and build the same lines here."""
    attempt = exam_attempts.c
    for start in range(0, len(attempt_ids), IN_CHUNK):
        chunk = attempt_ids[start : start + IN_CHUNK]
        attempts = conn.execute(
            select(exam_attempts)
            .where(attempt.id.in_(chunk))
            .order_by(attempt.finished_at, attempt.id)
        ).all()
        answers = _children(conn, attempt_answers, chunk)
        events = _children(conn, proctoring_events, chunk)
        yield [
            (
                row.id,
                len(answers[row.id]),
                len(events[row.id]),
                _line(row, answers[row.id], events[row.id]),
            )
            for row in attempts
        ]


def _children(
    conn: Connection, table: Table, attempt_ids: Sequence[UUID]
) -> dict[UUID, list[Row[Any]]]:
    rows = conn.execute(
        select(table).where(table.c.attempt_id.in_(attempt_ids)).order_by(table.c.id)
    ).all()
    grouped: dict[UUID, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        grouped[row.attempt_id].append(row)
    return grouped


def _line(attempt: Row[Any], answers: list[Row[Any]], events: list[Row[Any]]) -> str:
    return (
        f'{{"attempt":{encode_row(attempt)},'
        f'"answers":[{",".join(map(encode_row, answers))}],'
        f'"proctoring_events":[{",".join(map(encode_row, events))}]}}'
    )


def encode_row(row: Row[Any]) -> str:
    """A row as a JSON object in the shapes row_to_json gives (numerics as exact numbers)."""
    fields = ",".join(f'"{name}":{encode_value(value)}' for name, value in row._mapping.items())
    return f"{{{fields}}}"


def encode_value(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        # str() of a finite Decimal is a valid JSON number with every digit kept (12.50 stays).
        return str(value) if value.is_finite() else json.dumps(str(value))
    if isinstance(value, UUID):
        return f'"{value}"'
    if isinstance(value, datetime):
        return f'"{value.isoformat()}"'
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
