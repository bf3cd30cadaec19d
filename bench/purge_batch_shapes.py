"""Benchmark: how one purge batch should delete its rows, on the plain events table.

    python bench/purge_batch_shapes.py                    # 2,000,000 events, 5 rounds
    python bench/purge_batch_shapes.py --events 200000 --rounds 3

The data, server and baseline are bench/purge_proctoring.py's (one `DELETE … WHERE occurred_at <
cutoff`, durable PostgreSQL). Every shape walks the same keyset batches of 10,000 rows, each its
own transaction with synchronous_commit off, and differs only in how a batch finds its rows:

- index-ordered: the probe (`… ORDER BY occurred_at LIMIT 1 OFFSET n`) gives the batch's upper
  bound, then `DELETE … WHERE occurred_at >= after AND occurred_at < upper` as the planner likes it
  (an index scan, one heap fetch per row, the single big DELETE's plan);
- bitmap (what examctl does): the same two statements, the DELETE left only a bitmap heap scan;
- ctid array: one statement, `DELETE … WHERE ctid = ANY(ARRAY(SELECT ctid … LIMIT n))`.

Rounds are interleaved on fresh copies; the table reports each shape's median and the ratio of
its rows/s to the baseline's median.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from _common import configure
from purge_proctoring import PLAIN, SERVER_SETTINGS, build_templates, fresh_copy

from tests.servers import PostgresServer

BATCH = 10_000
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
_PROBE = (
    "SELECT occurred_at FROM proctoring_events WHERE occurred_at >= %s AND occurred_at < %s "
    "ORDER BY occurred_at LIMIT 1 OFFSET %s"
)
_RANGE = "DELETE FROM proctoring_events WHERE occurred_at >= %s AND occurred_at < %s"
_CTIDS = (
    "WITH gone AS (DELETE FROM proctoring_events WHERE ctid = ANY(ARRAY("
    "SELECT ctid FROM proctoring_events WHERE occurred_at >= %s AND occurred_at < %s "
    "ORDER BY occurred_at LIMIT %s)) RETURNING occurred_at) SELECT count(*), max(occurred_at) "
    "FROM gone"
)

Conn = psycopg.Connection[tuple[Any, ...]]
# One batch: (connection, after, cutoff) -> (rows deleted, where the next batch starts or None).
Batch = Callable[[Conn, datetime, datetime], tuple[int, datetime | None]]


def keyset(*, bitmap: bool) -> Batch:
    def batch(conn: Conn, after: datetime, cutoff: datetime) -> tuple[int, datetime | None]:
        row = conn.execute(_PROBE, (after, cutoff, BATCH)).fetchone()
        upper = row[0] if row else cutoff
        if bitmap:
            conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off")
        deleted = conn.execute(_RANGE, (after, upper)).rowcount
        return deleted, upper if row else None

    return batch


def ctid_array(conn: Conn, after: datetime, cutoff: datetime) -> tuple[int, datetime | None]:
    row = conn.execute(_CTIDS, (after, cutoff, BATCH)).fetchone()
    assert row is not None
    return row[0], row[1] if row[0] == BATCH else None


SHAPES: dict[str, Batch] = {
    "index-ordered DELETE (keyset)": keyset(bitmap=False),
    "bitmap DELETE (keyset; examctl)": keyset(bitmap=True),
    "ctid array, one statement": ctid_array,
}


def run_shape(server: PostgresServer, batch: Batch, days: int) -> tuple[int, float]:
    with psycopg.connect(server.url(fresh_copy(server, PLAIN))) as conn:
        cutoff = conn.execute("SELECT now() - make_interval(days => %s)", (days,)).fetchone()
        assert cutoff is not None
        conn.commit()
        total, after, started = 0, _BEGINNING, time.monotonic()
        while True:
            conn.execute("SET LOCAL synchronous_commit = off; SET LOCAL jit = off")
            deleted, following = batch(conn, after, cutoff[0])
            conn.commit()
            total += deleted
            if following is None:
                return total, time.monotonic() - started
            after = following


def baseline(server: PostgresServer, days: int) -> tuple[int, float]:
    with psycopg.connect(server.url(fresh_copy(server, PLAIN)), autocommit=True) as conn:
        started = time.monotonic()
        cursor = conn.execute(
            "DELETE FROM proctoring_events WHERE occurred_at < now() - make_interval(days => %s)",
            (days,),
        )
        return cursor.rowcount, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--span-days", type=int, default=225)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    server = PostgresServer(durable=True)
    server.start()
    try:
        configure(server, SERVER_SETTINGS)
        build_templates(server, args.events, args.span_days)
        times: dict[str, list[float]] = {"baseline: one DELETE": [], **{s: [] for s in SHAPES}}
        rows: dict[str, int] = {}
        for _ in range(args.rounds):
            rows["baseline: one DELETE"], seconds = baseline(server, args.days)
            times["baseline: one DELETE"].append(seconds)
            for name, batch in SHAPES.items():
                rows[name], seconds = run_shape(server, batch, args.days)
                times[name].append(seconds)
    finally:
        server.destroy()

    base_rate = rows["baseline: one DELETE"] / statistics.median(times["baseline: one DELETE"])
    print(f"{'shape':<34} {'rows':>10} {'median s':>9} {'vs base':>8}  all runs (s)")
    for name, runs in times.items():
        rate = rows[name] / statistics.median(runs)
        print(
            f"{name:<34} {rows[name]:>10,} {statistics.median(runs):>9.2f} "
            f"{rate / base_rate:>7.2f}x  " + " ".join(f"{s:.2f}" for s in runs)
        )


if __name__ == "__main__":
    main()
