"""finish-expired on PostgreSQL and SQLite: policies, grace, grading, Redis recovery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import redis
from sqlalchemy import Engine, text

from examctl.db.engine import make_engine
from examctl.errors import JobFailed, ServiceUnavailable, UsageError
from examctl.jobs.finish_expired import FinishResult, finish_expired
from examctl.stores.redis_sessions import RedisSessions
from tests.factories import (
    answer_rows,
    attempt_row,
    make_attempt,
    make_exam,
    now_of,
    put_session,
)

RIGHT = {0: "B", 1: ["C", "A"], 2: " paris ", 3: "3.14"}


def test_finish_expired__autosubmit_overdue__graded_and_expired(engine: Engine) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    attempt = make_attempt(
        engine, exam, deadline_at=now - timedelta(minutes=1), answers={0: "B", 1: ["A"], 2: "PARIS"}
    )

    result = finish_expired(engine, None)

    assert result == FinishResult(finished=1, expired=1, answers_graded=3)
    row = attempt_row(engine, attempt)
    assert row["status"] == "EXPIRED"
    assert row["finished_by"] == "examctl"
    assert row["score"] == Decimal(2) and row["max_score"] == Decimal(4)
    assert row["percent"] == Decimal("50.00") and row["passed"] is False
    assert row["finished_at"] >= now
    answers = answer_rows(engine, attempt)
    assert [answers[q]["is_correct"] for q in exam.question_ids[:3]] == [True, False, True]


def test_finish_expired__not_yet_due__untouched(engine: Engine) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) + timedelta(minutes=1))

    assert finish_expired(engine, None) == FinishResult()
    assert attempt_row(engine, attempt)["status"] == "IN_PROGRESS"


def test_finish_expired__grace_seconds__waits_then_finishes(engine: Engine) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(seconds=30))

    assert finish_expired(engine, None, grace_seconds=60).finished == 0
    assert finish_expired(engine, None, grace_seconds=10).finished == 1
    assert attempt_row(engine, attempt)["status"] == "EXPIRED"


def test_finish_expired__autoabandon__abandoned_not_graded(engine: Engine) -> None:
    exam = make_exam(engine, policy="autoabandon")
    attempt = make_attempt(
        engine, exam, deadline_at=now_of(engine) - timedelta(seconds=5), answers=RIGHT
    )

    assert finish_expired(engine, None) == FinishResult(finished=1, abandoned=1)
    row = attempt_row(engine, attempt)
    assert row["status"] == "ABANDONED" and row["score"] is None and row["passed"] is None
    assert all(a["points_awarded"] is None for a in answer_rows(engine, attempt).values())


def test_finish_expired__graceperiod_within_grace__untouched(engine: Engine) -> None:
    exam = make_exam(engine, policy="graceperiod", grace_minutes=10)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=9))

    assert finish_expired(engine, None).finished == 0
    assert attempt_row(engine, attempt)["status"] == "IN_PROGRESS"


def test_finish_expired__graceperiod_past_grace__abandoned(engine: Engine) -> None:
    exam = make_exam(engine, policy="graceperiod", grace_minutes=10)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=11))

    assert finish_expired(engine, None).abandoned == 1
    assert attempt_row(engine, attempt)["status"] == "ABANDONED"


def test_finish_expired__graceperiod_plus_grace_seconds__both_apply(engine: Engine) -> None:
    exam = make_exam(engine, policy="graceperiod", grace_minutes=1)
    make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(seconds=90))

    assert finish_expired(engine, None, grace_seconds=60).finished == 0
    assert finish_expired(engine, None, grace_seconds=10).finished == 1


def test_finish_expired__proctoring_summary__written(engine: Engine) -> None:
    exam = make_exam(engine, policy="autoabandon")
    now = now_of(engine)
    first, last = now - timedelta(minutes=20), now - timedelta(minutes=3)
    events = [
        ("tab_switch", first),
        ("tab_switch", now - timedelta(minutes=9)),
        ("face_missing", last),
    ]
    attempt = make_attempt(engine, exam, deadline_at=now - timedelta(minutes=1), events=events)

    finish_expired(engine, None)

    summary = attempt_row(engine, attempt)["proctoring_summary"]
    assert summary == {
        "total": 3,
        "by_kind": {"face_missing": 1, "tab_switch": 2},
        "first_at": first.isoformat(),
        "last_at": last.isoformat(),
    }


def test_finish_expired__no_events__empty_summary(engine: Engine) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=1))

    finish_expired(engine, None)

    assert attempt_row(engine, attempt)["proctoring_summary"] == {
        "total": 0,
        "by_kind": {},
        "first_at": None,
        "last_at": None,
    }


def test_finish_expired__dry_run__counts_and_changes_nothing(engine: Engine) -> None:
    exam = make_exam(engine)
    abandon = make_exam(engine, policy="autoabandon")
    now = now_of(engine)
    attempts = [
        make_attempt(engine, exam, deadline_at=now - timedelta(minutes=m), answers=RIGHT)
        for m in (1, 2, 3)
    ]
    attempts.append(make_attempt(engine, abandon, deadline_at=now - timedelta(minutes=1)))

    result = finish_expired(engine, None, dry_run=True, batch_size=2)

    assert result == FinishResult(finished=4, expired=3, abandoned=1, answers_graded=12)
    assert {attempt_row(engine, a)["status"] for a in attempts} == {"IN_PROGRESS"}


def test_finish_expired__small_batches__every_attempt_once(engine: Engine) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    for minutes in range(1, 8):
        make_attempt(engine, exam, deadline_at=now - timedelta(minutes=minutes), answers={0: "B"})

    assert finish_expired(engine, None, batch_size=3) == FinishResult(
        finished=7, expired=7, answers_graded=7
    )
    assert finish_expired(engine, None) == FinishResult()


def test_finish_expired__corrupt_answer_json__scores_zero_and_logs(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Only SQLite's text column can hold corrupt JSON; jsonb refuses it on the way in.
    engine = make_engine(sqlite_url)
    exam = make_exam(engine)
    attempt = make_attempt(
        engine,
        exam,
        deadline_at=now_of(engine) - timedelta(minutes=1),
        answers={0: "B", 1: ["A", "C"]},
    )
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE attempt_answers SET answer = '{not json' WHERE question_id = :q"),
            {"q": exam.question_ids[0].hex},
        )

    result = finish_expired(engine, None)

    assert result.expired == 1
    assert attempt_row(engine, attempt)["score"] == Decimal(1)
    assert any(getattr(r, "attempt_id", None) == str(attempt) for r in caplog.records)


def test_finish_expired__corrupt_correct_json__question_scores_zero_but_counts(
    engine: Engine,
) -> None:
    exam = make_exam(engine, kinds=[("single", {"choise": "B"}), ("single", {"choice": "B"})])
    attempt = make_attempt(
        engine, exam, deadline_at=now_of(engine) - timedelta(minutes=1), answers={0: "B", 1: "B"}
    )

    finish_expired(engine, None)

    row = attempt_row(engine, attempt)
    assert (row["score"], row["max_score"], row["percent"]) == (1, 2, Decimal("50.00"))


def test_finish_expired__unknown_policy__usage_error_nothing_changed(engine: Engine) -> None:
    good = make_exam(engine)
    bad = make_exam(engine, policy="autosubmitt")
    now = now_of(engine)
    kept = make_attempt(engine, good, deadline_at=now - timedelta(minutes=1))
    make_attempt(engine, bad, deadline_at=now - timedelta(minutes=1))

    with pytest.raises(UsageError, match="unknown overdue_policy 'autosubmitt'"):
        finish_expired(engine, None)
    assert attempt_row(engine, kept)["status"] == "IN_PROGRESS"


def test_finish_expired__policy_null__finished_as_autosubmit(engine: Engine) -> None:
    # The column's default, as NULL passing_score and grace_minutes take theirs.
    exam = make_exam(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE exams SET overdue_policy = NULL"))
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=1))

    result = finish_expired(engine, None)

    assert (result.finished, result.expired) == (1, 1)
    assert attempt_row(engine, attempt)["status"] == "EXPIRED"


def test_finish_expired__dry_run_with_redis__counts_only_sessions_that_exist(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    overdue = now_of(engine) - timedelta(minutes=1)
    with_session = make_attempt(engine, exam, deadline_at=overdue)
    make_attempt(engine, exam, deadline_at=overdue)
    put_session(redis_client, with_session, {})
    sessions = RedisSessions(redis_url, "exam:attempt:")

    dry = finish_expired(engine, sessions, dry_run=True)

    assert (dry.finished, dry.redis_deleted) == (2, 1)
    assert finish_expired(engine, sessions) == dry


def test_finish_expired__redis_lost_after_commit__batch_counted_in_the_error(
    engine: Engine, redis_url: str
) -> None:
    class LostAfterCommit(RedisSessions):  # Redis goes away between the commit and the UNLINK
        def delete(self, attempt_ids: object) -> int:
            raise ServiceUnavailable("Redis unreachable at redis://…: connection reset")

    exam = make_exam(engine)
    for minutes in (1, 2, 3):
        make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=minutes))

    with pytest.raises(ServiceUnavailable) as raised:
        finish_expired(engine, LostAfterCommit(redis_url, "exam:attempt:"), batch_size=3, workers=1)

    assert raised.value.partial == FinishResult(finished=3, expired=3, answers_graded=0)


# --- Redis --------------------------------------------------------------------------------------


def test_finish_expired__redis_answers__recovered_graded_session_deleted(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    deadline = now - timedelta(minutes=1)
    attempt = make_attempt(
        engine,
        exam,
        deadline_at=deadline,
        answers={0: "D"},
        answered_at=deadline - timedelta(minutes=20),
    )
    q = exam.question_ids
    key = put_session(
        redis_client,
        attempt,
        {
            q[0]: ("B", deadline - timedelta(minutes=5)),  # newer than the database's: wins
            q[1]: (["A", "C"], deadline - timedelta(seconds=1)),  # only in Redis: recovered
            q[2]: ("Paris", deadline + timedelta(seconds=1)),  # after the deadline: never counted
        },
    )

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert result == FinishResult(
        finished=1, expired=1, answers_graded=2, answers_recovered=2, redis_deleted=1
    )
    answers = answer_rows(engine, attempt)
    assert answers[q[0]]["answer"] == "B" and answers[q[0]]["is_correct"] is True
    assert answers[q[1]]["answer"] == ["A", "C"]
    assert q[2] not in answers
    assert attempt_row(engine, attempt)["score"] == 2
    assert not redis_client.exists(key)


def test_finish_expired__database_answer_newer__kept(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    deadline = now_of(engine) - timedelta(minutes=1)
    attempt = make_attempt(
        engine,
        exam,
        deadline_at=deadline,
        answers={0: "B"},
        answered_at=deadline - timedelta(minutes=1),
    )
    put_session(
        redis_client, attempt, {exam.question_ids[0]: ("D", deadline - timedelta(minutes=5))}
    )

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert result.answers_recovered == 0
    assert answer_rows(engine, attempt)[exam.question_ids[0]]["answer"] == "B"


def test_finish_expired__stored_answer_after_deadline__on_time_redis_answer_wins(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    # SPEC §6: no answer that reached Redis before the deadline is lost, not even to a newer
    # one the platform stored after the deadline.
    exam = make_exam(engine)
    deadline = now_of(engine) - timedelta(minutes=5)
    attempt = make_attempt(
        engine,
        exam,
        deadline_at=deadline,
        answers={0: "C"},
        answered_at=deadline + timedelta(minutes=2),
    )
    put_session(
        redis_client, attempt, {exam.question_ids[0]: ("B", deadline - timedelta(minutes=1))}
    )

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert result.answers_recovered == 1
    stored = answer_rows(engine, attempt)[exam.question_ids[0]]
    assert (stored["answer"], stored["is_correct"]) == ("B", True)


def test_finish_expired__corrupt_redis_fields__skipped_rest_recovered(
    engine: Engine, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    exam = make_exam(engine)
    deadline = now_of(engine) - timedelta(minutes=1)
    attempt = make_attempt(engine, exam, deadline_at=deadline)
    q = exam.question_ids
    put_session(
        redis_client,
        attempt,
        {q[0]: ("B", deadline - timedelta(minutes=2))},
        extra={
            f"answer:{q[1]}": "{corrupt",
            f"answer:{q[2]}": '{"value": "Paris"}',
            "answer:not-a-uuid": '{"value": 1, "at": "2020-01-01T00:00:00Z"}',
            f"answer:{q[3]}": '{"value": 3.14, "at": "yesterday"}',
        },
    )

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert (result.expired, result.answers_recovered) == (1, 1)
    skipped = [r for r in caplog.records if getattr(r, "action", "") == "redis_answer_skipped"]
    assert len(skipped) == 4 and {r.attempt_id for r in skipped} == {str(attempt)}


@pytest.mark.parametrize(
    "value",
    ["NaN", "Infinity", "1e999", '"a\\u0000b"', "[" * 100 + "]" * 100, "[" * 5000 + "]" * 5000],
    ids=["nan", "infinity", "overflow", "nul", "deep", "deeper-than-python-reads"],
)
def test_finish_expired__redis_value_no_database_can_store__skipped_others_finished(
    engine: Engine, redis_url: str, redis_client: redis.Redis, value: str
) -> None:
    # Python's json reads these; jsonb refuses them: one would fail its batch run after run.
    exam = make_exam(engine)
    deadline = now_of(engine) - timedelta(minutes=5)
    poisoned = make_attempt(engine, exam, deadline_at=deadline)
    healthy = make_attempt(engine, exam, deadline_at=deadline + timedelta(minutes=1))
    at = (deadline - timedelta(minutes=1)).isoformat()
    put_session(
        redis_client,
        poisoned,
        {exam.question_ids[0]: ("B", deadline - timedelta(minutes=2))},
        extra={f"answer:{exam.question_ids[3]}": f'{{"value": {value}, "at": "{at}"}}'},
    )

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert (result.expired, result.answers_recovered) == (2, 1)
    assert attempt_row(engine, poisoned)["status"] == attempt_row(engine, healthy)["status"]
    assert exam.question_ids[3] not in answer_rows(engine, poisoned)


def test_finish_expired__session_key_not_a_hash__finished_without_it(
    engine: Engine, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=1))
    redis_client.set(f"exam:attempt:{attempt}", "not a hash")

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert (result.expired, result.answers_recovered) == (1, 0)
    assert not redis_client.exists(f"exam:attempt:{attempt}")
    unreadable = [
        r for r in caplog.records if r.__dict__.get("action") == "redis_session_unreadable"
    ]
    assert [r.attempt_id for r in unreadable] == [str(attempt)]


def test_finish_expired__redis_unreachable__nothing_finished(engine: Engine) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=1))
    from tests.servers import free_port

    sessions = RedisSessions(f"redis://127.0.0.1:{free_port()}/0", "exam:attempt:")

    with pytest.raises(ServiceUnavailable, match="Redis unreachable"):
        finish_expired(engine, sessions)
    assert attempt_row(engine, attempt)["status"] == "IN_PROGRESS"


def test_finish_expired__several_workers__every_attempt_once(engine: Engine) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    attempts = [
        make_attempt(engine, exam, deadline_at=now - timedelta(minutes=m), answers={0: "B"})
        for m in range(1, 26)
    ]

    result = finish_expired(engine, None, batch_size=2, workers=3)

    assert result == FinishResult(finished=25, expired=25, answers_graded=25)
    assert {attempt_row(engine, a)["status"] for a in attempts} == {"EXPIRED"}
    assert finish_expired(engine, None, workers=3) == FinishResult()


def test_finish_expired__workers_below_one__usage_error(engine: Engine) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=1))

    with pytest.raises(UsageError, match="--workers"):
        finish_expired(engine, None, workers=0)
    assert attempt_row(engine, attempt)["status"] == "IN_PROGRESS"


def test_finish_expired__worker_fails__others_stop_and_committed_counts_reported(
    pg_engine: Engine,
) -> None:
    _overdue_batch_fails_after(
        pg_engine, attempts=40, finished=10, sqlstate="57P01", message="connection terminated"
    )

    with pytest.raises(ServiceUnavailable) as raised:
        finish_expired(pg_engine, None, batch_size=1, workers=3)

    finished = _finished_count(pg_engine)
    assert isinstance(raised.value.partial, FinishResult)
    assert raised.value.partial.finished == finished
    assert 10 <= finished < 40


def _overdue_batch_fails_after(
    engine: Engine, *, attempts: int, finished: int, sqlstate: str, message: str
) -> None:
    """`attempts` overdue attempts; once `finished` are finished, a trigger fails the batch that
    would finish another with SQLSTATE `sqlstate`."""
    exam = make_exam(engine)
    now = now_of(engine)
    for minutes in range(1, attempts + 1):
        make_attempt(engine, exam, deadline_at=now - timedelta(minutes=minutes))
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"""
            CREATE FUNCTION fail_batch() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF (SELECT count(*) FROM exam_attempts WHERE status <> 'IN_PROGRESS')
                 >= {finished} THEN
                RAISE EXCEPTION '{message} (test)' USING ERRCODE = '{sqlstate}';
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER fail_batch BEFORE UPDATE ON exam_attempts
              FOR EACH ROW EXECUTE FUNCTION fail_batch();
            """
        )


def _finished_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM exam_attempts WHERE status <> 'IN_PROGRESS'")
            ).scalar_one()
        )


def test_finish_expired__one_question_under_two_field_spellings__newest_recovered_once(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    deadline = now_of(engine) - timedelta(minutes=1)
    attempt = make_attempt(engine, exam, deadline_at=deadline)
    q = exam.question_ids
    at = deadline - timedelta(minutes=5)
    put_session(
        redis_client,
        attempt,
        {q[0]: ("A", at), q[1]: (None, at)},
        extra={f"answer:{str(q[0]).upper()}": json.dumps({"value": "B", "at": _iso(at, 60)})},
    )

    result = finish_expired(engine, RedisSessions(redis_url, "exam:attempt:"))

    assert result.answers_recovered == 2 and result.finished == 1
    answers = answer_rows(engine, attempt)
    assert answers[q[0]]["answer"] == "B" and answers[q[0]]["is_correct"] is True
    assert q[1] in answers and answers[q[1]]["answer"] is None


def _iso(moment: datetime, plus_seconds: int) -> str:
    return (moment + timedelta(seconds=plus_seconds)).astimezone(UTC).isoformat()


def test_finish_expired__answer_to_another_exams_question__never_graded(engine: Engine) -> None:
    from examctl.db.schema import attempt_answers

    exam, other = make_exam(engine), make_exam(engine)
    deadline = now_of(engine) - timedelta(minutes=1)
    mine = make_attempt(engine, exam, deadline_at=deadline, answers={0: "B"})
    # The other exam's attempt, finished in the same batch, holds the same right answer.
    theirs = make_attempt(engine, other, deadline_at=deadline, answers={0: "B"})
    with engine.begin() as conn:
        conn.execute(
            attempt_answers.insert().values(
                attempt_id=mine, question_id=other.question_ids[0], answer="B"
            )
        )

    result = finish_expired(engine, None)

    assert result == FinishResult(finished=2, expired=2, answers_graded=2)
    stray = answer_rows(engine, mine)[other.question_ids[0]]
    assert stray["is_correct"] is None and stray["points_awarded"] is None
    assert attempt_row(engine, mine)["score"] == attempt_row(engine, theirs)["score"] == 1


def test_finish_expired__batch_deadlocked__job_failed_with_committed_counts(
    pg_engine: Engine,
) -> None:
    _overdue_batch_fails_after(
        pg_engine, attempts=20, finished=5, sqlstate="40P01", message="deadlock detected"
    )

    with pytest.raises(JobFailed, match="rolled back: deadlock detected") as raised:
        finish_expired(pg_engine, None, batch_size=1, workers=2)

    finished = _finished_count(pg_engine)
    assert isinstance(raised.value.partial, FinishResult)
    assert raised.value.partial.finished == finished >= 5
