"""The data of bench/finish_expired.py, built with set-based SQL (generate_series) in one go.

A few exams of `answers` questions each (kinds single / multiple / text / numeric in turn, points
1 / 2 / 0.5), and:

- `attempts` overdue IN_PROGRESS attempts (deadlines spread over the last two days), each with
  an answer to every question (right, wrong, partly right, malformed, 2 % unanswered) and
  `events` proctoring events;
- live IN_PROGRESS attempts (deadline two hours or more ahead) and SUBMITTED attempts, with
  answers and events too: no contender may touch them (`untouched_fingerprint`).

Rows are inserted in the order the platform would have written them (answers by answered_at,
events by occurred_at), so the answers of one attempt are spread over the heap as in production.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

KINDS = ("single", "multiple", "text", "numeric")
EVENT_KINDS = ("tab_switch", "face_missing", "multiple_faces", "copy_paste", "fullscreen_exit")
EXAMS = 4
TIME_LIMIT_MINUTES = 180
# Overdue attempts are finished; these never are. Stable for as long as a run takes (< 2 h).
UNTOUCHED = "(a.status = 'SUBMITTED' OR a.deadline_at > now())"


def question_key(position: int) -> tuple[str, dict[str, Any], Decimal]:
    """Kind, `correct` and points of the question at `position` (the same in every exam)."""
    kind, variant = KINDS[position % 4], position // 4 % 3
    keys: dict[str, list[dict[str, Any]]] = {
        "single": [{"choice": c} for c in "BDA"],
        "multiple": [
            {"choices": ["A", "C"], "partial_credit": False},
            {"choices": ["B", "D", "E"], "partial_credit": True},
            {"choices": ["A", "B"], "partial_credit": True},
        ],
        "text": [
            {"accepted": ["Paris"], "case_sensitive": False},
            {"accepted": ["photosynthesis", "photo-synthesis"]},
            {"accepted": ["H2O"], "case_sensitive": True},
        ],
        "numeric": [
            {"value": 3.14, "tolerance": 0.005},
            {"value": "9.81", "tolerance": "0.01"},
            {"value": 42},
        ],
    }
    points = (Decimal(1), Decimal(2), Decimal("0.5"))[position // 3 % 3]
    return kind, keys[kind][variant], points


def right_answer(kind: str, correct: dict[str, Any]) -> Any:
    """What a student who knows the answer submits (used for the Redis sessions)."""
    return {
        "single": lambda: correct["choice"],
        "multiple": lambda: correct["choices"],
        "text": lambda: correct["accepted"][0],
        "numeric": lambda: correct["value"],
    }[kind]()


def build(conn: psycopg.Connection[Any], *, attempts: int, answers: int, events: int) -> None:
    """Fill an empty examctl schema; commits once at the end."""
    _exams(conn, answers)
    live, submitted = max(100, attempts // 10), max(100, attempts // 20)
    _attempts(conn, attempts, live, submitted)
    conn.execute(_ANSWERS)
    conn.execute(_EVENTS, {"events": events})
    conn.commit()


def _exams(conn: psycopg.Connection[Any], answers: int) -> None:
    for number in range(EXAMS):
        exam_id = uuid.uuid4()
        conn.execute(
            "INSERT INTO exams (id, title, time_limit_minutes, passing_score, overdue_policy, "
            "grace_minutes) VALUES (%s, %s, %s, %s, 'autosubmit', 0)",
            (exam_id, f"Bench exam {number}", TIME_LIMIT_MINUTES, (50, 60, 70, 55.5)[number % 4]),
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO questions (id, exam_id, position, kind, points, correct) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (uuid.uuid4(), exam_id, p, kind, points, Jsonb(correct))
                    for p, (kind, correct, points) in ((p, question_key(p)) for p in range(answers))
                ],
            )


def _attempts(conn: psycopg.Connection[Any], overdue: int, live: int, submitted: int) -> None:
    # g spreads the attempts over the exams; deadlines come from random() per row.
    exam_of_g = (
        "JOIN (SELECT id, row_number() OVER (ORDER BY title) - 1 AS k FROM exams) x "
        f"ON x.k = s.g %% {EXAMS}"
    )
    limit = f"interval '{TIME_LIMIT_MINUTES} minutes'"
    conn.execute(
        "INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at) "
        f"SELECT gen_random_uuid(), x.id, gen_random_uuid(), 'IN_PROGRESS', s.d - {limit}, s.d "
        "FROM (SELECT g, now() - interval '1 minute' - random() * interval '2 days' AS d "
        f"      FROM generate_series(1, %(n)s) g) s {exam_of_g}",
        {"n": overdue},
    )
    conn.execute(
        "INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at) "
        f"SELECT gen_random_uuid(), x.id, gen_random_uuid(), 'IN_PROGRESS', s.d, s.d + {limit} "
        "FROM (SELECT g, now() - random() * interval '60 minutes' AS d "
        f"      FROM generate_series(1, %(n)s) g) s {exam_of_g}",
        {"n": live},
    )
    conn.execute(
        "INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at, "
        "  finished_at, finished_by, score, max_score, percent, passed) "
        f"SELECT gen_random_uuid(), x.id, gen_random_uuid(), 'SUBMITTED', s.d - {limit}, s.d, "
        "  s.d - interval '10 minutes', 'user', 20, 30, 66.67, true "
        "FROM (SELECT g, now() - random() * interval '3 days' AS d "
        f"      FROM generate_series(1, %(n)s) g) s {exam_of_g}",
        {"n": submitted},
    )


# One answer per (attempt, question): right ~40-65 %, otherwise wrong, partly right (multiple
# with partial credit), of the wrong shape, or unanswered (SQL NULL, 2 %).
_ANSWERS = """
INSERT INTO attempt_answers (attempt_id, question_id, answer, answered_at)
SELECT s.attempt_id, s.question_id,
  CASE
    WHEN s.r2 < 0.02 THEN NULL
    WHEN s.kind = 'single' THEN CASE
      WHEN s.r < 0.65 THEN s.correct -> 'choice'
      ELSE to_jsonb(chr(65 + (s.r * 1000)::int % 5)) END
    WHEN s.kind = 'multiple' THEN CASE
      WHEN s.r < 0.45 THEN s.correct -> 'choices'
      WHEN s.r < 0.55 THEN (SELECT jsonb_agg(c ORDER BY c DESC)
                            FROM jsonb_array_elements_text(s.correct -> 'choices') c)
      WHEN s.r < 0.70 THEN jsonb_build_array(s.correct -> 'choices' -> 0)
      WHEN s.r < 0.85 THEN (s.correct -> 'choices') || '["F"]'::jsonb
      WHEN s.r < 0.97 THEN '["E", "F"]'::jsonb
      ELSE '"A"'::jsonb END
    WHEN s.kind = 'text' THEN CASE
      WHEN s.r < 0.40 THEN s.correct -> 'accepted' -> 0
      WHEN s.r < 0.55 THEN to_jsonb('  ' || upper(s.correct -> 'accepted' ->> 0) || '  ')
      WHEN s.r < 0.65 THEN to_jsonb(lower(s.correct -> 'accepted' ->> -1))
      WHEN s.r < 0.90 THEN '"Lyon"'::jsonb
      WHEN s.r < 0.96 THEN '"   "'::jsonb
      ELSE '42'::jsonb END
    ELSE CASE
      WHEN s.r < 0.40 THEN s.correct -> 'value'
      WHEN s.r < 0.55 THEN to_jsonb(s.correct ->> 'value')
      WHEN s.r < 0.65 THEN to_jsonb((s.correct ->> 'value')::numeric + 0.003)
      WHEN s.r < 0.90 THEN to_jsonb(((s.correct ->> 'value')::numeric * 2)::text)
      WHEN s.r < 0.96 THEN '"3,14"'::jsonb
      ELSE '"abc"'::jsonb END
  END,
  s.answered_at
FROM (
  SELECT a.id AS attempt_id, q.id AS question_id, q.kind, q.correct, random() AS r,
         random() AS r2,
         least(now(), a.deadline_at - (1 + random() * 170) * interval '1 minute') AS answered_at
  FROM exam_attempts a JOIN questions q ON q.exam_id = a.exam_id
) s
ORDER BY s.answered_at
"""

_EVENTS = """
INSERT INTO proctoring_events (attempt_id, kind, occurred_at, payload)
SELECT s.attempt_id, s.kind, s.occurred_at, s.payload
FROM (
  SELECT a.id AS attempt_id,
         (ARRAY['tab_switch', 'face_missing', 'multiple_faces', 'copy_paste',
                'fullscreen_exit'])[1 + floor(random() * 5)::int] AS kind,
         least(now(), a.started_at + random() * (a.deadline_at - a.started_at)) AS occurred_at,
         jsonb_build_object('confidence', round(random()::numeric, 2), 'seq', e) AS payload
  FROM exam_attempts a CROSS JOIN generate_series(1, %(events)s) e
) s
ORDER BY s.occurred_at
"""


def untouched_fingerprint(conn: psycopg.Connection[Any]) -> tuple[int, int, int, str]:
    """Counts and an md5 of every column of the attempts and answers no contender may change."""
    row = conn.execute(
        f"""
        SELECT (SELECT count(*) FROM exam_attempts a WHERE {UNTOUCHED}),
               (SELECT count(*) FROM attempt_answers t JOIN exam_attempts a
                  ON a.id = t.attempt_id WHERE {UNTOUCHED}),
               (SELECT count(*) FROM proctoring_events t JOIN exam_attempts a
                  ON a.id = t.attempt_id WHERE {UNTOUCHED}),
               md5((SELECT string_agg(a::text, E'\\n' ORDER BY a.id)
                    FROM exam_attempts a WHERE {UNTOUCHED})
                   || (SELECT string_agg(t::text, E'\\n' ORDER BY t.id)
                       FROM attempt_answers t JOIN exam_attempts a ON a.id = t.attempt_id
                       WHERE {UNTOUCHED}))
        """
    ).fetchone()
    assert row is not None
    conn.commit()
    return row[0], row[1], row[2], row[3]


def overdue_ids(conn: psycopg.Connection[Any]) -> list[uuid.UUID]:
    rows = conn.execute(
        "SELECT id FROM exam_attempts WHERE status = 'IN_PROGRESS' AND deadline_at < now() "
        "ORDER BY id"
    ).fetchall()
    conn.commit()
    return [r[0] for r in rows]
