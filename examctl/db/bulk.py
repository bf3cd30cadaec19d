"""Set-based writes shared by the jobs: one statement per table and batch.

PostgreSQL gets one `UPDATE … FROM unnest(arrays)` or `INSERT … SELECT FROM unnest(arrays)`
(a single round trip, whatever the batch size); SQLite, which is embedded and has no round
trips to save, gets an executemany.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Table,
    TextualSelect,
    any_,
    bindparam,
    cast,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from examctl.db.engine import is_postgres
from examctl.db.types import UtcDateTime


def bulk_update(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    key: str = "id",
    only_if: ColumnElement[bool] | None = None,
) -> int:
    """Set each row's columns on the row whose `key` matches; returns the rows updated.

    `only_if` is an extra guard on the target row (e.g. still IN_PROGRESS): rows that no longer
    match it are left alone and not counted.
    """
    if not rows:
        return 0
    if is_postgres(conn):
        return _update_from_unnest(conn, table, rows, key, only_if)
    return _update_many(conn, table, rows, key, only_if)


def upsert(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update_columns: Sequence[str],
    only_if: Callable[[Any], ColumnElement[bool]] | None = None,
) -> None:
    """INSERT … ON CONFLICT (conflict) DO UPDATE the given columns, where `only_if` holds.

    `only_if` receives the `excluded` row (the one proposed) and returns the condition. No two
    rows may share a `conflict` key (PostgreSQL refuses to update a row twice in one statement).
    """
    if not rows:
        return
    names = list(rows[0])
    statement: postgresql.Insert | sqlite.Insert
    if is_postgres(conn):
        # One INSERT … SELECT FROM unnest(one array per column): one round trip for the batch.
        source = _unnested(conn, table, names)
        statement = postgresql.insert(table).from_select(names, source)
        params: Any = _pg_params(table, rows, names)
    else:
        statement, params = sqlite.insert(table), list(rows)
    statement = statement.on_conflict_do_update(
        index_elements=list(conflict),
        set_={name: statement.excluded[name] for name in update_columns},
        where=only_if(statement.excluded) if only_if is not None else None,
    )
    conn.execute(statement, params)


def _update_from_unnest(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: str,
    only_if: ColumnElement[bool] | None,
) -> int:
    names = list(rows[0])
    v = _unnested(conn, table, names).subquery("v")
    # `key = ANY(keys)` makes the planner fetch exactly the batch's rows by index; joined on v
    # alone it may walk the primary key from its start up to the batch.
    keys = cast(bindparam("keys"), ARRAY(table.c[key].type))
    statement = (
        update(table)
        .values({n: v.c[n] for n in names if n != key})
        .where(table.c[key] == v.c[key], table.c[key] == any_(keys))
    )
    if only_if is not None:
        statement = statement.where(only_if)
    params = {**_pg_params(table, rows, names), "keys": [row[key] for row in rows]}
    return int(conn.execute(statement, params).rowcount)


def _update_many(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: str,
    only_if: ColumnElement[bool] | None,
) -> int:
    statement = update(table).where(table.c[key] == bindparam(f"b_{key}"))
    if only_if is not None:
        statement = statement.where(only_if)
    statement = statement.values({n: bindparam(f"b_{n}") for n in rows[0] if n != key})
    result = conn.execute(statement, [{f"b_{n}": v for n, v in row.items()} for row in rows])
    return int(result.rowcount)


_PG_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _unnested(conn: Connection, table: Table, names: list[str]) -> TextualSelect:
    """`SELECT … FROM unnest(one array parameter per column)`: the batch's rows, one round trip."""
    # Parameters named apart from the columns: update() reserves the columns' own names.
    arrays = ", ".join(f"CAST(:a_{n} AS {_pg_array_type(conn, table.c[n])})" for n in names)
    return text(f"SELECT * FROM unnest({arrays}) AS u({', '.join(names)})").columns(
        *(table.c[n] for n in names)
    )


def _pg_params(
    table: Table, rows: Sequence[Mapping[str, Any]], names: list[str]
) -> dict[str, list[Any]]:
    return {f"a_{n}": _pg_array(table.c[n], [row[n] for row in rows]) for n in names}


def _pg_array_type(conn: Connection, column: Column[Any]) -> str:
    if isinstance(column.type, UtcDateTime):
        return "timestamptz[]"
    return f"{column.type.compile(dialect=conn.dialect).lower()}[]"


def _pg_array(column: Column[Any], values: list[Any]) -> list[Any]:
    # jsonb travels as its text inside a jsonb[] array (None as JSON null, as SQLAlchemy's JSONB
    # stores it); psycopg adapts every other type itself.
    if column.type.compile(dialect=_PG_DIALECT) == "JSONB":
        return [json.dumps(v) for v in values]
    return values
