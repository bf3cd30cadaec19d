"""purge-proctoring: bounded batches on both databases, whole partitions on PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine, text

from examctl.db import partitions
from examctl.db.partitions import DROP_MARK
from examctl.errors import JobFailed, UsageError
from examctl.jobs.purge_proctoring import PurgeResult, purge_proctoring
from tests.events import (
    DAY,
    add_events,
    count_events,
    monthly_bounds,
    partition_events_table,
    partitions_of,
)
from tests.factories import now_of

HOUR = timedelta(hours=1)


def _batch_rows(caplog: pytest.LogCaptureFixture) -> list[int]:
    return [r.rows for r in caplog.records if getattr(r, "action", "") == "purge_batch"]


def test_purge_proctoring__old_and_recent__old_deleted_in_bounded_batches(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    now = now_of(engine)
    # One event every 12 h for 200 days: 220 of them (110 days' worth) past 90 days.
    add_events(engine, count=400, newest=now - HOUR, step=12 * HOUR)
    old = count_events(engine, older_than=now - 90 * DAY)
    caplog.set_level(logging.DEBUG, logger="examctl.jobs.purge_proctoring")

    result = purge_proctoring(engine, days=90, batch_size=50)

    assert old == 220
    assert result == PurgeResult(deleted=220, batches=5)
    assert _batch_rows(caplog) == [50, 50, 50, 50, 20]
    assert count_events(engine) == 180
    assert count_events(engine, older_than=now - 90 * DAY) == 0


def test_purge_proctoring__many_events_same_instant__every_one_deleted(engine: Engine) -> None:
    # Ties on occurred_at across batch edges: the keyset must neither skip nor loop.
    now = now_of(engine)
    add_events(engine, count=25, newest=now - 100 * DAY, step=timedelta(0))
    add_events(engine, count=3, newest=now - HOUR, step=HOUR)

    assert purge_proctoring(engine, days=90, batch_size=7) == PurgeResult(deleted=25, batches=4)
    assert count_events(engine) == 3


def test_purge_proctoring__dry_run__counts_and_deletes_nothing(engine: Engine) -> None:
    now = now_of(engine)
    add_events(engine, count=30, newest=now - 91 * DAY, step=DAY)
    add_events(engine, count=5, newest=now - HOUR, step=HOUR)

    result = purge_proctoring(engine, days=90, batch_size=8, dry_run=True)

    assert result == PurgeResult(deleted=30, batches=4)
    assert count_events(engine) == 35


def test_purge_proctoring__nothing_past_retention__no_batches(engine: Engine) -> None:
    add_events(engine, count=10, newest=now_of(engine), step=DAY)

    assert purge_proctoring(engine, days=90) == PurgeResult()
    assert count_events(engine) == 10


def test_purge_proctoring__days_zero__usage_error(engine: Engine) -> None:
    with pytest.raises(UsageError, match="--days must be at least 1"):
        purge_proctoring(engine, days=0)


# --- partitioned table (PostgreSQL) -------------------------------------------------------------


def _partitioned_sample(engine: Engine) -> tuple[datetime, list[str]]:
    """30-day partitions (see monthly_bounds) holding an event every 12 h for 300 days."""
    now, bounds = monthly_bounds(engine)
    names = partition_events_table(engine, bounds=bounds)
    add_events(engine, count=600, newest=now - 6 * HOUR, step=12 * HOUR)
    return now, names


def test_purge_proctoring__lock_timeout_mid_run__committed_batches_counted_one_line(
    pg_url: str, pg_engine: Engine
) -> None:
    now = now_of(pg_engine)
    add_events(pg_engine, count=30, newest=now - 100 * DAY, step=HOUR)
    plain_url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain_url, autocommit=True) as admin:
        database = plain_url.rsplit("/", 1)[1]
        admin.execute(f"ALTER DATABASE {database} SET lock_timeout = '300ms'")
    pg_engine.dispose()
    # The platform holds the newest old event: the third batch cannot get it.
    with psycopg.connect(plain_url) as platform:
        platform.execute(
            "SELECT id FROM proctoring_events ORDER BY occurred_at DESC LIMIT 1 FOR UPDATE"
        )
        with pytest.raises(JobFailed) as raised:
            purge_proctoring(pg_engine, days=90, batch_size=10)

    assert raised.value.partial == PurgeResult(deleted=20, batches=2)
    assert str(raised.value).startswith("a batch failed and was rolled back: ")
    assert "\n" not in str(raised.value) and "SELECT" not in str(raised.value)
    assert count_events(pg_engine) == 10


def test_purge_proctoring__partitioned__old_partitions_dropped_boundary_batched(
    pg_engine: Engine,
) -> None:
    now, names = _partitioned_sample(pg_engine)
    old = count_events(pg_engine, older_than=now - 90 * DAY)

    result = purge_proctoring(pg_engine, days=90, batch_size=20)

    # Events reach back 300 days; bounds[7] = now - 105 days: the 7 partitions before it hold
    # only old events (30 + 6 * 60); 30 more lie in the boundary partition, 105 to 90 days old.
    assert old == 420
    assert result == PurgeResult(deleted=420, batches=7 + 2)
    assert partitions_of(pg_engine) == sorted(names[7:])
    assert count_events(pg_engine, older_than=now - 90 * DAY) == 0
    assert count_events(pg_engine) == 600 - old


def test_purge_proctoring__partitioned_dry_run__counts_every_event(pg_engine: Engine) -> None:
    _, names = _partitioned_sample(pg_engine)

    result = purge_proctoring(pg_engine, days=90, batch_size=20, dry_run=True)

    assert result == PurgeResult(deleted=420, batches=7 + 2)
    assert partitions_of(pg_engine) == sorted(names)
    assert count_events(pg_engine) == 600


def test_purge_proctoring__partitioned_with_default__plain_detach_used(pg_engine: Engine) -> None:
    # DETACH … CONCURRENTLY refuses a table with a DEFAULT partition: the plain DETACH serves.
    now, bounds = monthly_bounds(pg_engine)
    names = partition_events_table(pg_engine, bounds=bounds[4:], default=True)
    add_events(pg_engine, count=600, newest=now - 6 * HOUR, step=12 * HOUR)  # oldest in DEFAULT

    result = purge_proctoring(pg_engine, days=90, batch_size=100)

    assert result.deleted == 420
    assert partitions_of(pg_engine) == sorted([*names[3:], "proctoring_events_default"])
    assert count_events(pg_engine, older_than=now - 90 * DAY) == 0


def test_purge_proctoring__partition_detached_by_killed_run__dropped_and_counted(
    pg_engine: Engine,
) -> None:
    _, names = _partitioned_sample(pg_engine)
    with pg_engine.begin() as conn:  # what a run killed between DETACH and DROP leaves
        conn.execute(text(f"COMMENT ON TABLE {names[0]} IS '{DROP_MARK}'"))
        conn.execute(text(f"ALTER TABLE proctoring_events DETACH PARTITION {names[0]}"))

    result = purge_proctoring(pg_engine, days=90, batch_size=1000)

    assert result == PurgeResult(deleted=420, batches=1 + 6 + 1)
    with pg_engine.connect() as conn:
        assert conn.execute(text(f"SELECT to_regclass('{names[0]}')")).scalar() is None


def test_purge_proctoring__exam_attempts_busy__drop_deferred_then_done_by_next_run(
    pg_url: str, pg_engine: Engine
) -> None:
    _, names = _partitioned_sample(pg_engine)
    with pg_engine.begin() as conn:  # detached and marked, as a run leaves it before the DROP
        conn.execute(text(f"COMMENT ON TABLE {names[0]} IS '{DROP_MARK}'"))
        conn.execute(text(f"ALTER TABLE proctoring_events DETACH PARTITION {names[0]}"))
    # The platform holds a write on exam_attempts in a long transaction: a DROP of the detached
    # table (its foreign key goes with it) would queue behind it, and every writer behind that.
    platform = psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    platform.execute("UPDATE exam_attempts SET user_id = user_id")
    try:
        started = time.monotonic()
        deferred = partitions.drop_tables_counted(pg_engine, [names[0]])
        waited = time.monotonic() - started
        with pg_engine.connect() as conn:
            still_there = conn.execute(text(f"SELECT to_regclass('{names[0]}')")).scalar()
    finally:
        platform.rollback()
        platform.close()

    assert deferred == (0, 0) and still_there is not None and waited < 5
    assert purge_proctoring(pg_engine, days=90, batch_size=1000) == PurgeResult(
        deleted=420, batches=1 + 6 + 1
    )


def test_purge_proctoring__detach_left_pending__finalized(pg_url: str, pg_engine: Engine) -> None:
    _, names = _partitioned_sample(pg_engine)
    _leave_detach_pending(pg_url, names[0])

    result = purge_proctoring(pg_engine, days=90, batch_size=1000)

    assert result.deleted == 420
    assert partitions_of(pg_engine) == sorted(names[7:])


def _leave_detach_pending(url: str, partition: str) -> None:
    """Interrupt a DETACH … CONCURRENTLY in its second phase, as a killed run would."""
    with psycopg.connect(url, autocommit=True) as reader, psycopg.connect(url) as holder:
        holder.execute("SELECT count(*) FROM proctoring_events")  # an open transaction waits
        row = reader.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = row[0]
        errors: list[Exception] = []

        def detach() -> None:
            try:
                reader.execute(
                    f"ALTER TABLE proctoring_events DETACH PARTITION {partition} CONCURRENTLY"
                )
            except psycopg.Error as error:
                errors.append(error)

        thread = threading.Thread(target=detach)
        thread.start()
        with psycopg.connect(url, autocommit=True) as admin:
            _wait_until(
                lambda: (
                    admin.execute(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        (pid,),
                    ).fetchone()
                    == (True,)
                )
            )
            admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
        thread.join(10)
        holder.rollback()
        assert errors and "cancel" in str(errors[0])
    with psycopg.connect(url) as check:
        pending = check.execute(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", (partition,)
        ).fetchone()
    assert pending == (True,)


def _wait_until(condition: object, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# --- the platform keeps writing -----------------------------------------------------------------


@pytest.mark.parametrize("partitioned", [False, True], ids=["plain", "partitioned"])
def test_purge_proctoring__concurrent_inserts__never_wait(
    pg_engine: Engine, pg_url: str, partitioned: bool
) -> None:
    now, bounds = monthly_bounds(pg_engine)
    if partitioned:
        partition_events_table(pg_engine, bounds=bounds)
    attempt = add_events(pg_engine, count=40_000, newest=now - 6 * HOUR, step=timedelta(minutes=10))
    latencies: list[float] = []
    stop = threading.Event()

    def insert_events() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            while not stop.is_set():
                started = time.monotonic()
                conn.execute(
                    "INSERT INTO proctoring_events (attempt_id, kind, occurred_at) "
                    "VALUES (%s, 'tab_switch', now())",
                    (attempt,),
                )
                latencies.append(time.monotonic() - started)

    inserter = threading.Thread(target=insert_events)
    inserter.start()
    try:
        result = purge_proctoring(pg_engine, days=90, batch_size=500)
    finally:
        stop.set()
        inserter.join(10)

    assert result.deleted > 20_000
    assert len(latencies) > 10
    assert max(latencies) < 0.5, f"an insert waited {max(latencies):.3f}s"
