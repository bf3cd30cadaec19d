"""Benchmark: clean-redis against a blind `redis-cli --scan | xargs redis-cli unlink`.

    python bench/clean_redis.py                # 500,000 sessions (a fifth stale) + 100,000 others
    python bench/clean_redis.py --keys 100000   # quick check

Starts its own durable PostgreSQL and a password-protected Redis. The sessions are the
platform's hashes (`exam:attempt:<uuid>`, a user field and three buffered answers): four fifths
belong to IN_PROGRESS attempts, the stale fifth half to finished attempts and half to attempts
that no longer exist (sessions idle for two hours). Unrelated keys share the keyspace.

- baseline: `redis-cli --scan --pattern 'exam:attempt:*' | xargs redis-cli unlink` (password in
  REDISCLI_AUTH), which deletes every session blindly, checking nothing;
- examctl clean-redis: SCAN COUNT 1000, one attempt lookup in PostgreSQL per reply, idle check
  for unknown attempts, pipelined UNLINK of the stale keys only.

keys/s is session keys handled (scanned) per second. Target (issue 5): examctl >= 1x baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import redis  # noqa: E402

from examctl.db.engine import make_engine  # noqa: E402
from examctl.db.migrate import init_schema  # noqa: E402
from examctl.jobs.clean_redis import CleanResult, clean_redis  # noqa: E402
from examctl.settings import normalize_database_url  # noqa: E402
from examctl.stores.redis_sessions import RedisSessions  # noqa: E402
from tests.servers import LOOPBACK, REDIS_PASSWORD, PostgresServer, RedisServer  # noqa: E402

PREFIX = "exam:attempt:"
EXAM = "00000000-0000-0000-0000-000000000001"


class Sample:
    """The same keys for every contender: live, finished and unknown attempts, other keys."""

    def __init__(self, keys: int, others: int, seed: int = 5) -> None:
        rng = random.Random(seed)
        ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(keys)]
        stale = keys // 5
        self.live = ids[stale:]
        self.finished = ids[: stale // 2]
        self.unknown = ids[stale // 2 : stale]
        self.others = others
        self.questions = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(3)]

    def session(self, attempt: uuid.UUID) -> dict[str, str]:
        fields = {"user_id": str(attempt), "started": "2024-05-01T10:00:00+00:00"}
        for n, question in enumerate(self.questions):
            fields[f"answer:{question}"] = json.dumps(
                {"value": ["A", "C"][n % 2], "at": f"2024-05-01T10:0{n}:00+00:00"}
            )
        return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=500_000, help="session keys")
    parser.add_argument("--others", type=int, default=100_000, help="unrelated keys")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each contender (median)")
    args = parser.parse_args()
    sample = Sample(args.keys, args.others)

    postgres, cache = PostgresServer(durable=True), RedisServer()
    postgres.start()
    cache.start()
    try:
        run(postgres, cache, sample, args.repeat)
    finally:
        cache.destroy()
        postgres.destroy()


def run(postgres: PostgresServer, cache: RedisServer, sample: Sample, repeat: int) -> None:
    started = time.monotonic()
    database_url = build_database(postgres, sample)
    client = redis.Redis.from_url(cache.url())
    fill_redis(client, sample)
    sessions = len(sample.live) + len(sample.finished) + len(sample.unknown)
    print(
        f"data built in {time.monotonic() - started:.0f}s: {sessions:,} session keys "
        f"({len(sample.finished) + len(sample.unknown):,} stale) + {sample.others:,} other keys\n"
    )

    # The machine is shared: both contenders run --repeat times, interleaved; medians reported.
    base_runs, our_runs = [], []
    for n in range(repeat):
        if n:
            fill_redis(client, sample)
        base_runs.append(baseline(cache))
        assert not list(client.scan_iter(f"{PREFIX}*", count=1000)), "baseline left sessions"
        fill_redis(client, sample)
        result, seconds = examctl(database_url, cache)
        our_runs.append(seconds)
        left = sum(1 for _ in client.scan_iter(f"{PREFIX}*", count=1000))
        assert left == len(sample.live), f"{left:,} sessions left, expected {len(sample.live):,}"
        assert client.dbsize() == len(sample.live) + sample.others
    base_s, ours_s = statistics.median(base_runs), statistics.median(our_runs)
    print(
        "all runs (s): baseline "
        + " ".join(f"{t:.2f}" for t in base_runs)
        + "; examctl "
        + " ".join(f"{t:.2f}" for t in our_runs)
        + "\n"
    )

    base_rate = sessions / base_s
    print(f"{'shape':<58} {'keys':>9} {'deleted':>9} {'seconds':>8} {'keys/s':>9} {'vs base':>8}")
    for name, deleted, seconds in (
        ("baseline: redis-cli --scan | xargs redis-cli unlink", sessions, base_s),
        ("examctl clean-redis (checks every key in PostgreSQL)", result.deleted, ours_s),
    ):
        rate = sessions / seconds
        print(
            f"{name:<58} {sessions:>9,} {deleted:>9,} {seconds:>8.2f} {rate:>9,.0f} "
            f"{rate / base_rate:>7.2f}x"
        )
    print(f"\nexamctl counts: {result}")
    print(f"target examctl >= 1x baseline keys/s: {base_s / ours_s:.2f}x")


def examctl(database_url: str, cache: RedisServer) -> tuple[CleanResult, float]:
    engine = make_engine(normalize_database_url(database_url))
    store = RedisSessions(cache.url(), PREFIX)
    started = time.monotonic()
    result = clean_redis(engine, store)
    seconds = time.monotonic() - started
    store.close()
    engine.dispose()
    return result, seconds


def build_database(server: PostgresServer, sample: Sample) -> str:
    server.execute("CREATE DATABASE bench")
    url = server.url("bench")
    engine = make_engine(normalize_database_url(url))
    init_schema(engine)
    engine.dispose()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO exams (id, title, time_limit_minutes) VALUES ('{EXAM}', 'b', 60)"
        )
        rows = io.StringIO()
        for status, ids in (("IN_PROGRESS", sample.live), ("SUBMITTED", sample.finished)):
            for attempt in ids:
                rows.write(
                    f"{attempt}\t{EXAM}\t{attempt}\t{status}\t2024-05-01 10:00+00\t"
                    "2024-05-01 11:00+00\n"
                )
        with conn.cursor().copy(
            "COPY exam_attempts (id, exam_id, user_id, status, started_at, deadline_at) FROM STDIN"
        ) as copy:
            copy.write(rows.getvalue())
        conn.execute("VACUUM (ANALYZE) exam_attempts")
    return url


def fill_redis(client: redis.Redis, sample: Sample) -> None:
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for n, attempt in enumerate([*sample.live, *sample.finished], start=1):
        pipe.hset(f"{PREFIX}{attempt}", mapping=sample.session(attempt))  # type: ignore[arg-type]
        if n % 5000 == 0:
            pipe.execute()
    # Sessions of attempts that are gone have lain untouched for a while (RESTORE … IDLETIME).
    client.hset("template", mapping=sample.session(sample.unknown[0]))  # type: ignore[arg-type]
    payload = client.dump("template")
    client.delete("template")
    for n, attempt in enumerate(sample.unknown, start=1):
        pipe.restore(f"{PREFIX}{attempt}", 0, payload, idletime=7200)  # type: ignore[arg-type]
        if n % 5000 == 0:
            pipe.execute()
    for n in range(sample.others):
        if n % 2:
            pipe.set(f"cache:user:{n}", "x" * 40)
        else:
            pipe.hset(f"ws:{n}", "v", "1")
        if n % 5000 == 0:
            pipe.execute()
    pipe.execute()


def baseline(cache: RedisServer) -> float:
    cli = f"redis-cli -h {LOOPBACK} -p {cache.port}"
    command = f"{cli} --scan --pattern '{PREFIX}*' | xargs {cli} unlink > /dev/null"
    started = time.monotonic()
    subprocess.run(
        command, shell=True, check=True, env={**os.environ, "REDISCLI_AUTH": REDIS_PASSWORD}
    )
    return time.monotonic() - started


if __name__ == "__main__":
    main()
