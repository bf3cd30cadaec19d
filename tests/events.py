"""Proctoring events in bulk, and a range-partitioned proctoring_events table like pg_partman's."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, insert, select, text

from examctl.db.engine import is_postgres
from examctl.db.schema import proctoring_events
from tests.factories import make_attempt, make_exam, now_of

DAY = timedelta(days=1)


def add_events(engine: Engine, *, count: int, newest: datetime, step: timedelta) -> uuid.UUID:
    """`count` events of one attempt, the newest at `newest`, then one every `step` back in time."""
    attempt = make_attempt(engine, make_exam(engine), deadline_at=newest, status="SUBMITTED")
    if is_postgres(engine):
        sql = (
            "INSERT INTO proctoring_events (attempt_id, kind, occurred_at) "
            "SELECT :a, 'tab_switch', :newest - g * :step FROM generate_series(0, :n - 1) g"
        )
        with engine.begin() as conn:
            conn.execute(text(sql), {"a": attempt, "newest": newest, "step": step, "n": count})
    else:
        rows = [
            {"attempt_id": attempt, "kind": "tab_switch", "occurred_at": newest - n * step}
            for n in range(count)
        ]
        with engine.begin() as conn:
            conn.execute(insert(proctoring_events), rows)
    return attempt


def count_events(engine: Engine, *, older_than: datetime | None = None) -> int:
    query = select(func.count()).select_from(proctoring_events)
    if older_than is not None:
        query = query.where(proctoring_events.c.occurred_at < older_than)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def partition_events_table(
    engine: Engine, *, bounds: list[datetime], default: bool = False
) -> list[str]:
    """Recreate proctoring_events range-partitioned on occurred_at, one partition per pair of
    consecutive `bounds` (and a DEFAULT one if asked); returns the partition names, oldest first."""
    names = [f"proctoring_events_p{i}" for i in range(len(bounds) - 1)]
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE proctoring_events"))
        conn.execute(
            text(
                "CREATE TABLE proctoring_events ("
                " id bigserial, attempt_id uuid REFERENCES exam_attempts (id), kind text,"
                " occurred_at timestamptz NOT NULL, payload jsonb,"
                " PRIMARY KEY (id, occurred_at)) PARTITION BY RANGE (occurred_at)"
            )
        )
        conn.execute(
            text("CREATE INDEX ix_proctoring_events_occurred_at ON proctoring_events (occurred_at)")
        )
        conn.execute(
            text("CREATE INDEX ix_proctoring_events_attempt_id ON proctoring_events (attempt_id)")
        )
        for name, low, high in zip(names, bounds, bounds[1:], strict=False):
            conn.execute(
                text(
                    f"CREATE TABLE {name} PARTITION OF proctoring_events "
                    f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')"
                )
            )
        if default:
            conn.execute(
                text(
                    "CREATE TABLE proctoring_events_default PARTITION OF proctoring_events DEFAULT"
                )
            )
    return names


def partitions_of(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                text(
                    "SELECT inhrelid::regclass::text FROM pg_inherits "
                    "WHERE inhparent = 'proctoring_events'::regclass"
                )
            ).scalars()
        )


def monthly_bounds(engine: Engine) -> tuple[datetime, list[datetime]]:
    """Database now, and 30-day partition bounds from 315 days ago to 45 days ahead: with
    --days 90 the partition [now-105d, now-75d) straddles the cutoff."""
    now = now_of(engine)
    return now, [now - DAY * (15 + 30 * k) for k in range(10, -3, -1)]
