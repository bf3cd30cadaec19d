"""`examctl demo`: a realistic sample in the configured database, and every job run once on it."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, inspect, select

from examctl.db.engine import db_now
from examctl.db.schema import attempt_answers, exam_attempts, exams, proctoring_events, questions
from examctl.errors import UsageError
from examctl.resources import Resources

DEMO_TITLE_PREFIX = "Demo: "

# (title, policy, grace_minutes) — one exam per overdue policy, plus a second autosubmit one.
_EXAMS = [
    ("Geography quiz", "autosubmit", 0),
    ("Algebra midterm", "graceperiod", 10),
    ("Proctored final", "autoabandon", 0),
    ("Open-book essay check", "autosubmit", 0),
]
# (kind, correct, right answer, wrong answer)
_QUESTIONS: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("single", {"choice": "B"}, "B", "D"),
    ("multiple", {"choices": ["A", "C"], "partial_credit": True}, ["C", "A"], ["A", "B"]),
    ("text", {"accepted": ["Paris"], "case_sensitive": False}, "  paris ", "Lyon"),
    ("numeric", {"value": 3.14, "tolerance": 0.005}, "3.141", 2.7),
]
_EVENT_KINDS = ("tab_switch", "face_missing", "copy_paste", "fullscreen_exit")
_EVENT_AGES_DAYS = (0, 3, 45, 120, 200)


@dataclass(frozen=True)
class DemoSample:
    exams: int
    attempts: int
    answers: int
    events: int
    redis_sessions: int


def seed_demo(engine: Engine, res: Resources | None = None, *, seed: int = 7) -> DemoSample:
    """Insert the sample: exams of every policy, attempts in every state, events of every age."""
    rng = random.Random(seed)
    with engine.begin() as conn:
        _refuse_real_data(conn)
        now = db_now(conn)
        exam_rows, question_rows = _exams_and_questions(now)
        attempt_rows, answer_rows, event_rows = [], [], []
        for exam in exam_rows:
            exam_questions = [q for q in question_rows if q["exam_id"] == exam["id"]]
            for spec in _attempt_specs(now):
                attempt, answers = _attempt(rng, exam, exam_questions, now, **spec)
                attempt_rows.append(attempt)
                answer_rows += answers
                event_rows += _events(rng, attempt["id"], now, spec["age_days"])
        conn.execute(insert(exams), exam_rows)
        conn.execute(insert(questions), question_rows)
        conn.execute(insert(exam_attempts), attempt_rows)
        conn.execute(insert(attempt_answers), answer_rows)
        conn.execute(insert(proctoring_events), event_rows)
    sessions = _write_redis_sessions(res, attempt_rows, question_rows, now) if res else 0
    return DemoSample(
        len(exam_rows), len(attempt_rows), len(answer_rows), len(event_rows), sessions
    )


def refuse_real_data(engine: Engine) -> None:
    """UsageError (exit 2) if the database holds real exams. Read-only, so it can run before the
    schema is created: the platform's tables may be there without examctl's."""
    with engine.connect() as conn:
        _refuse_real_data(conn)


def _refuse_real_data(conn: Connection) -> None:
    if not inspect(conn).has_table(exams.name):
        return
    real = conn.execute(
        select(func.count()).select_from(exams).where(~exams.c.title.startswith(DEMO_TITLE_PREFIX))
    ).scalar_one()
    if real:
        raise UsageError(
            f"this database holds {real} real exam(s); the demo writes sample data only into an "
            "empty or demo database (the default sqlite:///examctl.db)"
        )


def _exams_and_questions(now: datetime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    exam_rows, question_rows = [], []
    for title, policy, grace in _EXAMS:
        exam_id = uuid.uuid4()
        exam_rows.append(
            {
                "id": exam_id,
                "title": DEMO_TITLE_PREFIX + title,
                "time_limit_minutes": 45,
                "passing_score": Decimal(60),
                "overdue_policy": policy,
                "grace_minutes": grace,
                "closes_at": now + timedelta(days=7),
            }
        )
        for position, (kind, correct, _, _) in enumerate(_QUESTIONS, start=1):
            question_rows.append(
                {
                    "id": uuid.uuid4(),
                    "exam_id": exam_id,
                    "position": position,
                    "kind": kind,
                    "points": Decimal(position),
                    "correct": correct,
                }
            )
    return exam_rows, question_rows


def _attempt_specs(now: datetime) -> list[dict[str, Any]]:
    """Attempts in every state: live, overdue, overdue within a grace period, finished, old."""
    return (
        [
            {"status": "IN_PROGRESS", "deadline_in": timedelta(minutes=m), "age_days": 0}
            for m in (30, 9, 4, 0.5)
        ]
        + [
            {"status": "IN_PROGRESS", "deadline_in": -timedelta(minutes=m), "age_days": 0}
            for m in (2, 25, 90)
        ]
        + [
            {"status": s, "deadline_in": -timedelta(days=d), "age_days": d}
            for s, d in (
                ("SUBMITTED", 1),
                ("EXPIRED", 3),
                ("ABANDONED", 10),
                ("SUBMITTED", 100),
                ("SUBMITTED", 200),
                ("EXPIRED", 210),
            )
        ]
    )


def _attempt(
    rng: random.Random,
    exam: dict[str, Any],
    exam_questions: list[dict[str, Any]],
    now: datetime,
    *,
    status: str,
    deadline_in: timedelta,
    age_days: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    deadline = now + deadline_in
    started = deadline - timedelta(minutes=exam["time_limit_minutes"])
    attempt_id = uuid.uuid4()
    finished = status != "IN_PROGRESS"
    attempt = {
        "id": attempt_id,
        "exam_id": exam["id"],
        "user_id": uuid.uuid4(),
        "status": status,
        "started_at": started,
        "deadline_at": deadline,
        "finished_at": deadline - timedelta(minutes=5) if finished else None,
        "finished_by": "user" if status == "SUBMITTED" else ("examctl" if finished else None),
    }
    answers = []
    for question, (_, _, right, wrong) in zip(exam_questions, _QUESTIONS, strict=True):
        if rng.random() < 0.15:
            continue  # unanswered
        answers.append(
            {
                "attempt_id": attempt_id,
                "question_id": question["id"],
                "answer": right if rng.random() < 0.7 else wrong,
                "answered_at": started + timedelta(minutes=rng.randint(1, 40)),
            }
        )
    return attempt, answers


def _events(
    rng: random.Random, attempt_id: uuid.UUID, now: datetime, age_days: int
) -> list[dict[str, Any]]:
    base = now - timedelta(days=age_days)
    return [
        {
            "attempt_id": attempt_id,
            "kind": rng.choice(_EVENT_KINDS),
            "occurred_at": base - timedelta(minutes=rng.randint(1, 40)),
            "payload": {"seq": n},
        }
        for n in range(rng.randint(1, 5))
    ]


def _write_redis_sessions(
    res: Resources,
    attempts: list[dict[str, Any]],
    question_rows: list[dict[str, Any]],
    now: datetime,
) -> int:
    """Buffered answers of live attempts, one of them given after the deadline (never counted)."""
    if res.sessions is None:
        return 0
    live = [a for a in attempts if a["status"] == "IN_PROGRESS"]
    pipe = res.sessions.client.pipeline(transaction=False)
    for attempt in live:
        exam_questions = [q for q in question_rows if q["exam_id"] == attempt["exam_id"]]
        fields: dict[str | bytes, str] = {"user_id": str(attempt["user_id"])}
        for question, (_, _, right, _) in zip(exam_questions, _QUESTIONS, strict=True):
            at = min(attempt["deadline_at"] - timedelta(seconds=30), now)
            fields[f"answer:{question['id']}"] = json.dumps({"value": right, "at": at.isoformat()})
        pipe.hset(res.sessions.key(attempt["id"]), mapping=fields)
    pipe.hset(f"{res.sessions.prefix}not-a-uuid", mapping={"junk": "1"})
    with res.sessions.unreachable_is_fatal():
        pipe.execute()
    return len(live)


def run_demo(res: Resources) -> int:
    """Seed, run every job once as cron would, show `status`; returns the exit code."""
    from rich.console import Console
    from rich.markup import escape

    from examctl.db.migrate import init_schema
    from examctl.render import render_report
    from examctl.status import collect_status, render_status

    console = Console()
    # Before any DDL: on a real database, creating examctl's tables and indexes (a plain
    # CREATE INDEX on the live events table) is already a change the refusal must prevent.
    refuse_real_data(res.engine)
    init_schema(res.engine)
    sample = seed_demo(res.engine, res)
    console.rule("[bold]examctl demo")
    console.print(
        f"Sample written to [cyan]{escape(res.settings.database_display)}[/]: {sample.exams} exams "
        f"(every overdue policy, every question kind), {sample.attempts} attempts, "
        f"{sample.answers} answers, {sample.events} proctoring events, "
        f"{sample.redis_sessions} Redis sessions\n"
    )
    reports = [
        res.run_job(job, work, exclusive=exclusive, notes=notes)
        for job, work, exclusive, notes in _demo_jobs(res)
    ]
    for report in reports:
        render_report(report, as_json=False)
        console.print()
    render_status(collect_status(res.engine, res.sessions))
    console.print(
        "\n[dim]Next: `examctl history`, `examctl status --json`, "
        "`examctl restore examctl-archive/manifests/<run-id>.json`[/]"
    )
    return max((r.exit_code for r in reports), default=0)


DemoJob = tuple[str, Callable[[], object], bool, list[str]]


def _demo_jobs(res: Resources) -> list[DemoJob]:
    """Every scheduled job, in the order cron would run them, with the demo's settings."""
    from examctl.jobs.archive import archive
    from examctl.jobs.clean_redis import clean_redis
    from examctl.jobs.finish_expired import finish_expired
    from examctl.jobs.purge_proctoring import purge_proctoring
    from examctl.jobs.remind import remind
    from examctl.notifiers import LogNotifier
    from examctl.stores.archive_store import DEFAULT_DEST, open_store, parse_destination

    def archive_locally() -> object:
        store = open_store(parse_destination(DEFAULT_DEST))
        try:
            return archive(res.engine, store)
        finally:
            store.close()

    no_redis = [] if res.sessions else ["Redis not configured (REDIS_URL): Redis work skipped"]
    return [
        ("finish-expired", lambda: finish_expired(res.engine, res.sessions), False, no_redis),
        (
            "remind",
            lambda: remind(res.engine, LogNotifier(), thresholds=(10, 5, 1)),
            False,
            ["notify: log (reminders are log lines on stderr)"],
        ),
        ("clean-redis", lambda: clean_redis(res.engine, res.sessions), True, []),
        (
            "purge-proctoring",
            lambda: purge_proctoring(res.engine, days=90, batch_size=10_000, dry_run=False),
            True,
            ["events older than 90 days"],
        ),
        (
            "archive",
            archive_locally,
            True,
            [
                f"attempts finished over 180 days ago, to {DEFAULT_DEST}; "
                "`examctl restore` puts them back"
            ],
        ),
    ]
