"""`db init` and `db check`: create or report what the schema of SPEC §3 lacks.

Works on an empty database and on one where the platform already created its tables: an index
counts as present when any index (or unique constraint) on the table starts with the same
columns, whatever its name.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, Index, Table, inspect
from sqlalchemy.engine.reflection import Inspector
from sqlalchemy.schema import CreateColumn

from examctl.db.schema import metadata


def check_schema(engine: Engine) -> list[str]:
    """Every missing table, column and index, as lines such as `column exam_attempts.score`."""
    with engine.connect() as conn:
        return _missing(inspect(conn))


def init_schema(engine: Engine) -> list[str]:
    """Create what is missing (idempotent); return what was created."""
    with engine.begin() as conn:
        missing = _missing(inspect(conn))
        metadata.create_all(conn, checkfirst=True)
        inspector = inspect(conn)
        for table in metadata.sorted_tables:
            _add_missing_columns(conn, inspector, table)
            _add_missing_indexes(conn, inspector, table)
    return missing


def _missing(inspector: Inspector) -> list[str]:
    missing: list[str] = []
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            missing.append(f"table {table.name}")
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing += [f"column {table.name}.{c.name}" for c in table.columns if c.name not in present]
        indexed = _indexed_prefixes(inspector, table.name)
        missing += [
            f"index {ix.name} on {table.name} ({', '.join(_columns(ix))})"
            for ix in sorted(table.indexes, key=lambda ix: str(ix.name))
            if not _covered(ix, indexed)
        ]
    return missing


def _add_missing_columns(conn: Connection, inspector: Inspector, table: Table) -> None:
    present = {c["name"] for c in inspector.get_columns(table.name)}
    for column in table.columns:
        if column.name not in present and not column.primary_key:
            ddl = CreateColumn(column).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")


def _add_missing_indexes(conn: Connection, inspector: Inspector, table: Table) -> None:
    indexed = _indexed_prefixes(inspector, table.name)
    for index in table.indexes:
        if not _covered(index, indexed):
            index.create(conn, checkfirst=False)


def _indexed_prefixes(inspector: Inspector, table_name: str) -> list[tuple[str | None, ...]]:
    found: list[tuple[str | None, ...]] = [
        tuple(ix["column_names"]) for ix in inspector.get_indexes(table_name)
    ]
    found += [tuple(uc["column_names"]) for uc in inspector.get_unique_constraints(table_name)]
    primary = inspector.get_pk_constraint(table_name).get("constrained_columns") or []
    return [*found, tuple(primary)]


def _covered(index: Index, indexed: list[tuple[str | None, ...]]) -> bool:
    wanted = _columns(index)
    return any(tuple(existing[: len(wanted)]) == wanted for existing in indexed)


def _columns(index: Index) -> tuple[str, ...]:
    return tuple(c.name for c in index.columns)
