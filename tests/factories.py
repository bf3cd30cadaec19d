"""Rows for tests, with overrides: `make_attempt(engine, exam, deadline_at=now - 5min)`."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy import Engine, insert, select

from examctl.db.engine import db_now
from examctl.db.schema import attempt_answers, exam_attempts, exams, proctoring_events, questions

SINGLE = ("single", {"choice": "B"})
MULTIPLE = ("multiple", {"choices": ["A", "C"], "partial_credit": False})
TEXT = ("text", {"accepted": ["Paris"], "case_sensitive": False})
NUMERIC = ("numeric", {"value": 3.14, "tolerance": 0.005})


@dataclass(frozen=True)
class Exam:
    id: uuid.UUID
    question_ids: list[uuid.UUID]


def now_of(engine: Engine) -> datetime:
    with engine.connect() as conn:
        return db_now(conn)


def make_exam(
    engine: Engine,
    *,
    policy: str = "autosubmit",
    grace_minutes: int = 0,
    passing_score: Decimal = Decimal(60),
    kinds: list[tuple[str, Any]] | None = None,
    points: list[Decimal] | None = None,
) -> Exam:
    """An exam with one question per kind (single, multiple, text, numeric by default)."""
    kinds = kinds or [SINGLE, MULTIPLE, TEXT, NUMERIC]
    points = points or [Decimal(1)] * len(kinds)
    exam_id = uuid.uuid4()
    question_rows = [
        {
            "id": uuid.uuid4(),
            "exam_id": exam_id,
            "position": i,
            "kind": kind,
            "correct": correct,
            "points": p,
        }
        for i, ((kind, correct), p) in enumerate(zip(kinds, points, strict=True))
    ]
    with engine.begin() as conn:
        conn.execute(
            insert(exams).values(
                id=exam_id,
                title="Test exam",
                time_limit_minutes=30,
                passing_score=passing_score,
                overdue_policy=policy,
                grace_minutes=grace_minutes,
            )
        )
        conn.execute(insert(questions), question_rows)
    return Exam(exam_id, [q["id"] for q in question_rows])


def make_attempt(
    engine: Engine,
    exam: Exam,
    *,
    deadline_at: datetime,
    status: str = "IN_PROGRESS",
    answers: dict[int, Any] | None = None,
    answered_at: datetime | None = None,
    events: list[tuple[str, datetime]] | None = None,
    finished_at: datetime | None = None,
) -> uuid.UUID:
    """An attempt with answers keyed by question index and proctoring events (kind, time)."""
    attempt_id = uuid.uuid4()
    answered_at = answered_at or deadline_at - timedelta(minutes=10)
    with engine.begin() as conn:
        conn.execute(
            insert(exam_attempts).values(
                id=attempt_id,
                exam_id=exam.id,
                user_id=uuid.uuid4(),
                status=status,
                started_at=deadline_at - timedelta(minutes=30),
                deadline_at=deadline_at,
                finished_at=finished_at,
            )
        )
        if answers:
            conn.execute(
                insert(attempt_answers),
                [
                    {
                        "attempt_id": attempt_id,
                        "question_id": exam.question_ids[i],
                        "answer": value,
                        "answered_at": answered_at,
                    }
                    for i, value in answers.items()
                ],
            )
        if events:
            conn.execute(
                insert(proctoring_events),
                [
                    {"attempt_id": attempt_id, "kind": kind, "occurred_at": at}
                    for kind, at in events
                ],
            )
    return attempt_id


def attempt_row(engine: Engine, attempt_id: uuid.UUID) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(exam_attempts).where(exam_attempts.c.id == attempt_id)).one()
    return dict(row._mapping)


def answer_rows(engine: Engine, attempt_id: uuid.UUID) -> dict[uuid.UUID, dict[str, Any]]:
    with engine.connect() as conn:
        rows = (
            conn.execute(select(attempt_answers).where(attempt_answers.c.attempt_id == attempt_id))
            .mappings()
            .all()
        )
    return {row["question_id"]: dict(row) for row in rows}


def put_session(
    client: redis.Redis,
    attempt_id: uuid.UUID,
    answers: dict[uuid.UUID, tuple[Any, datetime]],
    *,
    prefix: str = "exam:attempt:",
    extra: dict[str, str] | None = None,
) -> str:
    """The platform's session hash: answer:<question_id> -> {"value", "at"}."""
    key = f"{prefix}{attempt_id}"
    fields: dict[str, str] = {
        f"answer:{qid}": json.dumps({"value": value, "at": at.astimezone(UTC).isoformat()})
        for qid, (value, at) in answers.items()
    }
    fields.update(extra or {"user_id": "u"})
    client.hset(key, mapping=fields)  # type: ignore[arg-type]
    return key


def seed_overdue_attempts(
    engine: Engine, exam: Exam, count: int, *, redis_clients: list[redis.Redis] | None = None
) -> list[uuid.UUID]:
    """`count` overdue attempts with a mix of right, wrong and missing answers and events;
    half of them have a newer answer buffered in Redis (written to each client given)."""
    now = now_of(engine)
    right = ["B", ["A", "C"], "Paris", 3.14]
    wrong = ["D", ["A"], "Lyon", 2.0]
    attempts, answers, events, sessions = [], [], [], []
    for n in range(count):
        attempt_id = uuid.uuid4()
        deadline = now - timedelta(seconds=10 + n)
        attempts.append(
            {
                "id": attempt_id,
                "exam_id": exam.id,
                "user_id": uuid.uuid4(),
                "status": "IN_PROGRESS",
                "started_at": deadline - timedelta(minutes=30),
                "deadline_at": deadline,
            }
        )
        for i, qid in enumerate(exam.question_ids[:3]):
            value = right[i] if (n + i) % 3 else wrong[i]
            answers.append(
                {
                    "attempt_id": attempt_id,
                    "question_id": qid,
                    "answer": value,
                    "answered_at": deadline - timedelta(minutes=10),
                }
            )
        events += [
            {"attempt_id": attempt_id, "kind": kind, "occurred_at": deadline - timedelta(minutes=m)}
            for m, kind in ((5, "tab_switch"), (3, "face_missing"))[: n % 3]
        ]
        if n % 2:
            sessions.append(
                (
                    attempt_id,
                    {
                        exam.question_ids[3]: (right[3], deadline - timedelta(minutes=1)),
                        exam.question_ids[0]: ("B", deadline - timedelta(minutes=2)),
                    },
                )
            )
    with engine.begin() as conn:
        conn.execute(insert(exam_attempts), attempts)
        conn.execute(insert(attempt_answers), answers)
        if events:
            conn.execute(insert(proctoring_events), events)
    for client in redis_clients or []:
        pipe = client.pipeline(transaction=False)
        for attempt_id, buffered in sessions:
            put_session(pipe, attempt_id, buffered)  # type: ignore[arg-type]
        pipe.execute()
    return [a["id"] for a in attempts]
