"""purge-proctoring (SPEC §7): delete events past retention without stalling the platform.

Rows go in bounded batches, each its own short transaction, walking `occurred_at` upwards from
where the previous batch stopped (keyset), so no batch re-reads the ranges already deleted. On
PostgreSQL a batch is one statement: the oldest `batch_size` rows are picked through the
`occurred_at` index and deleted by `ctid` (a TID scan, the fastest bounded shape measured). A
`ctid` is only unique within one table, so a partitioned table is purged leaf by leaf. SQLite gets
the same keyset batches by rowid.

When the table is range-partitioned on `occurred_at`, partitions that lie wholly before the cutoff
are detached and dropped (see db/partitions.py); their rows are counted first, so `deleted`
reports every event removed, and each dropped partition counts as one batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, delete, func, select, text

from examctl.db import partitions
from examctl.db.engine import db_now, is_postgres
from examctl.db.schema import proctoring_events
from examctl.db.types import UtcDateTime
from examctl.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 90
DEFAULT_BATCH_SIZE = 10_000
TABLE = proctoring_events.name

# One statement per batch. `ctid = ANY(ARRAY(…))` makes it a TID scan (a `ctid IN (subquery)`
# may be planned as a join over the whole table); the outer `occurred_at < :cutoff` re-checks a
# row that a concurrent update moved. RETURNING nothing but a count keeps the reply small.
_PG_BATCH = """
WITH batch AS MATERIALIZED (
    SELECT ctid, occurred_at FROM {table}
    WHERE occurred_at >= :after AND occurred_at < :cutoff
    ORDER BY occurred_at
    LIMIT :limit
), gone AS (
    DELETE FROM {table}
    WHERE ctid = ANY(ARRAY(SELECT ctid FROM batch)) AND occurred_at < :cutoff
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deleted, (SELECT max(occurred_at) FROM batch) AS last
"""
# A lost batch after a crash is harmless (the next run deletes those rows again), so a batch
# need not wait for its WAL flush; nor is JIT worth compiling for a 10,000-row statement.
_PG_BATCH_SETTINGS = (
    "SELECT set_config('synchronous_commit', 'off', true), set_config('jit', 'off', true)"
)
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)  # before any event: where the first batch starts


@dataclass(frozen=True)
class PurgeResult:
    deleted: int = 0
    batches: int = 0

    def __add__(self, other: PurgeResult) -> PurgeResult:
        return PurgeResult(self.deleted + other.deleted, self.batches + other.batches)


def purge_proctoring(
    engine: Engine,
    *,
    days: int = DEFAULT_DAYS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> PurgeResult:
    """Delete (or, with dry_run, count) the events older than `days` before the database's now."""
    if days < 1:
        raise UsageError("--days must be at least 1")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    with engine.connect() as conn:
        cutoff = db_now(conn) - timedelta(days=days)
    logger.info(
        "purging proctoring events",
        extra={"action": "purge_started", "cutoff": cutoff.isoformat(), "dry_run": dry_run},
    )
    if not is_postgres(engine):
        if dry_run:
            with engine.connect() as conn:
                return _count_batches(_count_older(conn, TABLE, cutoff), batch_size)
        return _purge_sqlite(engine, cutoff, batch_size, should_stop)
    if dry_run:
        return _count_postgres(engine, cutoff, batch_size)
    result = _drop_old_partitions(engine, cutoff)
    with engine.connect() as conn:
        leaves = partitions.leaf_tables(conn, TABLE)
    for leaf in leaves:
        if should_stop():
            break
        result += _purge_table_postgres(engine, leaf, cutoff, batch_size, should_stop)
    return result


# --- PostgreSQL -----------------------------------------------------------------------------


def _purge_table_postgres(
    engine: Engine, table: str, cutoff: datetime, batch_size: int, should_stop: Callable[[], bool]
) -> PurgeResult:
    statement = text(_PG_BATCH.format(table=table)).bindparams(
        bindparam("after", type_=UtcDateTime()), bindparam("cutoff", type_=UtcDateTime())
    )
    total, after = PurgeResult(), _BEGINNING
    while not should_stop():
        started = time.monotonic()
        with engine.begin() as conn:
            conn.execute(text(_PG_BATCH_SETTINGS))
            row = conn.execute(
                statement, {"after": after, "cutoff": cutoff, "limit": batch_size}
            ).one()
        if row.last is None:
            return total
        _log_batch(table, row.deleted, time.monotonic() - started)
        total += PurgeResult(int(row.deleted), 1)
        after = row.last
    return total


def _drop_old_partitions(engine: Engine, cutoff: datetime) -> PurgeResult:
    """Drop what earlier runs detached, then every partition wholly before `cutoff`."""
    with engine.connect() as conn:
        found = partitions.range_partitions(conn, TABLE, "occurred_at")
        concurrently = partitions.can_detach_concurrently(conn, found)
        orphans = partitions.orphaned_tables(conn)
    result = PurgeResult()
    for table in orphans:
        result += PurgeResult(partitions.drop_table_counted(engine, table), 1)
    # A pending detach first: PostgreSQL allows no other concurrent detach until it is done.
    for partition in sorted(found, key=lambda p: not p.detach_pending):
        if partition.before(cutoff) and partitions.detach(
            engine, TABLE, partition, concurrently=concurrently
        ):
            result += PurgeResult(partitions.drop_table_counted(engine, partition.name), 1)
    return result


def _count_postgres(engine: Engine, cutoff: datetime, batch_size: int) -> PurgeResult:
    """Dry run: what the purge would remove, partition by partition, changing nothing."""
    with engine.connect() as conn:
        found = partitions.range_partitions(conn, TABLE, "occurred_at")
        whole = [p.name for p in found if p.before(cutoff)] + partitions.orphaned_tables(conn)
        result = PurgeResult(sum(partitions.count_rows(conn, t) for t in whole), len(whole))
        for leaf in partitions.leaf_tables(conn, TABLE):
            if not whole or not _descends_from(conn, leaf, whole):
                result += _count_batches(_count_older(conn, leaf, cutoff), batch_size)
    return result


def _descends_from(conn: Connection, leaf: str, tables: list[str]) -> bool:
    ancestors = conn.execute(
        text("SELECT relid::regclass::text FROM pg_partition_ancestors(to_regclass(:t))"),
        {"t": leaf},
    ).scalars()
    return any(a in tables for a in ancestors)


# --- SQLite ---------------------------------------------------------------------------------


def _purge_sqlite(
    engine: Engine, cutoff: datetime, batch_size: int, should_stop: Callable[[], bool]
) -> PurgeResult:
    events = proctoring_events.c
    total, after = PurgeResult(), _BEGINNING
    while not should_stop():
        batch = (
            select(events.id, events.occurred_at)
            .where(events.occurred_at >= after, events.occurred_at < cutoff)
            .order_by(events.occurred_at)
            .limit(batch_size)
            .subquery()
        )
        started = time.monotonic()
        with engine.begin() as conn:
            last = conn.execute(select(func.max(batch.c.occurred_at))).scalar()
            if last is None:
                return total
            deleted = conn.execute(
                delete(proctoring_events).where(
                    events.id.in_(select(batch.c.id)), events.occurred_at < cutoff
                )
            ).rowcount
        _log_batch(TABLE, deleted, time.monotonic() - started)
        total += PurgeResult(int(deleted), 1)
        after = last
    return total


# --- both -----------------------------------------------------------------------------------


def _count_older(conn: Connection, table: str, cutoff: datetime) -> int:
    statement = text(f"SELECT count(*) FROM {table} WHERE occurred_at < :cutoff").bindparams(
        bindparam("cutoff", type_=UtcDateTime())
    )
    return int(conn.execute(statement, {"cutoff": cutoff}).scalar_one())


def _count_batches(rows: int, batch_size: int) -> PurgeResult:
    return PurgeResult(rows, math.ceil(rows / batch_size))


def _log_batch(table: str, deleted: int, seconds: float) -> None:
    logger.debug(
        "batch deleted",
        extra={
            "action": "purge_batch",
            "table": table,
            "rows": int(deleted),
            "duration_s": round(seconds, 4),
        },
    )
