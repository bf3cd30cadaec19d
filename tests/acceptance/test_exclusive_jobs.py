"""One run at a time (SPEC §9), with real processes: a second run skips; a killed holder's lock
is free again at once (PostgreSQL session advisory lock; flock beside the SQLite file).

A first run is held inside its work, lock taken, by freezing the Redis server (SIGSTOP) for
clean-redis, or by locking proctoring_events for purge-proctoring.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy import Engine

from examctl.db.locks import advisory_lock, lock_key
from tests.events import DAY, add_events, count_events
from tests.factories import make_attempt, make_exam, now_of, put_session
from tests.invoke import invoke, run_examctl, spawn_examctl
from tests.servers import RedisServer


def _lock_held(db_url: str, job: str) -> bool:
    """Whether some process holds `job`'s lock, looked up without taking it."""
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///") + f".{job}.lock")
        if not path.exists():
            return False
        inode = f":{path.stat().st_ino}"
        locks = Path("/proc/locks").read_text().splitlines()
        return any(" FLOCK " in line and line.split()[5].endswith(inode) for line in locks)
    key = lock_key(job) & 0xFFFFFFFFFFFFFFFF
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1",
            (key >> 32, key & 0xFFFFFFFF),
        ).fetchone()
    return row == (1,)


def _wait(condition: Callable[[], bool], timeout_s: float = 30) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "timed out"
        time.sleep(0.02)
    return time.monotonic() - started


@contextlib.contextmanager
def _frozen(server: RedisServer) -> Iterator[None]:
    """Redis stops answering (connections still open) until the block ends."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


@pytest.fixture
def clean_args(
    db_url: str, engine: Engine, redis_url: str, redis_client: redis.Redis
) -> tuple[str, ...]:
    """A clean-redis command line, and one stale session for it to delete."""
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine), status="EXPIRED")
    put_session(redis_client, attempt, {})
    return ("clean-redis", "--json", "--database-url", db_url, "--redis-url", redis_url)


def test_clean_redis__second_run_while_first_holds_lock__skipped_exit_0(
    db_url: str, engine: Engine, redis_server: RedisServer, clean_args: tuple[str, ...]
) -> None:
    args = clean_args
    with _frozen(redis_server):
        first = spawn_examctl(*args)
        _wait(lambda: _lock_held(db_url, "clean-redis"))

        second = run_examctl(*args)

    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["status"] == "skipped"
    logs = [json.loads(line) for line in second.stderr.splitlines()]
    assert any(log.get("action") == "lock_busy" for log in logs)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert json.loads(out)["counts"]["deleted"] == 1
    history = invoke("history", "--job", "clean-redis", "--json", "--database-url", db_url).json()
    assert sorted(run["status"] for run in history) == ["ok", "skipped"]


def test_clean_redis__holder_killed__lock_free_at_once(
    db_url: str, engine: Engine, redis_server: RedisServer, clean_args: tuple[str, ...]
) -> None:
    args = clean_args
    with _frozen(redis_server):
        holder = spawn_examctl(*args)
        try:
            _wait(lambda: _lock_held(db_url, "clean-redis"))
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            freed_after = _wait(lambda: not _lock_held(db_url, "clean-redis"), timeout_s=5)
        finally:
            holder.kill()
            holder.communicate()

    assert freed_after < 2
    with advisory_lock(engine, "clean-redis") as acquired:
        assert acquired
    rerun = invoke(*args)
    assert (rerun.exit_code, rerun.json()["status"]) == (0, "ok")
    history = invoke("history", "--job", "clean-redis", "--json", "--database-url", db_url).json()
    assert [run["status"] for run in history] == ["ok", "running"]  # the killed run shows


def test_lock__idle_session_timeout_on_the_database__lock_kept_through_a_long_run(
    pg_url: str, pg_engine: Engine
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {database} SET idle_session_timeout = '300ms'")
    pg_engine.dispose()  # new sessions get the setting

    with advisory_lock(pg_engine, "archive") as acquired:
        time.sleep(1.0)  # the job works elsewhere; the lock's session stays idle
        held = _lock_held(pg_url, "archive")

    assert acquired and held


def test_purge_proctoring__long_purge_running__second_skipped(
    pg_url: str, pg_engine: Engine
) -> None:
    add_events(pg_engine, count=50, newest=now_of(pg_engine) - 100 * DAY, step=DAY)
    args = ("purge-proctoring", "--json", "--database-url", pg_url)
    with psycopg.connect(pg_url) as platform:
        # Something holds the table: the first purge waits inside its first batch, lock held.
        platform.execute("LOCK TABLE proctoring_events IN ACCESS EXCLUSIVE MODE")
        first = spawn_examctl(*args)
        _wait(lambda: _lock_held(pg_url, "purge-proctoring"))

        second = run_examctl(*args)
        platform.rollback()

    out, err = first.communicate(timeout=60)
    assert (second.returncode, json.loads(second.stdout)["status"]) == (0, "skipped")
    assert (first.returncode, json.loads(out)["counts"]["deleted"]) == (0, 50), err
    assert count_events(pg_engine) == 0
