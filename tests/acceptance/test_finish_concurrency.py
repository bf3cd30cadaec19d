"""Exactly once, for real: racing processes, SIGKILL and reruns, a dropped connection (SPEC §5).

An audit trigger records every transition out of IN_PROGRESS and every update of an attempt
that was already finished; the assertions read it, not the processes' own claims.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import uuid
from typing import Any

import redis
from sqlalchemy import Engine, func, select, text

from examctl.db.engine import make_engine
from examctl.db.schema import attempt_answers, exam_attempts
from examctl.settings import normalize_database_url
from tests.factories import make_exam, seed_overdue_attempts
from tests.invoke import run_examctl, spawn_examctl
from tests.servers import PostgresServer

AUDIT = """
CREATE TABLE finish_audit (attempt_id uuid, new_status text, pid int, at timestamptz);
CREATE TABLE finish_violations (attempt_id uuid, old_status text, new_status text);
CREATE FUNCTION audit_finish() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status <> 'IN_PROGRESS' THEN
    INSERT INTO finish_violations VALUES (OLD.id, OLD.status, NEW.status);
  ELSIF NEW.status <> 'IN_PROGRESS' THEN
    INSERT INTO finish_audit VALUES (NEW.id, NEW.status, pg_backend_pid(), clock_timestamp());
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_finish AFTER UPDATE ON exam_attempts
  FOR EACH ROW EXECUTE FUNCTION audit_finish();
"""


def _install_audit(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(AUDIT)


def _audit(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        finished, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT attempt_id) FROM finish_audit")
        ).one()
        violations = conn.execute(text("SELECT count(*) FROM finish_violations")).scalar_one()
    return finished, distinct, violations


def _finished_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(exam_attempts.c.status != "IN_PROGRESS")
            ).scalar_one()
        )


def test_concurrent_finish__four_processes_2000_attempts__each_finished_exactly_once(
    pg_url: str, pg_engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(pg_engine)
    seed_overdue_attempts(pg_engine, exam, 2000, redis_clients=[redis_client])
    _install_audit(pg_engine)

    racers = [
        spawn_examctl(
            "finish-expired",
            "--json",
            "--batch-size",
            "40",
            DATABASE_URL=pg_url,
            REDIS_URL=redis_url,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in racers]

    assert [p.returncode for p in racers] == [0, 0, 0, 0], [err[-500:] for _, err in outputs]
    counts = [json.loads(out)["counts"] for out, _ in outputs]
    assert sum(c["finished"] for c in counts) == 2000
    assert sum(c["redis_deleted"] for c in counts) == 1000
    assert sum(1 for c in counts if c["finished"]) >= 2  # they really raced
    assert _audit(pg_engine) == (2000, 2000, 0)
    assert redis_client.dbsize() == 0


def _snapshot(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every figure finishing produces, without finished_at (the clock differs per run)."""
    a, ans = exam_attempts.c, attempt_answers.c
    with engine.connect() as conn:
        attempts = conn.execute(
            select(
                a.id,
                a.status,
                a.finished_by,
                a.score,
                a.max_score,
                a.percent,
                a.passed,
                a.proctoring_summary,
            ).order_by(a.id)
        ).all()
        answers = conn.execute(
            select(
                ans.attempt_id,
                ans.question_id,
                ans.answer,
                ans.answered_at,
                ans.is_correct,
                ans.points_awarded,
            ).order_by(ans.attempt_id, ans.question_id)
        ).all()
    return [tuple(r) for r in attempts], [tuple(r) for r in answers]


def _wait_for_progress(engine: Engine, at_least: int, process: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while _finished_count(engine) < at_least:
        assert process.poll() is None, "finished before it could be killed: use more attempts"
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_sigkill_mid_run__rerun__identical_to_uninterrupted_run(
    postgres_server: PostgresServer, pg_url: str, pg_engine: Engine, redis_server: Any
) -> None:
    exam = make_exam(pg_engine)
    killed_redis = redis.Redis.from_url(redis_server.url(1))
    clean_redis = redis.Redis.from_url(redis_server.url(2))
    for client in (killed_redis, clean_redis):
        client.flushdb()
    seed_overdue_attempts(pg_engine, exam, 2000, redis_clients=[killed_redis, clean_redis])
    pg_engine.dispose()
    clone = f"clone_{uuid.uuid4().hex[:8]}"
    source = pg_url.rsplit("/", 1)[1]
    postgres_server.execute(f"CREATE DATABASE {clone} TEMPLATE {source}")
    clone_url = postgres_server.url(clone)
    _install_audit(pg_engine)

    for progress in (100, 700, 1300):  # kill -9 three times at different points
        victim = spawn_examctl(
            "finish-expired",
            "--batch-size",
            "25",
            DATABASE_URL=pg_url,
            REDIS_URL=redis_server.url(1),
        )
        _wait_for_progress(pg_engine, progress, victim)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=30)
        assert victim.returncode == -signal.SIGKILL
    rerun = run_examctl(
        "finish-expired", "--json", DATABASE_URL=pg_url, REDIS_URL=redis_server.url(1)
    )
    uninterrupted = run_examctl(
        "finish-expired", "--json", DATABASE_URL=clone_url, REDIS_URL=redis_server.url(2)
    )

    assert rerun.returncode == 0 and uninterrupted.returncode == 0, rerun.stderr[-500:]
    clone_engine = make_engine(normalize_database_url(clone_url))
    assert _snapshot(pg_engine) == _snapshot(clone_engine)
    assert _audit(pg_engine) == (2000, 2000, 0)
    assert _finished_count(clone_engine) == 2000
    clone_engine.dispose()
    # Sessions of attempts finished by a killed run may outlive it (deleted only after commit);
    # clean-redis removes those. None of the rerun's own attempts keeps its session.
    assert killed_redis.dbsize() <= 3 * 25 // 2 + 1 and clean_redis.dbsize() == 0


def test_connection_dropped_mid_run__exit_3_then_rerun_finishes_exactly_once(
    pg_url: str, pg_engine: Engine
) -> None:
    exam = make_exam(pg_engine)
    seed_overdue_attempts(pg_engine, exam, 2000)
    _install_audit(pg_engine)
    victim = spawn_examctl("finish-expired", "--json", "--batch-size", "20", DATABASE_URL=pg_url)
    _wait_for_progress(pg_engine, 100, victim)

    with pg_engine.connect() as conn:
        while victim.poll() is None:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'examctl' AND pid <> pg_backend_pid()"
                )
            )
            conn.commit()
            time.sleep(0.01)
    out, err = victim.communicate()
    rerun = run_examctl("finish-expired", "--json", DATABASE_URL=pg_url)

    assert victim.returncode == 3, err[-800:]
    assert "examctl: error: database unreachable" in err
    assert rerun.returncode == 0
    assert _audit(pg_engine) == (2000, 2000, 0)
    # What the killed run committed is reported, by every worker: the two runs add up.
    victim_counts = json.loads(out)["counts"]
    assert victim_counts["finished"] + json.loads(rerun.stdout)["counts"]["finished"] == 2000


SQLITE_AUDIT = """
CREATE TABLE finish_audit (attempt_id TEXT, new_status TEXT);
CREATE TABLE finish_violations (attempt_id TEXT);
CREATE TRIGGER audit_finish AFTER UPDATE ON exam_attempts FOR EACH ROW BEGIN
  INSERT INTO finish_violations SELECT OLD.id WHERE OLD.status <> 'IN_PROGRESS';
  INSERT INTO finish_audit SELECT NEW.id, NEW.status
    WHERE OLD.status = 'IN_PROGRESS' AND NEW.status <> 'IN_PROGRESS';
END;
"""


def test_concurrent_finish__sqlite_three_processes__each_finished_exactly_once(
    sqlite_url: str,
) -> None:
    engine = make_engine(sqlite_url)
    exam = make_exam(engine)
    seed_overdue_attempts(engine, exam, 600)
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        raw.executescript(SQLITE_AUDIT)

    racers = [
        spawn_examctl("finish-expired", "--json", "--batch-size", "10", DATABASE_URL=sqlite_url)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300) for p in racers]

    assert [p.returncode for p in racers] == [0, 0, 0], [err[-500:] for _, err in outputs]
    counts = [json.loads(out)["counts"]["finished"] for out, _ in outputs]
    assert sum(counts) == 600
    with engine.connect() as conn:
        audited = conn.execute(
            text("SELECT count(*), count(DISTINCT attempt_id) FROM finish_audit")
        ).one()
        violations = conn.execute(text("SELECT count(*) FROM finish_violations")).scalar_one()
    assert tuple(audited) == (600, 600) and violations == 0
    engine.dispose()
