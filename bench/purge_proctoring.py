"""Benchmark: purge-proctoring against one big DELETE, on a plain and a monthly-partitioned table.

    python bench/purge_proctoring.py                      # 2,000,000 events over 225 days
    python bench/purge_proctoring.py --events 200000      # quick check

Starts its own durable PostgreSQL (fsync and synchronous_commit on), builds the events once in a
template database, and runs every contender on a fresh copy with warm caches:

- baseline: `DELETE FROM proctoring_events WHERE occurred_at < cutoff`, one transaction;
- examctl on the plain table (keyset batches over the occurred_at index);
- examctl on a copy partitioned by calendar month, as pg_partman makes it (old partitions
  detached and dropped, the boundary month batched).

Targets (issue 5): plain >= 0.8x the baseline's rows/s with the longest transaction <= 0.1 s;
partitioned: whole partitions removed at >= 10x the baseline's rows/s, whole run no slower.

A DROP frees its table's files when it commits (PostgreSQL truncates each to zero), so the last
line measures what this machine's file system alone takes to free files of the same sizes: the
fastest any whole-partition removal can be here, whatever the SQL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from _common import PRODUCTION_SETTINGS, configure  # noqa: E402
from sqlalchemy import text  # noqa: E402

from examctl.db.engine import db_now, make_engine  # noqa: E402
from examctl.db.migrate import init_schema  # noqa: E402
from examctl.db.partitions import range_partitions  # noqa: E402
from examctl.jobs.purge_proctoring import purge_proctoring  # noqa: E402
from examctl.settings import normalize_database_url  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

PLAIN, PARTITIONED = "bench_plain", "bench_partitioned"
# autovacuum off: both shapes leave the same dead rows to vacuum, but the batches commit early,
# so autovacuum would start inside their timing and only after the baseline's.
SERVER_SETTINGS = {**PRODUCTION_SETTINGS, "autovacuum": "off"}


class Capture(logging.Handler):
    """Collects the job's batch and partition log records (their durations are what we need)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, action: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "action", "") == action]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--span-days", type=int, default=225)
    parser.add_argument("--days", type=int, default=90, help="retention (purge-proctoring --days)")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender (median)")
    args = parser.parse_args()

    server = PostgresServer(durable=True)
    server.start()
    try:
        configure(server, SERVER_SETTINGS)
        run(server, args)
    finally:
        server.destroy()


def run(server: PostgresServer, args: argparse.Namespace) -> None:
    started = time.monotonic()
    build_templates(server, args.events, args.span_days)
    print(
        f"data built in {time.monotonic() - started:.0f}s: {args.events:,} events over "
        f"{args.span_days} days; purge --days {args.days} --batch-size {args.batch_size}\n"
    )

    # The machine is shared: each contender runs --repeat times, interleaved, on fresh copies,
    # and the run with the median time is reported.
    runs: dict[str, list[Any]] = {"base": [], "plain": [], "part": []}
    for _ in range(args.repeat):
        runs["base"].append(baseline(server, args.days))
        runs["plain"].append(examctl(server, PLAIN, args))
        runs["part"].append(examctl(server, PARTITIONED, args))
    base_rows, base_s = sorted(runs["base"], key=lambda r: r[1])[args.repeat // 2]
    plain = sorted(runs["plain"], key=lambda r: r.seconds)[args.repeat // 2]
    part = sorted(runs["part"], key=lambda r: r.seconds)[args.repeat // 2]
    print(
        "all runs (s): baseline "
        + " ".join(f"{r[1]:.2f}" for r in runs["base"])
        + "; plain "
        + " ".join(f"{r.seconds:.2f}" for r in runs["plain"])
        + "; partitioned "
        + " ".join(f"{r.seconds:.2f}" for r in runs["part"])
        + "\n"
    )

    base_rate = base_rows / base_s
    rows = [
        ("baseline: one DELETE, one transaction", base_rows, base_s, base_rate, base_s, None),
        ("examctl purge-proctoring (plain table)", *plain.figures(), plain.longest, None),
        (
            "examctl, monthly partitions: whole run",
            *part.figures(),
            part.longest,
            f"{part.partitions} partitions dropped",
        ),
        (
            "  of which whole partitions dropped",
            part.dropped_rows,
            part.dropped_s,
            part.dropped_rows / part.dropped_s if part.dropped_s else 0.0,
            part.longest_drop,
            None,
        ),
        (
            "  of which boundary batches",
            part.deleted - part.dropped_rows,
            part.batch_s,
            (part.deleted - part.dropped_rows) / part.batch_s if part.batch_s else 0.0,
            part.longest_batch,
            None,
        ),
    ]
    print(
        f"{'shape':<42} {'rows':>10} {'seconds':>8} {'rows/s':>11} {'vs base':>8} "
        f"{'longest tx':>10}"
    )
    for name, count, seconds, rate, longest, note in rows:
        print(
            f"{name:<42} {count:>10,} {seconds:>8.2f} {rate:>11,.0f} {rate / base_rate:>7.2f}x "
            f"{longest:>9.3f}s" + (f"  ({note})" if note else "")
        )
    print()
    print(
        f"target plain >= 0.8x baseline rows/s: {plain.rate / base_rate:.2f}x; "
        f"longest transaction <= 0.1 s: {plain.longest:.3f}s"
    )
    drop_rate = part.dropped_rows / part.dropped_s if part.dropped_s else 0.0
    print(
        f"target partitions dropped >= 10x baseline rows/s: {drop_rate / base_rate:.1f}x; "
        f"whole partitioned run no slower than baseline: {part.seconds:.2f}s vs {base_s:.2f}s"
    )
    print(
        f"longest platform read of exam_attempts during the run: plain {plain.longest_read:.3f}s, "
        f"partitioned {part.longest_read:.3f}s"
    )
    files, size, seconds = file_system_floor(server, args.days)
    print(
        f"file system floor: truncating {files} files of the dropped partitions' sizes "
        f"({size / 2**20:,.0f} MiB) takes {seconds:.3f}s here, so whole partitions can go at "
        f"most {part.dropped_rows / seconds / base_rate:.1f}x the baseline's rows/s on this disk"
    )


def file_system_floor(server: PostgresServer, days: int) -> tuple[int, int, float]:
    """(files, bytes, seconds) to truncate files as large as the heap and index files of the
    partitions a purge drops, written next to the server's data directory."""
    engine = make_engine(normalize_database_url(server.url(PARTITIONED)))
    with engine.connect() as conn:
        cutoff = db_now(conn) - timedelta(days=days)
        dropped = [
            p.name
            for p in range_partitions(conn, "proctoring_events", "occurred_at")
            if p.before(cutoff)
        ]
        sizes = list(
            conn.execute(
                text(
                    "SELECT pg_relation_size(c.oid) FROM pg_class c "
                    "WHERE c.oid = ANY(CAST(:tables AS regclass[])) OR c.oid IN "
                    "(SELECT indexrelid FROM pg_index "
                    " WHERE indrelid = ANY(CAST(:tables AS regclass[])))"
                ),
                {"tables": dropped},
            ).scalars()
        )
    engine.dispose()
    seconds = 0.0
    chunk = b"\x01" * 2**20
    for number, size in enumerate(sizes):
        path = server.root / f"floor_{number}"
        with path.open("wb") as file:
            for _ in range(size // len(chunk)):
                file.write(chunk)
            file.write(chunk[: size % len(chunk)])
            file.flush()
            os.fsync(file.fileno())
        started = time.monotonic()
        os.truncate(path, 0)
        seconds += time.monotonic() - started
        path.unlink()
    return len(sizes), sum(sizes), seconds


def build_templates(server: PostgresServer, events: int, span_days: int) -> None:
    """Both layouts hold the same rows: built once, then copied per contender."""
    server.execute(f"CREATE DATABASE {PLAIN}")
    engine = make_engine(normalize_database_url(server.url(PLAIN)))
    init_schema(engine)
    engine.dispose()
    with psycopg.connect(server.url(PLAIN), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_prewarm")
        conn.execute(
            "INSERT INTO exams (id, title, time_limit_minutes) "
            "VALUES ('00000000-0000-0000-0000-000000000001', 'bench', 60)"
        )
        conn.execute(
            "INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at) "
            "SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', "
            "gen_random_uuid(), 'SUBMITTED', now() - interval '1 day' * (g % 225), "
            "now() - interval '1 day' * (g % 225) + interval '1 hour' "
            "FROM generate_series(1, 20000) g"
        )
        # Chronological inserts, as the platform writes them; a small payload like real events.
        conn.execute(
            "INSERT INTO proctoring_events (attempt_id, kind, occurred_at, payload) "
            "SELECT a.id, (ARRAY['tab_switch','face_missing','copy_paste','fullscreen_exit'])"
            "[1 + g %% 4], now() - make_interval(days => %(span)s) "
            "+ make_interval(secs => g * %(span)s * 86400.0 / %(n)s), "
            "jsonb_build_object('seq', g, 'source', 'webcam') "
            "FROM generate_series(0, %(n)s - 1) g "
            "JOIN (SELECT id, row_number() OVER () - 1 AS k FROM exam_attempts) a "
            "ON a.k = g %% 20000 ORDER BY g",
            {"span": span_days, "n": events},
        )
        conn.execute("VACUUM (ANALYZE) proctoring_events")
    server.execute(f"CREATE DATABASE {PARTITIONED} TEMPLATE {PLAIN} STRATEGY FILE_COPY")
    with psycopg.connect(server.url(PARTITIONED), autocommit=True) as conn:
        partition_monthly(conn, span_days)
        conn.execute("VACUUM (ANALYZE) proctoring_events")
    server.execute("CHECKPOINT")


def partition_monthly(conn: psycopg.Connection[tuple[object, ...]], span_days: int) -> None:
    """proctoring_events re-created range-partitioned by calendar month (pg_partman's layout,
    with a few months made ahead), filled from the plain table."""
    conn.execute("ALTER TABLE proctoring_events RENAME TO events_plain")
    conn.execute("ALTER INDEX ix_proctoring_events_occurred_at RENAME TO ix_plain_occurred_at")
    conn.execute("ALTER INDEX ix_proctoring_events_attempt_id RENAME TO ix_plain_attempt_id")
    conn.execute(
        "CREATE TABLE proctoring_events (id bigint NOT NULL, attempt_id uuid REFERENCES "
        "exam_attempts (id), kind text, occurred_at timestamptz NOT NULL, payload jsonb, "
        "PRIMARY KEY (id, occurred_at)) PARTITION BY RANGE (occurred_at)"
    )
    conn.execute("CREATE INDEX ix_proctoring_events_occurred_at ON proctoring_events (occurred_at)")
    conn.execute("CREATE INDEX ix_proctoring_events_attempt_id ON proctoring_events (attempt_id)")
    first = conn.execute(
        "SELECT date_trunc('month', now() - make_interval(days => %s))::date", (span_days,)
    ).fetchone()
    assert first is not None
    month = first[0]
    for _ in range(span_days // 28 + 5):  # the span, and a few months made ahead
        following = (month + timedelta(days=32)).replace(day=1)
        conn.execute(
            f"CREATE TABLE proctoring_events_p{month:%Y_%m} PARTITION OF proctoring_events "
            f"FOR VALUES FROM ('{month}') TO ('{following}')"
        )
        month = following
    conn.execute(
        "INSERT INTO proctoring_events SELECT id, attempt_id, kind, occurred_at, payload "
        "FROM events_plain ORDER BY occurred_at"
    )
    conn.execute("DROP TABLE events_plain")


def baseline(server: PostgresServer, days: int) -> tuple[int, float]:
    database = fresh_copy(server, PLAIN)
    with psycopg.connect(server.url(database), autocommit=True) as conn:
        started = time.monotonic()
        cursor = conn.execute(
            "DELETE FROM proctoring_events WHERE occurred_at < now() - make_interval(days => %s)",
            (days,),
        )
        return cursor.rowcount, time.monotonic() - started


@dataclass
class Outcome:
    deleted: int
    seconds: float
    longest_batch: float
    batch_s: float
    partitions: int = 0
    dropped_rows: int = 0
    dropped_s: float = 0.0
    longest_drop: float = 0.0
    longest_read: float = 0.0

    @property
    def rate(self) -> float:
        return self.deleted / self.seconds

    @property
    def longest(self) -> float:
        return max(self.longest_batch, self.longest_drop)

    def figures(self) -> tuple[int, float, float]:
        return self.deleted, self.seconds, self.rate


def examctl(server: PostgresServer, template: str, args: argparse.Namespace) -> Outcome:
    database = fresh_copy(server, template)
    engine = make_engine(normalize_database_url(server.url(database)))
    capture = Capture()
    logger = logging.getLogger("examctl")
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    try:
        with PlatformReader(server.url(database)) as reader:
            started = time.monotonic()
            result = purge_proctoring(engine, days=args.days, batch_size=args.batch_size)
            seconds = time.monotonic() - started
    finally:
        logger.removeHandler(capture)
        engine.dispose()
    batches = [r.duration_s for r in capture.of("purge_batch")]
    drops = [r.duration_s for r in capture.of("partition_dropped")]  # one DROP's transaction
    phase = capture.of("partitions_dropped")
    return Outcome(
        deleted=result.deleted,
        seconds=seconds,
        longest_batch=max(batches, default=0.0),
        batch_s=sum(batches),
        partitions=phase[0].partitions if phase else 0,
        dropped_rows=phase[0].rows if phase else 0,
        dropped_s=phase[0].duration_s if phase else 0.0,
        longest_drop=max(drops, default=0.0),
        longest_read=reader.longest_s,
    )


class PlatformReader:
    """The platform reading one attempt over and over while the purge runs; records the longest
    read, which is how long the purge held exam_attempts away from the platform (a DROP of a
    partition locks it: the events' foreign key goes with the table)."""

    def __init__(self, url: str) -> None:
        self.url, self.longest_s = url, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> PlatformReader:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _read(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set():
                started = time.monotonic()
                conn.execute("SELECT status FROM exam_attempts LIMIT 1").fetchone()
                self.longest_s = max(self.longest_s, time.monotonic() - started)
                time.sleep(0.001)


_copies = iter(range(1000))


def fresh_copy(server: PostgresServer, template: str) -> str:
    """A copy of `template` with the events table and its indexes in shared buffers."""
    name = f"run_{next(_copies)}"
    server.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
    with psycopg.connect(server.url(name), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_prewarm(c.oid) FROM pg_class c "
            "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i') "
            "AND c.relname LIKE '%proctoring_events%'"
        )
    server.execute("CHECKPOINT")
    return name


if __name__ == "__main__":
    main()
