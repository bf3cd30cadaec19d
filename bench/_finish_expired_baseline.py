"""The baseline of bench/finish_expired.py: the Celery task's shape, one transaction per attempt.

    python bench/_finish_expired_baseline.py DATABASE_URL     # prints {"finished", "longest_s"}

For each overdue attempt: lock it (SELECT … FOR UPDATE), select its exam's questions and its
answers, grade in Python with examctl.grading (so both contenders produce identical figures),
UPDATE each answer row, one query for the proctoring summary, UPDATE the attempt, commit.
psycopg 3 directly, no examctl code but grading. It runs as a process of its own so that its
peak RSS is measured exactly as examctl's is.
"""

from __future__ import annotations

import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's examctl

import psycopg
from psycopg.types.json import Jsonb

from examctl import grading

APPLICATION_NAME = "bench-baseline"


def main(url: str) -> int:
    """Child process: finish every overdue attempt, one transaction each; print figures as JSON."""
    conn = psycopg.connect(
        url, autocommit=True, application_name=APPLICATION_NAME, options="-c timezone=UTC"
    )
    ids = [row[0] for row in conn.execute(_OVERDUE_SQL)]
    finished, longest = 0, 0.0
    for attempt_id in ids:
        started = time.perf_counter()
        with conn.transaction():
            finished += finish_one(conn, attempt_id)
        longest = max(longest, time.perf_counter() - started)
    conn.close()
    print(json.dumps({"finished": finished, "longest_s": longest}))
    return 0


_OVERDUE_SQL = (
    "SELECT id FROM exam_attempts WHERE status = 'IN_PROGRESS' AND deadline_at < now() "
    "ORDER BY deadline_at"
)


def finish_one(conn: Any, attempt_id: UUID) -> int:
    attempt = conn.execute(
        "SELECT a.status, a.exam_id, x.passing_score FROM exam_attempts a "
        "JOIN exams x ON x.id = a.exam_id WHERE a.id = %s FOR UPDATE OF a",
        (attempt_id,),
    ).fetchone()
    if attempt is None or attempt[0] != "IN_PROGRESS":
        return 0  # finished meanwhile by someone else
    _status, exam_id, passing_score = attempt
    questions = conn.execute(
        "SELECT id, kind, coalesce(points, 1), correct::text FROM questions "
        "WHERE exam_id = %s ORDER BY position, id",
        (exam_id,),
    ).fetchall()
    answers = {
        question_id: (answer_id, text)
        for answer_id, question_id, text in conn.execute(
            "SELECT id, question_id, answer::text FROM attempt_answers WHERE attempt_id = %s",
            (attempt_id,),
        )
    }
    awarded = []
    for question_id, kind, points, correct in questions:
        if question_id not in answers:
            continue
        answer_id, text = answers[question_id]
        grade = grading.grade_answer(
            kind, grading.decode_json(correct), grading.decode_json(text), points
        )
        conn.execute(
            "UPDATE attempt_answers SET is_correct = %s, points_awarded = %s WHERE id = %s",
            (grade.is_correct, grade.points_awarded, answer_id),
        )
        awarded.append(grade.points_awarded)
    totals = grading.totals(
        awarded,
        [q[2] for q in questions],
        passing_score if passing_score is not None else Decimal(60),
    )
    conn.execute(
        "UPDATE exam_attempts SET status = 'EXPIRED', finished_at = now(), "
        "finished_by = 'examctl', score = %s, max_score = %s, percent = %s, passed = %s, "
        "proctoring_summary = %s WHERE id = %s",
        (
            totals.score,
            totals.max_score,
            totals.percent,
            totals.passed,
            Jsonb(proctoring_summary(conn, attempt_id)),
            attempt_id,
        ),
    )
    return 1


def proctoring_summary(conn: Any, attempt_id: UUID) -> dict[str, Any]:
    by_kind, times = {}, []
    for kind, count, first_at, last_at in conn.execute(
        "SELECT kind, count(*), min(occurred_at), max(occurred_at) FROM proctoring_events "
        "WHERE attempt_id = %s GROUP BY kind ORDER BY kind",
        (attempt_id,),
    ):
        by_kind[kind] = count
        times += [t for t in (first_at, last_at) if t is not None]
    return {
        "total": sum(by_kind.values()),
        "by_kind": by_kind,
        "first_at": min(times).isoformat() if times else None,
        "last_at": max(times).isoformat() if times else None,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
