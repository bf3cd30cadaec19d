"""finish-expired (SPEC §5, §6): finish every overdue attempt exactly once.

Each batch is one short transaction: claim up to `batch_size` overdue attempts
(`FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent runs take disjoint batches; on SQLite the
transaction itself holds the write lock), recover their Redis answers, grade, write back one
statement per table, commit. Only then are the Redis sessions deleted: a crash in between leaves
a session of a finished attempt, which `clean-redis` removes, and never a finished attempt
without its buffered answers.

On PostgreSQL `workers` threads (each with its own connection) finish batches side by side, as
concurrent runs would: a batch's time is mostly the server's (writing 15,000 answer rows, commit
waits for the disk), so a second batch in flight roughly doubles the pace of a backlog
(bench/finish_expired.py) while each transaction stays as short as one batch. SQLite has one
writer at a time: one worker there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, Select, and_, func, or_, select, text, tuple_

from examctl.db.engine import batch_errors, db_now, is_postgres
from examctl.db.functions import plus_minutes
from examctl.db.schema import (
    OVERDUE_POLICIES,
    STATUS_IN_PROGRESS,
    exam_attempts,
    exams,
    overdue_policy,
)
from examctl.errors import ExamctlError, ServiceUnavailable, UsageError
from examctl.jobs.finish_batch import AnswerGrader, Claimed, finish_batch
from examctl.settings import DEFAULT_FINISH_BATCH_SIZE, DEFAULT_FINISH_WORKERS
from examctl.stores.redis_sessions import RedisSessions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishResult:
    finished: int = 0
    expired: int = 0
    abandoned: int = 0
    answers_graded: int = 0
    answers_recovered: int = 0
    redis_deleted: int = 0

    def __add__(self, other: FinishResult) -> FinishResult:
        return FinishResult(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def finish_expired(
    engine: Engine,
    sessions: RedisSessions | None,
    *,
    grace_seconds: int = 0,
    batch_size: int = DEFAULT_FINISH_BATCH_SIZE,
    workers: int = DEFAULT_FINISH_WORKERS,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> FinishResult:
    """Finish (or, with dry_run, count) every attempt overdue by more than `grace_seconds`.

    `sessions` None means the Redis answers are not consulted (no Redis configured, or
    --no-redis). Redis configured but unreachable raises ServiceUnavailable before any change.
    A failure part way raises with `partial` = what the committed batches finished.
    """
    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if sessions is not None:
        sessions.ping()
    _refuse_unknown_policies(engine, grace_seconds)
    if dry_run:
        return _count_overdue(engine, sessions, grace_seconds, batch_size)
    workers = workers if is_postgres(engine) else 1

    def drain(stop: Callable[[], bool]) -> _Drained:
        return _drain(engine, sessions, grace_seconds, batch_size, stop)

    if workers == 1:
        return _raise_with_partial(drain(should_stop))
    return _drain_in_threads(drain, workers, should_stop)


@dataclass(frozen=True)
class _Drained:
    """What one worker committed, and the error that stopped it, if any."""

    result: FinishResult
    error: ExamctlError | None = None


def _drain(
    engine: Engine,
    sessions: RedisSessions | None,
    grace_seconds: int,
    batch_size: int,
    should_stop: Callable[[], bool],
) -> _Drained:
    """Finish batches until none is overdue, `should_stop()` says so, or one fails."""
    total, grader = FinishResult(), AnswerGrader()
    try:
        with batch_errors(engine):
            while not should_stop():
                batch = _finish_one_batch(engine, sessions, grader, grace_seconds, batch_size)
                if batch is None:
                    break
                total += batch
    except ExamctlError as error:
        committed = error.partial if isinstance(error.partial, FinishResult) else FinishResult()
        return _Drained(total + committed, error)
    return _Drained(total)


def _drain_in_threads(
    drain: Callable[[Callable[[], bool]], _Drained], workers: int, should_stop: Callable[[], bool]
) -> FinishResult:
    """`workers` drains side by side; the first failure stops the others after their batch."""
    failed = threading.Event()

    def stop() -> bool:
        return failed.is_set() or should_stop()

    def work() -> _Drained:
        try:
            drained = drain(stop)
        except BaseException:  # a bug: stop the others too, and let it surface
            failed.set()
            raise
        if drained.error is not None:
            failed.set()
        return drained

    with ThreadPoolExecutor(workers, thread_name_prefix="finish") as pool:
        futures = [pool.submit(work) for _ in range(workers)]
        drained = [future.result() for future in futures]
    total = sum((d.result for d in drained), FinishResult())
    errors = [d.error for d in drained if d.error is not None]
    return _raise_with_partial(_Drained(total, errors[0] if errors else None))


def _raise_with_partial(drained: _Drained) -> FinishResult:
    if drained.error is not None:
        raise drained.error.with_partial(drained.result) from drained.error
    return drained.result


def _finish_one_batch(
    engine: Engine,
    sessions: RedisSessions | None,
    grader: AnswerGrader,
    grace_seconds: int,
    batch_size: int,
) -> FinishResult | None:
    """Claim, finish and commit one batch; None when nothing is overdue any more."""
    with engine.begin() as conn:
        _tune_batch_transaction(conn)
        now = db_now(conn)
        query = overdue_query(now - timedelta(seconds=grace_seconds), batch_size)
        claimed = _claimed(conn, query.with_for_update(of=exam_attempts, skip_locked=True))
        if not claimed:
            return None
        outcome = finish_batch(conn, sessions, claimed, now, grader=grader, write=True)
    # Only after the commit: a session deleted before it could lose answers on a rollback.
    try:
        deleted = sessions.delete(outcome.finished_ids) if sessions is not None else 0
    except ServiceUnavailable as error:  # the batch is committed: it counts all the same
        raise error.with_partial(_result(outcome, redis_deleted=0)) from error
    logger.info(
        "batch finished",
        extra={
            "action": "batch_finished",
            "attempts": len(outcome.finished_ids),
            "expired": outcome.expired,
            "abandoned": outcome.abandoned,
        },
    )
    return _result(outcome, redis_deleted=deleted)


def _count_overdue(
    engine: Engine, sessions: RedisSessions | None, grace_seconds: int, batch_size: int
) -> FinishResult:
    """Dry run: walk the overdue attempts in keyset order and count, writing nothing."""
    total, grader = FinishResult(), AnswerGrader()
    after: tuple[datetime, UUID] | None = None
    with engine.connect() as conn:
        cutoff = db_now(conn) - timedelta(seconds=grace_seconds)
        while True:
            query = overdue_query(cutoff, batch_size)
            if after is not None:
                query = query.where(tuple_(exam_attempts.c.deadline_at, exam_attempts.c.id) > after)
            claimed = _claimed(conn, query)
            if not claimed:
                return total
            outcome = finish_batch(conn, sessions, claimed, cutoff, grader=grader, write=False)
            existing = sessions.count_existing(outcome.finished_ids) if sessions is not None else 0
            total += _result(outcome, redis_deleted=existing)
            after = (claimed[-1].deadline_at, claimed[-1].id)


def overdue_query(cutoff: datetime, limit: int) -> Select[Any]:
    """Overdue IN_PROGRESS attempts with a known policy, oldest deadline first.

    `deadline_at < cutoff` is the range the partial index serves; graceperiod attempts are
    overdue only once their exam's grace_minutes have passed too.
    """
    attempt, exam = exam_attempts.c, exams.c
    grace_end = plus_minutes(attempt.deadline_at, func.coalesce(exam.grace_minutes, 0))
    return (
        select(
            attempt.id,
            attempt.exam_id,
            attempt.deadline_at,
            overdue_policy.label("overdue_policy"),
            exam.passing_score,
        )
        .join(exams, exam.id == attempt.exam_id)
        .where(
            attempt.status == STATUS_IN_PROGRESS,
            attempt.deadline_at < cutoff,
            overdue_policy.in_(OVERDUE_POLICIES),
            or_(overdue_policy != "graceperiod", grace_end < cutoff),
        )
        .order_by(attempt.deadline_at, attempt.id)
        .limit(limit)
    )


def _refuse_unknown_policies(engine: Engine, grace_seconds: int) -> None:
    """An overdue attempt whose exam has an unknown policy is bad input: exit 2, change nothing."""
    attempt, exam = exam_attempts.c, exams.c
    with engine.connect() as conn:
        cutoff = db_now(conn) - timedelta(seconds=grace_seconds)
        query = (
            select(exam.id, exam.overdue_policy)
            .join(exam_attempts, attempt.exam_id == exam.id)
            .where(and_(attempt.status == STATUS_IN_PROGRESS, attempt.deadline_at < cutoff))
            .where(overdue_policy.not_in(OVERDUE_POLICIES))
            .limit(1)
        )
        bad = conn.execute(query).first()
    if bad is not None:
        raise UsageError(
            f"exam {bad.id} has unknown overdue_policy {bad.overdue_policy!r} "
            f"(expected one of {', '.join(OVERDUE_POLICIES)}); nothing was finished"
        )


def _claimed(conn: Connection, query: Select[Any]) -> list[Claimed]:
    return [
        Claimed(row.id, row.exam_id, row.deadline_at, row.overdue_policy, row.passing_score)
        for row in conn.execute(query)
    ]


def _tune_batch_transaction(conn: Connection) -> None:
    if is_postgres(conn):
        # Short, planned-once statements: JIT compilation costs more than it saves here.
        conn.execute(text("SET LOCAL jit = off"))
        # psycopg prepares a statement run 5 times, and after 5 more PostgreSQL may switch it to
        # a generic plan that takes unnest() for one row: nested loops, and a batch took 4-5 s
        # instead of 1 s from the 11th batch on (bench/finish_expired.py).
        conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _result(outcome: Any, *, redis_deleted: int) -> FinishResult:
    return FinishResult(
        finished=outcome.expired + outcome.abandoned,
        expired=outcome.expired,
        abandoned=outcome.abandoned,
        answers_graded=outcome.answers_graded,
        answers_recovered=outcome.answers_recovered,
        redis_deleted=redis_deleted,
    )
