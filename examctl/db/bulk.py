"""Set-based writes shared by the jobs: one statement per table and batch.

PostgreSQL gets one `UPDATE … FROM unnest(arrays)` or `INSERT … SELECT FROM unnest(arrays)`
(a single round trip, whatever the batch size); SQLite, which is embedded and has no round
trips to save, gets an executemany.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite

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
    insert = postgresql.insert if is_postgres(conn) else sqlite.insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=list(conflict),
        set_={name: statement.excluded[name] for name in update_columns},
        where=only_if(statement.excluded) if only_if is not None else None,
    )
    if not is_postgres(conn):
        conn.execute(statement, list(rows))
        return
    # The ON CONFLICT clause as SQLAlchemy compiles it, after one INSERT … SELECT FROM unnest.
    compiled = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    on_conflict = compiled[compiled.index(" ON CONFLICT ") :].replace("%", "%%")
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) "
        f"SELECT * FROM unnest({_pg_arrays(conn, names, columns)}){on_conflict}"
    )
    conn.exec_driver_sql(sql, _pg_params(rows, names, columns))


def _update_from_unnest(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: str,
    only_if: ColumnElement[bool] | None,
) -> int:
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    arrays = _pg_arrays(conn, names, columns)
    assignments = ", ".join(f"{n} = v.{n}" for n in names if n != key)
    guard = ""
    if only_if is not None:
        compiled = only_if.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        guard = f" AND {str(compiled).replace('%', '%%')}"
    # `key = ANY(keys)` makes the planner fetch exactly the batch's rows by index; joined on v
    # alone it may walk the primary key from its start up to the batch.
    key_type = _pg_array_type(conn, table.c[key])
    sql = (
        f"UPDATE {table.name} SET {assignments} "
        f"FROM unnest({arrays}) AS v({', '.join(names)}) "
        f"WHERE {table.name}.{key} = v.{key} "
        f"AND {table.name}.{key} = ANY(%({key})s::{key_type}){guard}"
    )
    return int(conn.exec_driver_sql(sql, _pg_params(rows, names, columns)).rowcount)


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


def _pg_arrays(conn: Connection, names: list[str], columns: list[Column[Any]]) -> str:
    """`%(name)s::type[], …`: one array parameter per column."""
    return ", ".join(
        f"%({n})s::{_pg_array_type(conn, c)}" for n, c in zip(names, columns, strict=True)
    )


def _pg_params(
    rows: Sequence[Mapping[str, Any]], names: list[str], columns: list[Column[Any]]
) -> dict[str, list[Any]]:
    return {n: _pg_array(c, [row[n] for row in rows]) for n, c in zip(names, columns, strict=True)}


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
