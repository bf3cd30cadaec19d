"""clean-redis (SPEC §6): delete the Redis sessions that no attempt in progress needs any more.

SCAN `{prefix}*` (COUNT 1000: each call costs Redis about a millisecond); for each reply, one
database query says which of its attempts exist and which are IN_PROGRESS, and the keys to delete
go in one pipelined UNLINK. A key is deleted when

- its suffix is not a UUID (counted as `malformed`, and in `deleted`),
- its attempt is finished (a finished attempt never comes back to IN_PROGRESS), or
- its attempt does not exist and the key has been idle for `min_idle_seconds` (default 10 min).

The idle rule protects an attempt that starts while the scan runs: the platform may write the
session a moment before the transaction that creates the attempt's row commits, so "no such row"
can mean "not committed yet". Such a key was just written (OBJECT IDLETIME counts seconds since
the last read or write), while the session of an attempt that really is gone has lain untouched
for far longer. A key of an IN_PROGRESS attempt is never deleted, overdue or not: finish-expired
still needs its answers.

SCAN may return a key twice (when Redis resizes its table); keys are de-duplicated per run, so
`scanned = deleted + kept` holds exactly. The de-duplication set costs about 100 bytes per key.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from uuid import UUID

from sqlalchemy import Connection, Engine, select, text

from examctl.db.engine import is_postgres
from examctl.db.schema import STATUS_IN_PROGRESS, exam_attempts
from examctl.errors import JobSkipped, ServiceUnavailable, UsageError
from examctl.stores.redis_sessions import SCAN_COUNT, RedisSessions

logger = logging.getLogger(__name__)

DEFAULT_MIN_IDLE_SECONDS = 600

_PG_STATUSES = text(
    "SELECT id::text AS id, status = :live AS live FROM exam_attempts "
    "WHERE id = ANY(CAST(:ids AS uuid[]))"
)


@dataclass(frozen=True)
class CleanResult:
    scanned: int = 0
    deleted: int = 0
    kept: int = 0
    malformed: int = 0

    def __add__(self, other: CleanResult) -> CleanResult:
        return CleanResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def clean_redis(
    engine: Engine,
    sessions: RedisSessions | None,
    *,
    dry_run: bool = False,
    min_idle_seconds: int = DEFAULT_MIN_IDLE_SECONDS,
    scan_count: int = SCAN_COUNT,
) -> CleanResult:
    """Delete (or, with dry_run, count) stale session keys; JobSkipped when Redis is not set up."""
    if sessions is None:
        raise JobSkipped("Redis not configured (--redis-url / REDIS_URL)")
    if min_idle_seconds < 0:
        raise UsageError("--min-idle-minutes must be at least 0")
    sessions.ping()
    seen: set[bytes] = set()
    total = CleanResult()
    try:
        with _lookup_connection(engine) as conn:
            for reply in sessions.scan_batches(scan_count):
                keys = [key for key in dict.fromkeys(reply) if key not in seen]
                seen.update(keys)
                if keys:
                    total += _clean_batch(conn, sessions, keys, dry_run, min_idle_seconds)
    except ServiceUnavailable as error:
        raise ServiceUnavailable(str(error), partial=total) from error
    return total


def _clean_batch(
    conn: Connection,
    sessions: RedisSessions,
    keys: list[bytes],
    dry_run: bool,
    min_idle_seconds: int,
) -> CleanResult:
    attempt_of = {key: sessions.attempt_id_of(key) for key in keys}
    live = attempt_statuses(conn, [a for a in attempt_of.values() if a is not None])
    malformed = [key for key, attempt in attempt_of.items() if attempt is None]
    finished = [key for key, attempt in attempt_of.items() if live.get(attempt or "") is False]
    unknown = [key for key, attempt in attempt_of.items() if attempt and attempt not in live]
    doomed = malformed + finished + _idle(sessions, unknown, min_idle_seconds)
    if doomed and not dry_run:
        sessions.unlink_keys(doomed)
    logger.debug(
        "batch cleaned",
        extra={"action": "redis_batch", "scanned": len(keys), "deleted": len(doomed)},
    )
    return CleanResult(
        scanned=len(keys),
        deleted=len(doomed),
        kept=len(keys) - len(doomed),
        malformed=len(malformed),
    )


def attempt_statuses(conn: Connection, attempt_ids: Sequence[str]) -> dict[str, bool]:
    """One query: for each attempt that exists, whether it is IN_PROGRESS."""
    if not attempt_ids:
        return {}
    if is_postgres(conn):
        rows = conn.execute(_PG_STATUSES, {"ids": list(attempt_ids), "live": STATUS_IN_PROGRESS})
        found = {row.id: bool(row.live) for row in rows}
    else:
        attempts = exam_attempts.c
        query = select(attempts.id, attempts.status).where(
            attempts.id.in_([UUID(a) for a in attempt_ids])
        )
        found = {str(row.id): row.status == STATUS_IN_PROGRESS for row in conn.execute(query)}
    conn.rollback()  # end the read at once: no transaction stays open across the scan
    return found


def _idle(sessions: RedisSessions, keys: list[bytes], min_idle_seconds: int) -> list[bytes]:
    """The keys idle for at least `min_idle_seconds`; a key whose idle time is unknown stays."""
    if not keys or min_idle_seconds == 0:
        return keys
    idle = sessions.idle_seconds(keys)
    return [
        key
        for key, seconds in zip(keys, idle, strict=True)
        if seconds is not None and seconds >= min_idle_seconds
    ]


@contextlib.contextmanager
def _lookup_connection(engine: Engine) -> Iterator[Connection]:
    """One connection for the whole scan; on PostgreSQL in autocommit (one round trip a query)."""
    with engine.connect() as conn:
        if is_postgres(conn):
            conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
