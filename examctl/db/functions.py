"""SQL expressions that need different spellings on PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from examctl.db.types import UtcDateTime


class plus_minutes(FunctionElement[Any]):
    """`timestamp + minutes`, with minutes taken from a column."""

    type = UtcDateTime()
    inherit_cache = True


@compiles(plus_minutes, "postgresql")
def _plus_minutes_pg(element: plus_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    timestamp, minutes = list(element.clauses)
    return (
        f"({compiler.process(timestamp, **kw)} "
        f"+ make_interval(mins => {compiler.process(minutes, **kw)}))"
    )


@compiles(plus_minutes, "sqlite")
def _plus_minutes_sqlite(element: plus_minutes, compiler: SQLCompiler, **kw: Any) -> str:
    # Same text layout as the stored values, so the result compares correctly as a string.
    timestamp, minutes = list(element.clauses)
    return (
        f"strftime('%Y-%m-%d %H:%M:%f', {compiler.process(timestamp, **kw)}, "
        f"{compiler.process(minutes, **kw)} || ' minutes')"
    )
