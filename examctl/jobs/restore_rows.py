"""Rows of archived attempts back into the live tables, skipping those already there.

PostgreSQL turns each archived line back into rows itself (`json_populate_record` with the
table's own row type), so every column the table has comes back with its exact value: numerics
with their scale, timestamps with their zone, jsonb as it was. SQLite gets the same values typed
here, column by column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Connection, Table, Text, bindparam, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Uuid

from examctl.db.engine import is_postgres
from examctl.db.schema import attempt_answers, exam_attempts, proctoring_events
from examctl.db.types import Money, UtcDateTime

IN_CHUNK = 500


@dataclass(frozen=True)
class Doc:
    """One archived attempt: the line as stored, and its parts parsed (numbers exactly)."""

    line: str
    attempt: dict[str, Any]
    answers: list[dict[str, Any]]
    events: list[dict[str, Any]]
    attempt_id: UUID
    exam_id: UUID
    question_ids: frozenset[UUID]

    @classmethod
    def parse(cls, line: str) -> Doc:
        doc = json.loads(line, parse_float=Decimal)
        attempt, answers = doc["attempt"], doc["answers"]
        return cls(
            line,
            attempt,
            answers,
            doc["proctoring_events"],
            UUID(attempt["id"]),
            UUID(attempt["exam_id"]),
            frozenset(UUID(a["question_id"]) for a in answers),
        )


_PARTS = (
    (exam_attempts, "json_populate_record", "attempt"),
    (attempt_answers, "json_populate_recordset", "answers"),
    (proctoring_events, "json_populate_recordset", "proctoring_events"),
)


# Restored rows keep their archived ids (OVERRIDING SYSTEM VALUE), which a database restored
# from elsewhere (disaster recovery) has not generated yet: its next answers and events would
# collide with them. Each identity is moved past the largest id, never back.
_ADVANCE_IDENTITY = """
SELECT setval(s, m) FROM (
    SELECT pg_get_serial_sequence(:table, 'id')::regclass AS s, (SELECT max(id) FROM {table}) AS m
) ids
WHERE m > coalesce(pg_sequence_last_value(s), 0)
"""


def advance_identities(conn: Connection) -> None:
    """PostgreSQL: the id sequences of the tables restore writes ids into, past those ids."""
    if is_postgres(conn):
        for table in (attempt_answers, proctoring_events):
            conn.execute(text(_ADVANCE_IDENTITY.format(table=table.name)), {"table": table.name})


def insert_docs(conn: Connection, docs: Sequence[Doc]) -> tuple[int, int, int]:
    """Insert what is not live yet; returns the rows inserted per table (attempts first)."""
    if not docs:
        return 0, 0, 0
    if is_postgres(conn):
        counts = [
            _insert_postgres(conn, table, populate, part, docs) for table, populate, part in _PARTS
        ]
    else:
        counts = [
            _insert_sqlite(conn, exam_attempts, [d.attempt for d in docs]),
            _insert_sqlite(conn, attempt_answers, [a for d in docs for a in d.answers]),
            _insert_sqlite(conn, proctoring_events, [e for d in docs for e in d.events]),
        ]
    return counts[0], counts[1], counts[2]


def _insert_postgres(
    conn: Connection, table: Table, populate: str, part: str, docs: Sequence[Doc]
) -> int:
    # OVERRIDING SYSTEM VALUE keeps the archived ids, also for GENERATED ALWAYS identity columns.
    statement = text(
        f"INSERT INTO {table.name} OVERRIDING SYSTEM VALUE "
        f"SELECT r.* FROM unnest(:lines) AS l(line), "
        f"{populate}(NULL::{table.name}, l.line::json -> '{part}') AS r "
        "ON CONFLICT DO NOTHING"
    ).bindparams(bindparam("lines", type_=ARRAY(Text())))
    return int(conn.execute(statement, {"lines": [d.line for d in docs]}).rowcount)


def _insert_sqlite(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    binds = {
        c.name: bindparam(c.name, type_=Text() if isinstance(c.type, JSON) else c.type)
        for c in table.columns
    }
    statement = sqlite.insert(table).values(binds).on_conflict_do_nothing()
    values = [{c.name: _decode(c.type, row.get(c.name)) for c in table.columns} for row in rows]
    return int(conn.execute(statement, values).rowcount)


def _decode(kind: Any, value: Any) -> Any:
    """An archived JSON value as the Python value the column type binds."""
    if value is None:
        return None  # a JSON column gets SQL NULL, as on PostgreSQL
    if isinstance(kind, JSON):
        return json.dumps(_floats(value))
    if isinstance(kind, Uuid):
        return UUID(value)
    if isinstance(kind, UtcDateTime):
        return datetime.fromisoformat(value)
    if isinstance(kind, Money):
        return Decimal(str(value))  # parsed exactly (12.50 stays 12.50), or a decimal string
    return value


def _floats(value: Any) -> Any:
    """JSON documents hold floats, as they did before they were archived."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    return value
