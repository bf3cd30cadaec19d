"""One run at a time per database (SPEC §9), with locks that cannot go stale.

PostgreSQL: a session advisory lock on a dedicated connection; the server drops it when the
process dies. SQLite: ``flock`` on a file beside the database; the kernel drops it likewise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Connection, Engine, exc, text

from examctl.db.engine import is_postgres

logger = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock, derived from the job name."""
    digest = hashlib.sha256(f"examctl:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Yield True while holding the lock `name`, False when another process holds it."""
    if is_postgres(engine):
        with _postgres_lock(engine, name) as acquired:
            yield acquired
    else:
        with _file_lock(_sqlite_lock_path(engine, name)) as acquired:
            yield acquired


# The lock's connection sits idle while the job works on others: a server or role with
# idle_session_timeout (PostgreSQL 14+) would end it, and the lock with it, half way through
# a long run. Lifted for this one session.
_KEEP_IDLE_SESSION = (
    "SELECT set_config('idle_session_timeout', '0', false) "
    "WHERE current_setting('server_version_num')::int >= 140000"
)


@contextlib.contextmanager
def _postgres_lock(engine: Engine, name: str) -> Iterator[bool]:
    key = lock_key(name)
    with engine.connect() as conn:
        conn.execute(text(_KEEP_IDLE_SESSION))
        acquired = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar())
        conn.commit()
        try:
            yield acquired
        finally:
            if acquired:
                _postgres_unlock(conn, key, name)


def _postgres_unlock(conn: Connection, key: int, name: str) -> None:
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
    except exc.DBAPIError:
        # The session is gone, and the server released its lock with it: nothing to undo, and
        # no reason to hide the job's own outcome behind this error.
        logger.warning("lock connection lost; the server released the lock", extra={"lock": name})
        conn.invalidate()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _sqlite_lock_path(engine: Engine, name: str) -> Path:
    database = engine.url.database or "examctl.db"
    return Path(f"{database}.{name}.lock")
