"""Range partitions on PostgreSQL: which lie wholly before a time, and removing them whole.

pg_partman and hand-made declarative partitioning look alike here: `pg_inherits` lists the
partitions and `relpartbound` their bounds. A partition whose (exclusive) upper bound is at or
before the cutoff holds only rows past retention, so it is detached and dropped: no row-by-row
DELETE, no dead tuples, no VACUUM debt.

Crash safety: a partition is marked (a table COMMENT) before it is detached. A run killed between
DETACH and DROP leaves a marked stand-alone table, which the next run drops and counts; a run
killed inside DETACH … CONCURRENTLY leaves the partition "detach pending", which the next run
FINALIZEs before anything else.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, exc, text

logger = logging.getLogger(__name__)

DROP_MARK = "examctl purge-proctoring: detached for dropping"
# A plain DETACH (no CONCURRENTLY) needs an ACCESS EXCLUSIVE lock on the parent, a DROP of a
# detached partition a lock on exam_attempts; queued behind a long transaction either would
# stall the platform's writes, so each waits this long, a few times, at most.
LOCK_TIMEOUT = "100ms"
LOCK_ATTEMPTS = 3

_UPPER_BOUND = re.compile(r"^FOR VALUES FROM \(.*\) TO \('((?:[^']|'')*)'\)$")

_PARTITIONS_SQL = """
SELECT c.oid::regclass::text AS name,
       pg_get_expr(c.relpartbound, c.oid) AS bound,
       i.inhdetachpending AS pending
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass(:table)
"""

_ORPHANS_SQL = """
SELECT c.oid::regclass::text
FROM pg_class c
JOIN pg_description d
  ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
WHERE d.description = :mark AND NOT c.relispartition AND c.relkind IN ('r', 'p')
"""


@dataclass(frozen=True)
class Partition:
    name: str  # as regclass prints it: schema-qualified and quoted where needed
    upper: datetime | None  # exclusive upper bound; None for MAXVALUE, DEFAULT or unreadable
    detach_pending: bool = False
    is_default: bool = False

    def before(self, cutoff: datetime) -> bool:
        """True when every row this partition can hold is older than `cutoff`."""
        return self.upper is not None and self.upper <= cutoff


def range_partitions(conn: Connection, table: str, column: str) -> list[Partition]:
    """The direct partitions of `table` if it is range-partitioned on `column` alone, else []."""
    keydef = conn.execute(
        text("SELECT pg_get_partkeydef(to_regclass(:table))"), {"table": table}
    ).scalar()
    if keydef != f"RANGE ({column})":
        return []
    rows = conn.execute(text(_PARTITIONS_SQL), {"table": table}).all()
    return sorted(
        (Partition(r.name, _upper_bound(r.bound), r.pending, r.bound == "DEFAULT") for r in rows),
        key=lambda p: (p.upper is None, p.upper or datetime.min.replace(tzinfo=UTC)),
    )


def leaf_tables(conn: Connection, table: str) -> list[str]:
    """The tables that hold `table`'s rows: its leaf partitions, or itself when not partitioned."""
    leaves = conn.execute(
        text("SELECT relid::regclass::text FROM pg_partition_tree(to_regclass(:t)) WHERE isleaf"),
        {"t": table},
    )
    return list(leaves.scalars()) or [table]


def orphaned_tables(conn: Connection) -> list[str]:
    """Tables an earlier run detached but did not get to drop."""
    return list(conn.execute(text(_ORPHANS_SQL), {"mark": DROP_MARK}).scalars())


def count_rows(conn: Connection, table: str) -> int:
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def drop_tables_counted(engine: Engine, tables: list[str]) -> tuple[int, int]:
    """Count the rows of detached tables, then drop them one by one; returns (rows, tables)
    dropped.

    Nothing writes to a detached table, so counting needs no lock beyond the read's own. A DROP
    takes ACCESS EXCLUSIVE on exam_attempts (the events' foreign key goes with the table) until
    its commit record is flushed; PostgreSQL frees the table's files after releasing its locks
    (a platform reading exam_attempts throughout waited at most 5 ms, bench/purge_proctoring.py).
    Each DROP is still a transaction of its own, so one slow drop never holds the lock for the
    others. Queued behind a long transaction on exam_attempts, a DROP would stall the platform
    behind it, so it waits briefly and otherwise leaves the (marked) table to the next run,
    which counts and drops it then.
    """
    if not tables:
        return 0, 0
    with engine.connect() as conn:
        counts = {table: count_rows(conn, table) for table in tables}
        conn.rollback()
    rows = dropped = 0
    for table in tables:
        started = time.monotonic()
        if not _with_lock_timeout(engine, f"DROP TABLE {table}", table):
            logger.warning(
                "exam_attempts busy: partition %s left for the next run",
                table,
                extra={"action": "drop_deferred", "table": table},
            )
            continue
        rows, dropped = rows + counts[table], dropped + 1
        logger.info(
            "partition dropped",
            extra={
                "action": "partition_dropped",
                "table": table,
                "rows": counts[table],
                "duration_s": round(time.monotonic() - started, 4),
            },
        )
    return rows, dropped


def detach(engine: Engine, parent: str, partition: Partition, *, concurrently: bool) -> bool:
    """Mark and detach `partition`; False when a plain DETACH could not get its lock in time."""
    if partition.detach_pending:
        # An earlier run was killed inside DETACH … CONCURRENTLY: complete it.
        _autocommit(engine, f"ALTER TABLE {parent} DETACH PARTITION {partition.name} FINALIZE")
        return True
    _autocommit(engine, f"COMMENT ON TABLE {partition.name} IS '{DROP_MARK}'")
    if concurrently:
        # Never blocks the platform's inserts; cannot run inside a transaction block.
        _autocommit(engine, f"ALTER TABLE {parent} DETACH PARTITION {partition.name} CONCURRENTLY")
        return True
    if _with_lock_timeout(
        engine, f"ALTER TABLE {parent} DETACH PARTITION {partition.name}", partition.name
    ):
        return True
    _autocommit(engine, f"COMMENT ON TABLE {partition.name} IS NULL")
    return False


def can_detach_concurrently(conn: Connection, partitions: list[Partition]) -> bool:
    """PostgreSQL 14+ and no DEFAULT partition (DETACH … CONCURRENTLY refuses one)."""
    version = int(conn.execute(text("SHOW server_version_num")).scalar_one())
    return version >= 140000 and not any(p.is_default for p in partitions)


def _with_lock_timeout(engine: Engine, statement: str, table: str) -> bool:
    """Run `statement` in a transaction that waits at most LOCK_TIMEOUT for its locks, a few
    times; False when it never got them (nothing changed)."""
    for attempt in range(1, LOCK_ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                conn.exec_driver_sql(statement)
            return True
        except exc.OperationalError as error:
            if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            logger.info(
                "table busy; retried",
                extra={"action": "lock_busy_retry", "table": table, "attempt": attempt},
            )
            time.sleep(0.2 * attempt)
    return False


def _autocommit(engine: Engine, sql: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(sql)


def _upper_bound(bound: str) -> datetime | None:
    """The exclusive upper bound of a range partition, None for MAXVALUE, DEFAULT or the odd."""
    match = _UPPER_BOUND.match(bound or "")
    if match is None:
        return None
    try:
        moment = datetime.fromisoformat(match.group(1).replace("''", "'"))
    except ValueError:
        return None  # 'infinity' and the like: not a partition to drop
    # A bound without a zone (timestamp, date) is read as UTC, the session's time zone.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
