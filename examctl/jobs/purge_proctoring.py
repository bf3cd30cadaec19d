"""purge-proctoring (SPEC §7): delete events past retention without stalling the platform.

Rows go in bounded batches, each its own short transaction, walking `occurred_at` upwards from
where the previous batch stopped (keyset), so no batch re-reads a range already deleted. A batch
first finds, through the `occurred_at` index, the time of the (batch_size + 1)-th oldest row
left (`upper`), then deletes the range `[after, upper)`: at most batch_size rows, found through
a bitmap of that index range so each heap page is visited once (on PostgreSQL; this came out
faster than the index-ordered scan the single big DELETE uses, and far faster than
picking `ctid`s and deleting by TID scan: see the benchmark). When more than batch_size rows share
one instant, that instant is deleted batch_size rows at a time by id. PostgreSQL and SQLite run
the same statements; a partitioned table is purged leaf by leaf.

When the table is range-partitioned on `occurred_at`, partitions that lie wholly before the cutoff
are detached and dropped (see db/partitions.py); their rows are counted first, so `deleted`
reports every event removed, and each dropped partition counts as one batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    TextClause,
    TextualSelect,
    bindparam,
    text,
)

from examctl.db import partitions
from examctl.db.engine import batch_errors, db_now, is_postgres
from examctl.db.schema import proctoring_events
from examctl.db.types import UtcDateTime
from examctl.errors import ExamctlError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_DAYS = 90
DEFAULT_BATCH_SIZE = 10_000
TABLE = proctoring_events.name

_UPPER = (
    "SELECT occurred_at FROM {table} WHERE occurred_at >= :after AND occurred_at < :cutoff "
    "ORDER BY occurred_at LIMIT 1 OFFSET :limit"
)
_DELETE_RANGE = "DELETE FROM {table} WHERE occurred_at >= :after AND occurred_at < :upper"
_DELETE_TIES = (
    "DELETE FROM {table} WHERE occurred_at = :after AND id IN "
    "(SELECT id FROM {table} WHERE occurred_at = :after LIMIT :limit)"
)
# A lost batch after a crash is harmless (the next run deletes those rows again), so a batch
# need not wait for its WAL flush; nor is JIT worth compiling for a 10,000-row statement.
_PG_BATCH_SETTINGS = (
    "SELECT set_config('synchronous_commit', 'off', true), set_config('jit', 'off', true)"
)
# The probe above must walk the index; the delete then reads its heap pages through a bitmap,
# each page once for all its rows, instead of one index-ordered fetch per row: with the same
# range, a whole purge ran 6-12 % faster (medians of five rounds, bench/purge_batch_shapes.py).
# Only a bitmap scan is left to the planner, so stale statistics cannot turn a batch into a seq
# scan.
_PG_DELETE_PLAN = (
    "SELECT set_config('enable_indexscan', 'off', true), set_config('enable_seqscan', 'off', true)"
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
    if dry_run:
        return _count(engine, cutoff, batch_size)
    result = PurgeResult()
    try:
        with batch_errors(engine):
            for removed in _removals(engine, cutoff, batch_size, should_stop):
                result += removed
    except ExamctlError as error:  # what was committed before stays deleted: it counts
        raise error.with_partial(result) from error
    return result


def _removals(
    engine: Engine, cutoff: datetime, batch_size: int, should_stop: Callable[[], bool]
) -> Iterator[PurgeResult]:
    """What each committed step removed: the old partitions, then every batch of every table."""
    if is_postgres(engine):
        yield _drop_old_partitions(engine, cutoff)
        with engine.connect() as conn:
            tables = partitions.leaf_tables(conn, TABLE)
    else:
        tables = [TABLE]
    for table in tables:
        if should_stop():
            return
        yield from _purge_table(engine, table, cutoff, batch_size, should_stop)


def _purge_table(
    engine: Engine, table: str, cutoff: datetime, batch_size: int, should_stop: Callable[[], bool]
) -> Iterator[PurgeResult]:
    upper_of, delete_range, delete_ties = _statements(table)
    after = _BEGINNING
    while not should_stop():
        started = time.monotonic()
        with engine.begin() as conn:
            if is_postgres(conn):
                conn.execute(text(_PG_BATCH_SETTINGS))
            upper = conn.execute(
                upper_of, {"after": after, "cutoff": cutoff, "limit": batch_size}
            ).scalar()
            if is_postgres(conn):
                conn.execute(text(_PG_DELETE_PLAN))
            if upper is None or upper > after:  # the last batch, or a range of <= batch_size
                bounds = {"after": after, "upper": cutoff if upper is None else upper}
                deleted = conn.execute(delete_range, bounds).rowcount
            else:  # more than batch_size rows share the instant `after`
                deleted = conn.execute(delete_ties, {"after": after, "limit": batch_size}).rowcount
        if deleted:
            _log_batch(table, deleted, time.monotonic() - started)
            yield PurgeResult(int(deleted), 1)
        if upper is None:
            return
        after = upper


def _statements(table: str) -> tuple[TextualSelect, TextClause, TextClause]:
    def stamp(name: str) -> BindParameter[datetime]:
        return bindparam(name, type_=UtcDateTime())

    upper_of = text(_UPPER.format(table=table)).bindparams(stamp("after"), stamp("cutoff"))
    return (
        upper_of.columns(occurred_at=UtcDateTime()),
        text(_DELETE_RANGE.format(table=table)).bindparams(stamp("after"), stamp("upper")),
        text(_DELETE_TIES.format(table=table)).bindparams(stamp("after")),
    )


# --- partitions (PostgreSQL) and the dry run ---------------------------------------------------


def _drop_old_partitions(engine: Engine, cutoff: datetime) -> PurgeResult:
    """Drop what earlier runs detached, then every partition wholly before `cutoff`."""
    with engine.connect() as conn:
        found = partitions.range_partitions(conn, TABLE, "occurred_at")
        concurrently = partitions.can_detach_concurrently(conn, found)
        orphans = partitions.orphaned_tables(conn)
    started = time.monotonic()
    detached = list(orphans)
    # A pending detach first: PostgreSQL allows no other concurrent detach until it is done.
    for partition in sorted(found, key=lambda p: not p.detach_pending):
        if partition.before(cutoff) and partitions.detach(
            engine, TABLE, partition, concurrently=concurrently
        ):
            detached.append(partition.name)
    # Killed from here on, the detached tables stay marked: the next run drops and counts them.
    result = PurgeResult(*partitions.drop_tables_counted(engine, detached))
    if result.batches:
        logger.info(
            "old partitions dropped",
            extra={
                "action": "partitions_dropped",
                "partitions": result.batches,
                "rows": result.deleted,
                "duration_s": round(time.monotonic() - started, 4),
            },
        )
    return result


def _count(engine: Engine, cutoff: datetime, batch_size: int) -> PurgeResult:
    """Dry run: what the purge would remove, partition by partition, changing nothing."""
    with engine.connect() as conn:
        if not is_postgres(conn):
            return _count_batches(_count_older(conn, TABLE, cutoff), batch_size)
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
