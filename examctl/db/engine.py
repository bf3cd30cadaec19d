"""Engines for PostgreSQL (psycopg 3) and SQLite, the database clock, and connection errors."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text

from examctl.errors import JobFailed, ServiceUnavailable, UsageError, first_line
from examctl.settings import redact_url

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10


def make_engine(database_url: str) -> Engine:
    """An engine on psycopg 3 for PostgreSQL, or on the standard library for SQLite."""
    if database_url.startswith("sqlite"):
        return _sqlite_engine(database_url)
    url = make_url(database_url)
    # The URL's own `options` (a search_path, say) are kept: connect_args would replace them.
    given = url.query.get("options", ())
    options = " ".join([given] if isinstance(given, str) else given)
    return create_engine(
        url.difference_update_query(["options"]),
        pool_pre_ping=True,
        pool_size=2,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "examctl",
            # UTC sessions: timestamps read back are UTC whatever the server's setting.
            "options": f"{options} -c timezone=UTC".strip(),
        },
    )


def _sqlite_engine(database_url: str) -> Engine:
    engine = create_engine(database_url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the write lock up front: two examctl processes on one SQLite file
        # serialise their transactions instead of both reading the same overdue attempts.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def is_postgres(conn_or_engine: Connection | Engine) -> bool:
    return conn_or_engine.dialect.name == "postgresql"


def db_now(conn: Connection) -> datetime:
    """The database's clock (SPEC §5: never the host's). SQLite's clock is the host's."""
    if is_postgres(conn):
        value: datetime = conn.execute(text("SELECT now()")).scalar_one()
        return value.astimezone(UTC)
    return datetime.now(UTC)


@contextlib.contextmanager
def translate_db_errors(engine: Engine) -> Iterator[None]:
    """A lost or refused connection → ServiceUnavailable (exit 3); missing tables → exit 2."""
    try:
        yield
    except exc.DBAPIError as error:
        if _is_missing_table(error):
            raise UsageError(
                "the database lacks examctl's tables: run `examctl db init` "
                "(`examctl db check` lists what is missing)"
            ) from error
        if not _is_connection_error(error):
            raise
        where = redact_url(engine.url.render_as_string(hide_password=False))
        raise ServiceUnavailable(
            f"database unreachable at {where}: {driver_reason(error)}"
        ) from error


def driver_reason(error: exc.DBAPIError) -> str:
    """The first line of the driver's message: no SQL, parameters or links to docs."""
    return first_line(error.orig) if error.orig is not None else type(error).__name__


@contextlib.contextmanager
def batch_errors(engine: Engine) -> Iterator[None]:
    """translate_db_errors for a job of short batches: besides a lost connection (exit 3), a
    batch the database refused (a lock or statement timeout, a deadlock, a full disk) is
    JobFailed (exit 1): it rolled back, and what committed before it stands."""
    try:
        with translate_db_errors(engine):
            yield
    except exc.OperationalError as error:
        raise JobFailed(f"a batch failed and was rolled back: {driver_reason(error)}") from error


def _is_missing_table(error: exc.DBAPIError) -> bool:
    message = str(error.orig).lower()
    return "no such table" in message or ("relation" in message and "does not exist" in message)


def _is_connection_error(error: exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if not isinstance(error, exc.OperationalError):
        return False
    message = str(error.orig).lower()
    markers = ("connect", "terminat", "server closed", "no such file", "unable to open", "ssl")
    return any(marker in message for marker in markers)
