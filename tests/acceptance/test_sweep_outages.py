"""Outages under a running sweep, with real servers stopped and started again by the test.

Each test starts its own PostgreSQL or Redis, so stopping it does not disturb the session's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine

from examctl.db.engine import make_engine
from examctl.db.migrate import init_schema
from examctl.settings import normalize_database_url
from tests.factories import answer_rows, attempt_row, make_attempt, make_exam, now_of, put_session
from tests.servers import PG_PASSWORD, REDIS_PASSWORD, PostgresServer, RedisServer
from tests.sweeping import actions, history, is_finished, spawner, stop_process, wait_until

spawn = pytest.fixture(spawner, name="spawn")
Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    server.execute("CREATE DATABASE exams")
    yield server
    server.destroy()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


def test_sweep__postgres_restarted__recovers_and_logs_the_outage_once(
    own_postgres: PostgresServer, spawn: Spawn
) -> None:
    url = own_postgres.url("exams")
    engine = make_engine(normalize_database_url(url))
    init_schema(engine)
    exam = make_exam(engine)
    before = make_attempt(engine, exam, deadline_at=now_of(engine) + timedelta(seconds=2))
    sweep = spawn("sweep", "--interval", "1", DATABASE_URL=url)
    wait_until(is_finished(engine, before), timeout_s=30, what="finished before the outage")

    own_postgres.stop()
    engine.dispose()
    time.sleep(3)  # several rounds fail meanwhile
    own_postgres.start()
    after = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(seconds=1))
    wait_until(is_finished(engine, after), timeout_s=10, what="finished after the restart")
    time.sleep(2.5)  # the remind loop backs off up to --interval: let it run a good round too
    code, _, stderr = stop_process(sweep)

    assert code == 0, stderr
    for job in ("finish-expired", "remind"):
        [failed] = actions(stderr, "round_failed", job)
        assert failed["exit_code"] == 3 and "database unreachable" in failed["msg"]
        assert len(actions(stderr, "round_recovered", job)) == 1
    assert PG_PASSWORD not in stderr
    # The outage reached history once the database was back: one failed row per loop.
    failed_rows = [r for r in history(engine) if r["status"] == "failed"]
    assert sorted(r["job"] for r in failed_rows) == ["finish-expired", "remind"]
    assert [r["status"] for r in history(engine, "sweep")] == ["ok"]
    engine.dispose()


def test_sweep__redis_down__finishes_nothing_until_it_returns_then_recovers_answers(
    pg_url: str, pg_engine: Engine, own_redis: RedisServer, tmp_path: Path, spawn: Spawn
) -> None:
    client = redis.Redis.from_url(own_redis.url())
    health = tmp_path / "sweep.health"
    sweep = spawn(
        "sweep",
        "--interval",
        "1",
        "--health-file",
        str(health),
        DATABASE_URL=pg_url,
        REDIS_URL=own_redis.url(),
    )
    wait_until(health.exists, timeout_s=30, what="first round")
    exam = make_exam(pg_engine)
    deadline = now_of(pg_engine) + timedelta(seconds=1.5)
    attempt = make_attempt(pg_engine, exam, deadline_at=deadline, answers={0: "D"})
    key = put_session(
        client, attempt, {exam.question_ids[0]: ("B", deadline - timedelta(minutes=1))}
    )

    client.save()  # the restarted server loads the sessions back, as a persistent one would
    own_redis.stop()
    healthy_at = health.stat().st_mtime
    outage_ends = deadline + timedelta(seconds=3)
    while now_of(pg_engine) < outage_ends:
        time.sleep(0.1)
    assert attempt_row(pg_engine, attempt)["status"] == "IN_PROGRESS"  # never without Redis
    assert health.stat().st_mtime == healthy_at  # failing rounds do not look healthy
    own_redis.start()
    wait_until(is_finished(pg_engine, attempt), timeout_s=10, what="finished after Redis is back")
    code, _, stderr = stop_process(sweep)

    assert code == 0, stderr
    row = attempt_row(pg_engine, attempt)
    assert (row["status"], row["score"]) == ("EXPIRED", Decimal(1))  # the Redis answer counted
    assert answer_rows(pg_engine, attempt)[exam.question_ids[0]]["answer"] == "B"
    assert not client.exists(key)
    [failed] = actions(stderr, "round_failed", "finish-expired")
    assert failed["exit_code"] == 3 and "Redis unreachable" in failed["msg"]
    assert len(actions(stderr, "round_recovered", "finish-expired")) == 1
    assert health.stat().st_mtime > healthy_at
    assert REDIS_PASSWORD not in stderr
    client.close()
