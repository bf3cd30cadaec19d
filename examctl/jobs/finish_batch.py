"""The work on one claimed batch of overdue attempts, inside the caller's transaction.

Read everything the batch needs in one query per table, decide in Python (the one home of the
grading rules, the same on PostgreSQL and SQLite), then write back one statement per table.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Text, cast, func, select

from examctl import grading
from examctl.db.bulk import bulk_update, upsert
from examctl.db.engine import is_postgres
from examctl.db.schema import (
    STATUS_IN_PROGRESS,
    attempt_answers,
    exam_attempts,
    proctoring_events,
    questions,
)
from examctl.jobs.grade_on_postgres import grade_in_place
from examctl.stores.redis_sessions import RedisAnswer, RedisSessions

logger = logging.getLogger(__name__)

DEFAULT_PASSING = Decimal(60)  # SPEC §3: exams.passing_score defaults to 60 percent


@dataclass(frozen=True)
class Claimed:
    """An overdue attempt claimed for finishing, with what its exam says about it."""

    id: UUID
    exam_id: UUID
    deadline_at: datetime
    policy: str
    passing_score: Decimal | None


@dataclass(frozen=True)
class Question:
    id: UUID
    kind: str
    points: Decimal
    correct: object


@dataclass
class StoredAnswer:
    id: int | None  # None for an answer recovered from Redis and not yet inserted
    text: str | None  # the answer's JSON text, decoded only when first graded
    answered_at: datetime | None


class AnswerGrader:
    """Grades answers by their JSON text, each distinct (question, text) only once.

    Most students give one of a few answers to a question, so a batch of 30,000 answers holds a
    few hundred distinct ones: decoding and grading those once is what keeps grading in Python
    as fast as grading in SQL. The cache is bounded; free-text answers cannot grow it forever.
    """

    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self._grades: dict[tuple[UUID, str | None], grading.AnswerGrade] = {}

    def grade(self, question: Question, text: str | None, attempt_id: UUID) -> grading.AnswerGrade:
        key = (question.id, text)
        found = self._grades.get(key)
        if found is None:
            found = self._grade_text(question, text, attempt_id)
            if len(self._grades) >= self.MAX_ENTRIES:
                self._grades.clear()
            self._grades[key] = found
        return found

    @staticmethod
    def _grade_text(question: Question, text: str | None, attempt_id: UUID) -> grading.AnswerGrade:
        value = grading.decode_json(text)
        if value is grading.UNPARSEABLE:
            logger.warning(
                "corrupt answer JSON scored 0",
                extra={
                    "action": "answer_unparseable",
                    "attempt_id": str(attempt_id),
                    "question_id": str(question.id),
                },
            )
        return grading.grade_answer(question.kind, question.correct, value, question.points)


@dataclass
class BatchOutcome:
    finished_ids: list[UUID] = field(default_factory=list)
    expired: int = 0
    abandoned: int = 0
    answers_graded: int = 0
    answers_recovered: int = 0


def finish_batch(
    conn: Connection,
    sessions: RedisSessions | None,
    claimed: list[Claimed],
    now: datetime,
    *,
    grader: AnswerGrader,
    write: bool,
) -> BatchOutcome:
    """Recover, grade and finish `claimed`; with write=False only count what would happen."""
    ids = [c.id for c in claimed]
    exam_questions = _load_questions(conn, {c.exam_id for c in claimed})
    redis_answers = sessions.answers(ids) if sessions is not None else {}
    if write and is_postgres(conn):
        return _finish_on_postgres(conn, claimed, exam_questions, redis_answers, now)
    stored = _load_answers(conn, ids)
    recovered = _recover(claimed, stored, redis_answers, exam_questions)
    if write and recovered:
        _write_recovered(conn, recovered)
        # Read back the ids of the rows just written; the grades are stored against them.
        stored.update(_load_answers(conn, sorted({row["attempt_id"] for row in recovered})))
    outcome = BatchOutcome(finished_ids=ids, answers_recovered=len(recovered))
    summaries = _proctoring_summaries(conn, ids)
    attempt_rows, grade_rows = [], []
    for attempt in claimed:
        row = _finished_row(attempt, summaries.get(attempt.id) or empty_summary(), now)
        if attempt.policy == "autosubmit":
            grades = _grade_attempt(attempt, exam_questions, stored, grader)
            row.update(_totals(attempt, exam_questions, [g["points_awarded"] for g in grades]))
            grade_rows += grades
        attempt_rows.append(row)
    outcome.expired = sum(row["status"] == "EXPIRED" for row in attempt_rows)
    outcome.abandoned = len(attempt_rows) - outcome.expired
    outcome.answers_graded = len(grade_rows)
    if write:
        bulk_update(conn, attempt_answers, grade_rows)
        bulk_update(
            conn, exam_attempts, attempt_rows, only_if=exam_attempts.c.status == STATUS_IN_PROGRESS
        )
    return outcome


def _finish_on_postgres(
    conn: Connection,
    claimed: list[Claimed],
    exam_questions: dict[UUID, list[Question]],
    redis_answers: dict[UUID, list[RedisAnswer]],
    now: datetime,
) -> BatchOutcome:
    """finish_batch on PostgreSQL: the answers are graded where they lie (grade_in_place).

    The same grading rules, applied to each distinct (question, answer text) of the batch; the
    30,000 answers of a batch never travel to Python and back (bench/finish_expired.py).
    """
    ids = [c.id for c in claimed]
    # Only attempts with a Redis session need their stored answers, to see which are newer.
    stored = _load_answers(conn, [a for a in ids if redis_answers.get(a)])
    recovered = _recover(claimed, stored, redis_answers, exam_questions)
    _write_recovered(conn, recovered)
    questions_by_id = {q.id: q for qs in exam_questions.values() for q in qs}
    autosubmit = {c.id: c.exam_id for c in claimed if c.policy == "autosubmit"}
    scores, graded = grade_in_place(conn, autosubmit, questions_by_id) if autosubmit else ({}, 0)
    summaries = _proctoring_summaries(conn, ids)
    rows = []
    for attempt in claimed:
        row = _finished_row(attempt, summaries.get(attempt.id) or empty_summary(), now)
        if attempt.policy == "autosubmit":
            awarded = [scores[attempt.id]] if attempt.id in scores else []
            row.update(_totals(attempt, exam_questions, awarded))
        rows.append(row)
    bulk_update(conn, exam_attempts, rows, only_if=exam_attempts.c.status == STATUS_IN_PROGRESS)
    expired = sum(row["status"] == "EXPIRED" for row in rows)
    return BatchOutcome(ids, expired, len(rows) - expired, graded, len(recovered))


def _finished_row(attempt: Claimed, summary: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The attempt's new row as ABANDONED; autosubmit overwrites status and the totals."""
    return {
        "id": attempt.id,
        "status": "ABANDONED",
        "finished_at": now,
        "finished_by": "examctl",
        "proctoring_summary": summary,
        "score": None,
        "max_score": None,
        "percent": None,
        "passed": None,
    }


def _grade_attempt(
    attempt: Claimed,
    exam_questions: dict[UUID, list[Question]],
    stored: dict[UUID, dict[UUID, StoredAnswer]],
    grader: AnswerGrader,
) -> list[dict[str, Any]]:
    """Grade rows for the attempt's stored answers to its exam's questions."""
    answers = stored.get(attempt.id, {})
    rows = []
    for question in exam_questions.get(attempt.exam_id, []):
        answer = answers.get(question.id)
        if answer is not None:
            grade = grader.grade(question, answer.text, attempt.id)
            rows.append(
                {
                    "id": answer.id,
                    "is_correct": grade.is_correct,
                    "points_awarded": grade.points_awarded,
                }
            )
    return rows


def _totals(
    attempt: Claimed, exam_questions: dict[UUID, list[Question]], awarded: list[Decimal]
) -> dict[str, Any]:
    passing = attempt.passing_score if attempt.passing_score is not None else DEFAULT_PASSING
    totals = grading.totals(
        awarded,
        [q.points for q in exam_questions.get(attempt.exam_id, [])],
        passing,
    )
    return {
        "status": "EXPIRED",
        "score": totals.score,
        "max_score": totals.max_score,
        "percent": totals.percent,
        "passed": totals.passed,
    }


def _load_questions(conn: Connection, exam_ids: set[UUID]) -> dict[UUID, list[Question]]:
    q = questions.c
    query = (
        select(q.id, q.exam_id, q.kind, q.points, cast(q.correct, Text).label("correct"))
        .where(q.exam_id.in_(exam_ids))
        .order_by(q.exam_id, q.position, q.id)
    )
    by_exam: dict[UUID, list[Question]] = defaultdict(list)
    for row in conn.execute(query):
        points = _sane_points(row.id, row.points)
        by_exam[row.exam_id].append(
            Question(row.id, row.kind, points, grading.decode_json(row.correct))
        )
    return by_exam


def _sane_points(question_id: UUID, points: Decimal | None) -> Decimal:
    """SPEC §3's default of 1; NaN or negative points (bad data) count as 0, with a log line."""
    if points is None:
        return Decimal(1)
    if points.is_finite() and points >= 0:
        return points
    logger.warning(
        "question points unusable, counted as 0",
        extra={"action": "question_points_invalid", "question_id": str(question_id)},
    )
    return Decimal(0)


def _load_answers(conn: Connection, ids: list[UUID]) -> dict[UUID, dict[UUID, StoredAnswer]]:
    a = attempt_answers.c
    query = select(
        a.id, a.attempt_id, a.question_id, cast(a.answer, Text).label("answer"), a.answered_at
    ).where(a.attempt_id.in_(ids))
    by_attempt: dict[UUID, dict[UUID, StoredAnswer]] = defaultdict(dict)
    for row in conn.execute(query):
        by_attempt[row.attempt_id][row.question_id] = StoredAnswer(
            row.id, row.answer, row.answered_at
        )
    return by_attempt


def _recover(
    claimed: list[Claimed],
    stored: dict[UUID, dict[UUID, StoredAnswer]],
    redis_answers: dict[UUID, list[RedisAnswer]],
    exam_questions: dict[UUID, list[Question]],
) -> list[dict[str, Any]]:
    """Redis answers that win over the database's: given before the deadline, and newer.

    Returns the rows to upsert (one per attempt and question), and merges them into `stored` so
    they are graded.
    """
    rows: dict[tuple[UUID, UUID], dict[str, Any]] = {}
    for attempt in claimed:
        known = {q.id for q in exam_questions.get(attempt.exam_id, [])}
        for answer in redis_answers.get(attempt.id, []):
            if answer.question_id not in known or answer.at > attempt.deadline_at:
                continue  # another exam's question, or given too late: never counted
            answers = stored.setdefault(attempt.id, {})
            if _redis_wins(answers.get(answer.question_id), answer, attempt.deadline_at):
                answers[answer.question_id] = StoredAnswer(
                    None, json.dumps(answer.value), answer.at
                )
                rows[attempt.id, answer.question_id] = {
                    "attempt_id": attempt.id,
                    "question_id": answer.question_id,
                    "answer": answer.value,
                    "answered_at": answer.at,
                }
    return list(rows.values())


def _redis_wins(current: StoredAnswer | None, answer: RedisAnswer, deadline: datetime) -> bool:
    """An on-time Redis answer replaces no answer, an older one, or one stored after the
    deadline (SPEC §6: no answer that reached Redis before the deadline is lost)."""
    if current is None or current.answered_at is None:
        return True
    return current.answered_at < answer.at or current.answered_at > deadline


def _write_recovered(conn: Connection, rows: list[dict[str, Any]]) -> None:
    a, attempt = attempt_answers.c, exam_attempts.c
    deadline = select(attempt.deadline_at).where(attempt.id == a.attempt_id).scalar_subquery()
    upsert(
        conn,
        attempt_answers,
        rows,
        conflict=["attempt_id", "question_id"],
        update_columns=["answer", "answered_at"],
        # The same rule as _redis_wins, in case the platform wrote meanwhile.
        only_if=lambda excluded: (
            a.answered_at.is_(None)
            | (a.answered_at < excluded.answered_at)
            | (a.answered_at > deadline)
        ),
    )


def _proctoring_summaries(conn: Connection, ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """SPEC §5's summary per attempt, from one grouped query."""
    e = proctoring_events.c
    query = (
        select(e.attempt_id, e.kind, func.count(), func.min(e.occurred_at), func.max(e.occurred_at))
        .where(e.attempt_id.in_(ids))
        .group_by(e.attempt_id, e.kind)
    )
    counts: dict[UUID, Counter[str]] = defaultdict(Counter)
    bounds: dict[UUID, list[datetime]] = defaultdict(list)
    for attempt_id, kind, count, first_at, last_at in conn.execute(query):
        counts[attempt_id][kind] += count
        bounds[attempt_id] += [t for t in (first_at, last_at) if t is not None]
    return {a: _summary(counts[a], bounds[a]) for a in counts}


def _summary(by_kind: Counter[str], times: list[datetime]) -> dict[str, Any]:
    return {
        "total": sum(by_kind.values()),
        "by_kind": dict(sorted(by_kind.items())),
        "first_at": min(times).isoformat() if times else None,
        "last_at": max(times).isoformat() if times else None,
    }


def empty_summary() -> dict[str, Any]:
    return _summary(Counter(), [])
