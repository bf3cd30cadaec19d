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

Replies are checked by four worker threads (each with its own database connection) while the next
SCAN is on its way, so Redis, PostgreSQL and Python work at the same time.

SCAN may return a key twice (when Redis resizes its table); keys are de-duplicated per run, so
`scanned = deleted + kept` holds exactly. The de-duplication set costs about 100 bytes per key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from uuid import UUID

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import DBAPIError

from examctl.db.engine import is_postgres
from examctl.db.schema import STATUS_IN_PROGRESS, exam_attempts
from examctl.errors import JobSkipped, ServiceUnavailable, UsageError
from examctl.stores.redis_sessions import SCAN_COUNT, RedisSessions

logger = logging.getLogger(__name__)

DEFAULT_MIN_IDLE_SECONDS = 600
LOOKUP_WORKERS = 4

# One round trip, one row: the ids travel as one comma-separated string and come back as two
# (several times cheaper for the driver than arrays of 1,000 UUIDs each way).
_PG_STATUSES = (
    "SELECT string_agg(id::text, ',') FILTER (WHERE status = %(live)s), "
    "string_agg(id::text, ',') FILTER (WHERE status <> %(live)s) "
    "FROM exam_attempts WHERE id = ANY(string_to_array(%(ids)s, ',')::uuid[])"
)
# Knowing the list's length, the planner picks a sequential scan of every attempt for a long
# one on a table of up to a few hundred thousand rows, which then costs each lookup time in
# proportion to the table. The lookup connections therefore price sequential scans out (and
# reset that before they go back to the pool): the primary key serves every lookup.
_PG_LOOKUP_SETTINGS = "SET enable_seqscan = off"


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
    workers = LOOKUP_WORKERS if is_postgres(engine) else 1
    try:
        with _Lookups(engine) as lookups, ThreadPoolExecutor(workers, "clean-redis") as pool:
            pending: deque[Future[CleanResult]] = deque()
            for reply in sessions.scan_batches(scan_count):
                keys = [key for key in dict.fromkeys(reply) if key not in seen]
                seen.update(keys)
                if keys:
                    args = (lookups.connection, sessions, keys, dry_run, min_idle_seconds)
                    pending.append(pool.submit(_clean_batch, *args))
                while len(pending) > workers:  # a bounded number of replies in flight
                    total += pending.popleft().result()
            while pending:
                total += pending.popleft().result()
    except ServiceUnavailable as error:
        raise error.with_partial(total) from error
    return total


def _clean_batch(
    connection: Callable[[], Connection],
    sessions: RedisSessions,
    keys: list[bytes],
    dry_run: bool,
    min_idle_seconds: int,
) -> CleanResult:
    attempt_of = {key: sessions.attempt_id_of(key) for key in keys}
    live = attempt_statuses(connection(), [a for a in attempt_of.values() if a is not None])
    malformed = [key for key, attempt in attempt_of.items() if attempt is None]
    _refuse_a_prefix_that_misses(sessions, malformed)
    finished = [key for key, attempt in attempt_of.items() if live.get(attempt or "") is False]
    unknown = [key for key, attempt in attempt_of.items() if attempt and attempt not in live]
    if min_idle_seconds == 0:
        finished, unknown = finished + unknown, []
    idle, untracked = sessions.unlink_stale(
        malformed + finished, unknown, min_idle_seconds, dry_run=dry_run
    )
    if untracked:
        logger.warning(
            "%d sessions of attempts that do not exist kept: Redis keeps no idle time under an "
            "LFU maxmemory-policy (--min-idle-minutes 0 deletes them without waiting)",
            untracked,
            extra={"action": "idle_time_untracked", "keys": untracked},
        )
    deleted = len(malformed) + len(finished) + idle
    logger.debug(
        "batch cleaned", extra={"action": "redis_batch", "scanned": len(keys), "deleted": deleted}
    )
    return CleanResult(
        scanned=len(keys), deleted=deleted, kept=len(keys) - deleted, malformed=len(malformed)
    )


def _refuse_a_prefix_that_misses(sessions: RedisSessions, malformed: list[bytes]) -> None:
    """A prefix one character short (`exam:attempt`) would make every session 'malformed' and
    delete them all, live ones included: refused before this batch deletes anything."""
    for key in malformed:
        fitting = sessions.prefix_fitting(key)
        if fitting is not None:
            raise UsageError(
                f"--redis-prefix '{sessions.prefix}' does not end where the attempt id starts "
                f"(keys look like '{fitting}<attempt id>'): did you mean '{fitting}'? "
                "Nothing was deleted from such keys"
            )


def attempt_statuses(conn: Connection, attempt_ids: Sequence[str]) -> dict[str, bool]:
    """One query: for each attempt that exists, whether it is IN_PROGRESS."""
    if not attempt_ids:
        return {}
    if is_postgres(conn):
        # The driver's cursor directly: this runs once per 1,000 keys, row objects cost more.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(_PG_STATUSES, {"ids": ",".join(attempt_ids), "live": STATUS_IN_PROGRESS})
        live, done = cursor.fetchone()
        found = dict.fromkeys(live.split(",") if live else (), True)
        found.update(dict.fromkeys(done.split(",") if done else (), False))
    else:
        attempts = exam_attempts.c
        query = select(attempts.id, attempts.status).where(
            attempts.id.in_([UUID(a) for a in attempt_ids])
        )
        found = {str(row.id): row.status == STATUS_IN_PROGRESS for row in conn.execute(query)}
    conn.rollback()  # end the read at once: no transaction stays open across the scan
    return found


class _Lookups:
    """One database connection per worker thread (autocommit on PostgreSQL: one round trip a
    query, and no transaction held open across the scan), all closed at the end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.local = threading.local()
        self.opened: list[Connection] = []
        self.lock = threading.Lock()

    def connection(self) -> Connection:
        conn: Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.engine.connect()
            if is_postgres(conn):
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql(_PG_LOOKUP_SETTINGS)
            self.local.conn = conn
            with self.lock:
                self.opened.append(conn)
        return conn

    def __enter__(self) -> _Lookups:
        return self

    def __exit__(self, *_: object) -> None:
        for conn in self.opened:
            if is_postgres(conn) and not conn.invalidated:
                with contextlib.suppress(DBAPIError):
                    conn.exec_driver_sql("RESET enable_seqscan")
            conn.close()
