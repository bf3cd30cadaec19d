"""remind (SPEC §8): at most one reminder per attempt and threshold, ever.

The reminder log (`examctl_reminders`, unique on attempt and threshold) is the only arbiter. A
reminder is *claimed* (row written as `sending`, committed) before it is delivered, and the
claim is an `INSERT … ON CONFLICT DO NOTHING RETURNING` (or, for a failed row, an `UPDATE …
WHERE state = 'failed'`): of two processes racing, only the one that gets the row back sends.
Then the outcome is recorded: `sent`, or `failed` (retried by the next run).

Guarantee: **at most once**. A process killed after claiming and before recording leaves its
claims `sending`; they are never sent again, whether or not the POST went out. That is what
SPEC's "at most one reminder per threshold, ever" asks, and the loss is bounded by one claim
(`Notifier.claim_size` reminders). SIGTERM never causes it: `sweep` finishes the claim in hand.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, and_, exists, func, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from examctl.db.engine import db_now, is_postgres
from examctl.db.locks import lock_key
from examctl.db.schema import STATUS_IN_PROGRESS, exam_attempts, reminders
from examctl.errors import JobFailed, UsageError
from examctl.notifiers import DeliveryFailed, Notifier, Reminder

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = "10,5,1"
MAX_THRESHOLD_MINUTES = 7 * 24 * 60
_AT_HELP = (
    f"--at must be a comma-separated list of whole minutes from 1 to {MAX_THRESHOLD_MINUTES}, "
    "such as 10,5,1"
)


@dataclass(frozen=True)
class RemindResult:
    sent: int = 0
    skipped: int = 0
    failed: int = 0

    def __add__(self, other: RemindResult) -> RemindResult:
        return RemindResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass
class _Plan:
    """What one page of due attempts needs: new rows to insert, failed rows to take over."""

    send: list[Reminder] = field(default_factory=list)
    skip: list[tuple[UUID, int]] = field(default_factory=list)
    retry_send: list[int] = field(default_factory=list)  # ids of failed rows to send again
    retry_skip: list[int] = field(default_factory=list)  # ids of failed rows now superseded


def parse_thresholds(text: str) -> tuple[int, ...]:
    """`10,5,1` → (1, 5, 10); UsageError (exit 2) for anything but positive whole minutes."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= MAX_THRESHOLD_MINUTES:
            raise UsageError(_AT_HELP)
        values.append(int(part))
    return tuple(sorted(set(values)))


def remind(
    engine: Engine,
    notifier: Notifier,
    *,
    thresholds: Sequence[int],
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> RemindResult:
    """Send (or, with dry_run, count) every due reminder; JobFailed if a delivery failed.

    A reminder is due for an IN_PROGRESS attempt before its deadline once the minutes left are
    at most the threshold. When several are due only the smallest is sent; the larger are
    recorded as skipped.
    """
    with engine.connect() as conn:
        run_started = db_now(conn)
    total, reasons = RemindResult(), Counter[str]()
    after: tuple[datetime, UUID] | None = None
    while not should_stop():
        with engine.begin() as conn:
            if not dry_run:
                _serialise_claims(conn)
            now = db_now(conn)
            due = _due_attempts(conn, thresholds, now, run_started, after, notifier.claim_size)
            if not due:
                break
            plan = _plan(conn, due, thresholds, now, run_started)
            if dry_run:
                sent, skipped = len(plan.send + plan.retry_send), len(plan.skip + plan.retry_skip)
                total += RemindResult(sent=sent, skipped=skipped)
            else:
                claims, skipped = _claim(conn, plan, due, now, run_started)
        after = (due[-1].deadline_at, due[-1].attempt_id)
        if dry_run:
            continue
        result, endpoint_down = _deliver(engine, notifier, claims, reasons)
        total += result + RemindResult(skipped=skipped)
        if endpoint_down:
            break  # every further try would wait for the same timeout; the next run retries
    if total.failed:
        raise JobFailed(
            f"{total.failed} reminder(s) not delivered to {notifier.display} "
            f"({'; '.join(f'{why} ({n})' for why, n in reasons.most_common(3))}); "
            "they are retried on the next run (examctl_reminders has each attempt and error)",
            partial=total,
        )
    return total


def _due_attempts(
    conn: Connection,
    thresholds: Sequence[int],
    now: datetime,
    run_started: datetime,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Reminder]:
    """The next page of attempts with a due threshold that no row settles yet.

    A row settles its threshold unless it failed before this run began (then it is retried).
    The range on deadline_at is what the partial index on IN_PROGRESS attempts serves.
    """
    a, r = exam_attempts.c, reminders.c

    def unsettled(minutes: int) -> Any:
        settled = exists().where(
            r.attempt_id == a.id,
            r.minutes_before == minutes,
            or_(r.state != "failed", r.claimed_at >= run_started),
        )
        return and_(a.deadline_at <= now + timedelta(minutes=minutes), ~settled)

    query = (
        select(a.id, a.user_id, a.exam_id, a.deadline_at)
        .where(
            a.status == STATUS_IN_PROGRESS,
            a.deadline_at > now,
            a.deadline_at <= now + timedelta(minutes=max(thresholds)),
            or_(*(unsettled(m) for m in thresholds)),
        )
        .order_by(a.deadline_at, a.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tuple_(a.deadline_at, a.id) > after)
    return [
        Reminder(row.id, row.user_id, row.exam_id, 0, row.deadline_at)
        for row in conn.execute(query)
    ]


def _plan(
    conn: Connection,
    due: list[Reminder],
    thresholds: Sequence[int],
    now: datetime,
    run_started: datetime,
) -> _Plan:
    r = reminders.c
    rows: dict[tuple[UUID, int], Any] = {}
    query = select(r.id, r.attempt_id, r.minutes_before, r.state, r.claimed_at).where(
        r.attempt_id.in_([d.attempt_id for d in due])
    )
    for found in conn.execute(query):
        rows[(found.attempt_id, found.minutes_before)] = found
    plan = _Plan()
    for attempt in due:
        left = attempt.deadline_at - now
        reached = [m for m in thresholds if left <= timedelta(minutes=m)]
        for minutes in reached:
            row = rows.get((attempt.attempt_id, minutes))
            retryable = row is not None and row.state == "failed" and row.claimed_at < run_started
            if row is not None and not retryable:
                continue
            smallest = minutes == reached[0]
            if row is None and smallest:
                plan.send.append(_with_minutes(attempt, minutes))
            elif row is None:
                plan.skip.append((attempt.attempt_id, minutes))
            else:
                (plan.retry_send if smallest else plan.retry_skip).append(row.id)
    return plan


def _serialise_claims(conn: Connection) -> None:
    """One claiming transaction at a time per database (they last milliseconds).

    The unique pair already makes a double send impossible; this lock also keeps two claimers
    from deadlocking on each other's rows. SQLite's BEGIN IMMEDIATE serialises them already.
    """
    if is_postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key("remind-claim")})


def _claim(
    conn: Connection, plan: _Plan, due: list[Reminder], now: datetime, run_started: datetime
) -> tuple[list[Reminder], int]:
    """Write the plan; return the reminders this process won (to send) and the skips it wrote."""
    r = reminders.c
    fresh = [(d.attempt_id, d.minutes_before, "sending") for d in plan.send]
    fresh += [(attempt_id, minutes, "skipped") for attempt_id, minutes in plan.skip]
    fresh.sort()
    won: list[tuple[UUID, int, str]] = []
    if fresh:
        statement = (
            _insert(conn)
            .values(
                [
                    {"attempt_id": a, "minutes_before": m, "state": s, "claimed_at": now}
                    for a, m, s in fresh
                ]
            )
            .on_conflict_do_nothing(index_elements=["attempt_id", "minutes_before"])
            .returning(r.attempt_id, r.minutes_before, r.state)
        )
        won += [tuple(row) for row in conn.execute(statement)]
    for ids, state in ((plan.retry_send, "sending"), (plan.retry_skip, "skipped")):
        if ids:
            statement = (
                update(reminders)
                .where(r.id.in_(ids), r.state == "failed", r.claimed_at < run_started)
                .values(state=state, claimed_at=now)
                .returning(r.attempt_id, r.minutes_before, r.state)
            )
            won += [tuple(row) for row in conn.execute(statement)]
    by_id = {d.attempt_id: d for d in due}
    claims = [_with_minutes(by_id[a], m) for a, m, s in won if s == "sending"]
    claims.sort(key=lambda c: (c.deadline_at, c.attempt_id))  # the most urgent first
    return claims, sum(1 for _, _, s in won if s == "skipped")


def _deliver(
    engine: Engine, notifier: Notifier, claims: list[Reminder], reasons: Counter[str]
) -> tuple[RemindResult, bool]:
    """Send the claimed reminders in order and record each outcome; True if the endpoint is down.

    `reasons` counts the failures by reason, for the run's one error message.

    Once the endpoint is down (refused, timed out) the rest are not tried: they are recorded as
    failed without waiting, and the next run retries them.
    """
    sent: list[Reminder] = []
    failed: dict[str, list[Reminder]] = defaultdict(list)
    down: str | None = None
    settled = 0
    try:
        for reminder in claims:
            if down is not None:
                failed[f"not attempted: {down}"].append(reminder)
            else:
                try:
                    notifier.send(reminder)
                    sent.append(reminder)
                except DeliveryFailed as error:
                    failed[str(error)].append(reminder)
                    down = str(error) if error.endpoint_down else None
                    _log_not_delivered(reminder, error)
            settled += 1
    finally:
        # Whatever stops the loop, the claims it never reached are recorded failed and retried
        # by the next run. The one in hand when it stopped may have gone out: it stays `sending`,
        # never sent again (at most once, as for a killed run).
        if settled + 1 < len(claims):
            failed["not attempted: the run stopped"].extend(claims[settled + 1 :])
        _record(engine, sent, failed)
    reasons.update({why: len(batch) for why, batch in failed.items()})
    result = RemindResult(sent=len(sent), failed=sum(len(v) for v in failed.values()))
    return result, down is not None


def _log_not_delivered(reminder: Reminder, error: DeliveryFailed) -> None:
    logger.debug(
        "reminder not delivered: %s",
        error,
        extra={"attempt_id": str(reminder.attempt_id), "minutes": reminder.minutes_before},
    )


def _record(engine: Engine, sent: list[Reminder], failed: dict[str, list[Reminder]]) -> None:
    r = reminders.c

    def claimed(batch: list[Reminder]) -> Any:
        keys = [(x.attempt_id, x.minutes_before) for x in batch]
        return and_(tuple_(r.attempt_id, r.minutes_before).in_(keys), r.state == "sending")

    with engine.begin() as conn:
        now = db_now(conn)
        if sent:
            conn.execute(
                update(reminders)
                .where(claimed(sent))
                .values(state="sent", sent_at=now, tries=r.tries + 1, error=None)
            )
        for error, batch in failed.items():
            tried = 0 if error.startswith("not attempted") else 1
            conn.execute(
                update(reminders)
                .where(claimed(batch))
                .values(state="failed", tries=r.tries + tried, error=error[:500])
            )


def seconds_until_next_reminder(
    engine: Engine, thresholds: Sequence[int], horizon_s: float
) -> float | None:
    """Seconds until the next attempt crosses a threshold, if one does within `horizon_s`.

    One index probe per threshold: the first deadline beyond `now + threshold`.
    """
    a = exam_attempts.c
    with engine.connect() as conn:
        now = db_now(conn)
        horizon = timedelta(seconds=horizon_s)
        firsts = [
            select(func.min(a.deadline_at))
            .where(
                a.status == STATUS_IN_PROGRESS,
                a.deadline_at > now + timedelta(minutes=m),
                a.deadline_at <= now + timedelta(minutes=m) + horizon,
            )
            .scalar_subquery()
            for m in thresholds
        ]
        values = conn.execute(select(*firsts)).one()
    due = [d - timedelta(minutes=m) for d, m in zip(values, thresholds, strict=True) if d]
    return (min(due) - now).total_seconds() if due else None


def _with_minutes(attempt: Reminder, minutes: int) -> Reminder:
    return Reminder(
        attempt.attempt_id, attempt.user_id, attempt.exam_id, minutes, attempt.deadline_at
    )


def _insert(conn: Connection) -> Any:
    return postgresql.insert(reminders) if is_postgres(conn) else sqlite.insert(reminders)
