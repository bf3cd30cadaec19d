"""Grading a batch's stored answers where they lie, on PostgreSQL.

A batch of 1,000 attempts holds some 30,000 answers but only a few hundred distinct (question,
answer) pairs. Each pair is read once and graded here by examctl.grading (still the one home of
the rules); one `UPDATE … FROM unnest(pairs)` then writes the grades to every answer row that
holds the pair and returns each attempt's score summed by the server. The answers never travel
to Python, which made reading, decoding and writing them back the bulk of a batch's time.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import Connection

from examctl import grading

NO_ANSWER = ""  # stands for SQL NULL: the text of a JSON value is never empty

# Only answers to a question of the attempt's own exam are graded, as in the Python path: each
# pair carries its question's exam, and the write matches it against the attempt's exam, which
# travels with the batch's ids (claimed and locked: it cannot change meanwhile). So the write
# joins no table but the answers (a nested loop over exam_attempts and questions cost a fifth of
# it). Real tables (not a second unnest) on the exam side keep the pairs query's estimates sane.
_PAIRS = """
SELECT DISTINCT q.exam_id, t.question_id, coalesce(t.answer::text, '')
FROM attempt_answers t
JOIN exam_attempts e ON e.id = t.attempt_id
JOIN questions q ON q.id = t.question_id AND q.exam_id = e.exam_id
WHERE t.attempt_id = ANY(%(ids)s::uuid[])
"""
_WRITE = """
WITH graded AS (
    UPDATE attempt_answers t SET is_correct = g.is_correct, points_awarded = g.points
    FROM unnest(%(ids)s::uuid[], %(exam_ids)s::uuid[]) AS b(attempt_id, exam_id),
         unnest(%(exam_id)s::uuid[], %(question_id)s::uuid[], %(answer)s::text[],
                %(is_correct)s::boolean[], %(points_awarded)s::numeric[])
             AS g(exam_id, question_id, answer, is_correct, points)
    WHERE t.attempt_id = ANY(%(ids)s::uuid[]) AND b.attempt_id = t.attempt_id
      AND g.exam_id = b.exam_id AND g.question_id = t.question_id
      AND g.answer = coalesce(t.answer::text, '')
    RETURNING t.attempt_id, t.points_awarded
)
SELECT attempt_id, sum(points_awarded), count(*) FROM graded GROUP BY attempt_id
"""


class GradedQuestion(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def correct(self) -> object: ...
    @property
    def points(self) -> Decimal: ...


def grade_in_place(
    conn: Connection, exam_of: Mapping[UUID, UUID], questions: Mapping[UUID, GradedQuestion]
) -> tuple[dict[UUID, Decimal], int]:
    """Grade and store every answer of these attempts (id -> exam id) to a question of their
    own exam.

    Returns each attempt's score (attempts without a graded answer are left out) and the number
    of answers graded.
    """
    ids = list(exam_of)
    columns: dict[str, list[Any]] = {
        name: [] for name in ("exam_id", "question_id", "answer", "is_correct", "points_awarded")
    }
    for exam_id, question_id, text in conn.exec_driver_sql(_PAIRS, {"ids": ids}):
        question = questions[question_id]
        value = grading.decode_json(None if text == NO_ANSWER else text)
        grade = grading.grade_answer(question.kind, question.correct, value, question.points)
        row = (exam_id, question_id, text, grade.is_correct, grade.points_awarded)
        for name, item in zip(columns, row, strict=True):
            columns[name].append(item)
    if not columns["answer"]:
        return {}, 0
    batch = {"ids": ids, "exam_ids": [exam_of[a] for a in ids]}
    scores: dict[UUID, Decimal] = {}
    graded = 0
    for attempt_id, score, count in conn.exec_driver_sql(_WRITE, {**batch, **columns}):
        scores[attempt_id] = score
        graded += count
    return scores, graded
