"""clean-redis: which session keys go, which stay, one query per SCAN batch, exact counts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
import redis
from sqlalchemy import Connection, Engine, insert

from examctl.db.schema import exam_attempts
from examctl.errors import JobSkipped, ServiceUnavailable, UsageError
from examctl.jobs import clean_redis as clean_redis_module
from examctl.jobs.clean_redis import CleanResult, attempt_statuses, clean_redis
from examctl.stores.redis_sessions import RedisSessions
from tests.factories import make_attempt, make_exam, now_of, put_session
from tests.servers import free_port

PREFIX = "exam:attempt:"


def _stale(client: redis.Redis, key: str, idle_seconds: int = 3600) -> str:
    """A session that has lain untouched for `idle_seconds` (RESTORE … IDLETIME sets it)."""
    client.hset("template", mapping={"user_id": "u"})
    payload = client.dump("template")
    client.restore(key, 0, payload, idletime=idle_seconds)  # type: ignore[arg-type]
    client.delete("template")
    return key


def test_clean_redis__mixed_keys__stale_deleted_live_kept(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    live = make_attempt(engine, exam, deadline_at=now + timedelta(minutes=5))
    overdue = make_attempt(engine, exam, deadline_at=now - timedelta(minutes=5))
    finished = [
        make_attempt(engine, exam, deadline_at=now - timedelta(hours=1), status=status)
        for status in ("SUBMITTED", "EXPIRED", "ABANDONED")
    ]
    kept = [put_session(redis_client, a, {}) for a in (live, overdue)]
    gone = [put_session(redis_client, a, {}) for a in finished]
    gone.append(_stale(redis_client, f"{PREFIX}{uuid.uuid4()}"))  # attempt archived long ago
    malformed = [_stale(redis_client, f"{PREFIX}not-a-uuid"), f"{PREFIX}{live}:extra"]
    redis_client.set(malformed[1], "1")
    redis_client.set("other:key", "1")

    result = clean_redis(engine, RedisSessions(redis_url, PREFIX))

    assert result == CleanResult(scanned=8, deleted=6, kept=2, malformed=2)
    assert sorted(k.decode() for k in redis_client.keys("*")) == sorted([*kept, "other:key"])


def test_clean_redis__dry_run__counts_and_deletes_nothing(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    done = make_attempt(engine, exam, deadline_at=now_of(engine), status="SUBMITTED")
    put_session(redis_client, done, {})
    redis_client.set(f"{PREFIX}junk", "1")

    result = clean_redis(engine, RedisSessions(redis_url, PREFIX), dry_run=True)

    assert result == CleanResult(scanned=2, deleted=2, kept=0, malformed=1)
    assert redis_client.dbsize() == 2


def test_clean_redis__attempt_row_not_committed_yet__key_kept(
    pg_engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    # The platform writes the session, then commits the attempt: while its transaction is open,
    # the row is invisible and the key must survive a scan that runs right then.
    exam = make_exam(pg_engine)
    attempt = uuid.uuid4()
    now = now_of(pg_engine)
    sessions = RedisSessions(redis_url, PREFIX)
    with pg_engine.connect() as platform:
        platform.execute(
            insert(exam_attempts).values(
                id=attempt,
                exam_id=exam.id,
                user_id=uuid.uuid4(),
                status="IN_PROGRESS",
                started_at=now,
                deadline_at=now + timedelta(minutes=30),
            )
        )
        key = put_session(redis_client, attempt, {})

        during = clean_redis(pg_engine, sessions)
        platform.commit()

    after = clean_redis(pg_engine, sessions)
    assert during == CleanResult(scanned=1, deleted=0, kept=1)
    assert after == CleanResult(scanned=1, deleted=0, kept=1)
    assert redis_client.exists(key)


def test_clean_redis__unknown_attempt_recent_key__kept_until_idle(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    young = put_session(redis_client, uuid.uuid4(), {})
    old = _stale(redis_client, f"{PREFIX}{uuid.uuid4()}", idle_seconds=601)

    result = clean_redis(engine, RedisSessions(redis_url, PREFIX), min_idle_seconds=600)

    assert result == CleanResult(scanned=2, deleted=1, kept=1)
    assert redis_client.exists(young) and not redis_client.exists(old)


def test_clean_redis__lfu_policy__unknown_attempt_kept_with_a_warning(
    engine: Engine,
    redis_url: str,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old = _stale(redis_client, f"{PREFIX}{uuid.uuid4()}", idle_seconds=3600)
    policy = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]
    redis_client.config_set("maxmemory-policy", "allkeys-lfu")  # no idle time kept any more
    try:
        with caplog.at_level("WARNING", logger="examctl"):
            result = clean_redis(engine, RedisSessions(redis_url, PREFIX), min_idle_seconds=600)
    finally:
        redis_client.config_set("maxmemory-policy", policy)

    assert result == CleanResult(scanned=1, deleted=0, kept=1)
    assert redis_client.exists(old)
    warnings = [r for r in caplog.records if getattr(r, "action", "") == "idle_time_untracked"]
    assert [r.keys for r in warnings] == [1]  # type: ignore[attr-defined]
    assert "--min-idle-minutes 0" in warnings[0].getMessage()


def test_clean_redis__batches__one_database_query_each(
    pg_engine: Engine, redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    exam = make_exam(pg_engine)
    attempt = make_attempt(pg_engine, exam, deadline_at=now_of(pg_engine))
    put_session(redis_client, attempt, {})
    pipe = redis_client.pipeline()
    for _ in range(299):
        pipe.hset(f"{PREFIX}{uuid.uuid4()}", "user_id", "u")
    pipe.execute()
    lookups: list[int] = []

    def counted(conn: Connection, attempt_ids: Sequence[str]) -> dict[str, bool]:
        lookups.append(len(attempt_ids))
        return attempt_statuses(conn, attempt_ids)  # the real query, on the real database

    monkeypatch.setattr(clean_redis_module, "attempt_statuses", counted)

    result = clean_redis(pg_engine, RedisSessions(redis_url, PREFIX), scan_count=100)

    assert result == CleanResult(scanned=300, deleted=0, kept=300)
    assert sum(lookups) == 300
    assert 3 <= len(lookups) <= 10  # one per SCAN reply (COUNT is a hint), never one per key


class _RepeatingSessions(RedisSessions):
    """Real Redis, but every SCAN reply arrives twice, as SCAN may do while Redis rehashes."""

    def scan_batches(self, count: int = 1000) -> Iterator[list[bytes]]:
        for keys in super().scan_batches(count):
            yield keys
            yield keys[: len(keys) // 2 + 1]


def test_clean_redis__scan_repeats_keys__each_counted_once(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    done = make_attempt(engine, exam, deadline_at=now_of(engine), status="EXPIRED")
    live = make_attempt(engine, exam, deadline_at=now_of(engine), status="IN_PROGRESS")
    for attempt in (done, live):
        put_session(redis_client, attempt, {})

    result = clean_redis(engine, _RepeatingSessions(redis_url, PREFIX), scan_count=1)

    assert result == CleanResult(scanned=2, deleted=1, kept=1)


def test_clean_redis__custom_prefix__only_its_keys(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    # A backslash is a glob escape to SCAN's MATCH: unescaped, "app\\s:*" would match "apps:…".
    for key in ("exam:attempt:junk", "apps:junk", "app\\s:junk"):
        redis_client.set(key, "1")

    result = clean_redis(engine, RedisSessions(redis_url, "app\\s:"))

    assert result == CleanResult(scanned=1, deleted=1, malformed=1)
    assert sorted(redis_client.keys("*")) == [b"apps:junk", b"exam:attempt:junk"]


def test_clean_redis__prefix_missing_its_colon__refused_nothing_deleted(
    engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    live = put_session(redis_client, make_attempt(engine, exam, deadline_at=now_of(engine)), {})
    junk = "exam:attempt:not-an-id"
    redis_client.set(junk, "x")

    with pytest.raises(UsageError, match="did you mean 'exam:attempt:'"):
        clean_redis(engine, RedisSessions(redis_url, "exam:attempt"), min_idle_seconds=0)

    assert redis_client.exists(live)


def test_clean_redis__no_redis__skipped(engine: Engine) -> None:
    with pytest.raises(JobSkipped, match="Redis not configured"):
        clean_redis(engine, None)


def test_clean_redis__redis_unreachable__service_unavailable(engine: Engine) -> None:
    sessions = RedisSessions(f"redis://127.0.0.1:{free_port()}/0", PREFIX)

    with pytest.raises(ServiceUnavailable, match="Redis unreachable"):
        clean_redis(engine, sessions)
