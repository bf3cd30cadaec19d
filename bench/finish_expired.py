"""Benchmark: finishing overdue attempts, the Celery task's shape against `examctl finish-expired`.

    python bench/finish_expired.py                                  # 20,000 attempts, all rows
    python bench/finish_expired.py --attempts 100000 --skip-baseline    # does RSS stay flat?
    python bench/finish_expired.py --examctl-root /tmp/patched      # measure a patched copy
    python bench/finish_expired.py --attempts 2000 --profile        # + cProfile of examctl

Other flags: --answers 30, --events 20, --batch-size N (passed to examctl), --skip-redis,
--keep (keep the cluster's directory). A 20,000-attempt run takes 12-15 minutes on the 2-core
machine, most of it the baseline. Logs and profiles land in bench/out/ (git-ignored).

On a durable PostgreSQL it starts itself (sized as in production: bench/_common.py
PRODUCTION_SETTINGS), it builds `--attempts` overdue attempts x `--answers`
answers x `--events` proctoring events (plus live and submitted attempts that must stay
untouched) in a template database, and runs each contender on its own byte-identical copy
(CREATE DATABASE … TEMPLATE):

- baseline: the Celery task's shape, one transaction per attempt (lock it, select its answers,
  grade in Python with examctl.grading, UPDATE each answer, one query for the proctoring
  summary, UPDATE the attempt), psycopg 3 directly, in a Python child process of its own so its
  peak RSS is measured as examctl's is;
- examctl --no-redis: `python -m examctl finish-expired --no-redis --json` as a subprocess;
- examctl + Redis: the same with a third of the overdue attempts holding buffered answers in a
  Redis session (and some live attempts too, whose sessions must survive).

Wall time runs from spawn to exit of the child; peak RSS is the child's ru_maxrss (os.wait4);
the longest transaction is measured on the server (bench/_common.TransactionWatcher: polls
pg_stat_activity every 20 ms). Then it checks that every contender left the untouched rows
as they were and finished every overdue attempt, and that the baseline and examctl produced
identical figures, attempt by attempt and answer by answer.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _finish_expired_baseline as baseline
import _finish_expired_data as data
from _common import (
    OUT_DIR,
    PRODUCTION_SETTINGS,
    REPO_ROOT,
    Measured,
    TransactionWatcher,
    clone_database,
    durable_postgres,
    log,
    mib,
    print_table,
    python_env,
    redis_server,
    run_measured,
    timed,
)

HERE = Path(__file__).resolve().parent
TEMPLATE = "bench_template"
REDIS_ANSWERED = 10  # questions answered again in Redis, shortly before the deadline
REDIS_LATE = 2  # questions answered in Redis after the deadline: never counted
REDIS_PREFIX = "exam:attempt:"


@dataclass
class Outcome:
    name: str
    database: str
    attempts: int
    run: Measured
    longest_s: float
    transactions: int
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sessions: set[UUID] = field(default_factory=set)  # attempts whose answers came from Redis


def main() -> int:
    args = parse_args()
    import psycopg

    with durable_postgres(keep=args.keep) as pg:
        pg.execute(f"CREATE DATABASE {TEMPLATE}")
        with timed("schema + data"):
            build_template(pg.url(TEMPLATE), args)
        with psycopg.connect(pg.url(TEMPLATE)) as conn:
            fingerprint = data.untouched_fingerprint(conn)
            overdue = len(data.overdue_ids(conn))
        log(f"{overdue} overdue attempts; untouched (attempts, answers, events, md5) {fingerprint}")
        outcomes: list[Outcome] = []
        if not args.skip_baseline:
            outcomes.append(run_baseline(pg, overdue))
        outcomes.append(run_examctl(pg, overdue, args, redis_url=None))
        if not args.skip_redis:
            with redis_server() as redis:
                outcomes.append(run_examctl(pg, overdue, args, redis_url=redis.url()))
        problems = verify(pg, outcomes, fingerprint, overdue)
        report(outcomes, args, problems)
        if args.profile:
            profile(pg, args)
    return 1 if problems else 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=20_000, help="overdue attempts")
    parser.add_argument("--answers", type=int, default=30, help="questions per exam = answers")
    parser.add_argument("--events", type=int, default=20, help="proctoring events per attempt")
    parser.add_argument("--batch-size", type=int, default=None, help="examctl --batch-size")
    parser.add_argument("--skip-baseline", action="store_true", help="run examctl only")
    parser.add_argument("--skip-redis", action="store_true", help="no examctl + Redis row")
    parser.add_argument("--profile", action="store_true", help="also cProfile examctl")
    parser.add_argument("--keep", action="store_true", help="keep the server dir for inspection")
    parser.add_argument(
        "--examctl-root",
        type=Path,
        default=REPO_ROOT,
        help="run the examctl found here (e.g. a patched copy); default: this checkout",
    )
    return parser.parse_args()


def build_template(url: str, args: argparse.Namespace) -> None:
    import psycopg

    from examctl.db.engine import make_engine
    from examctl.db.migrate import init_schema
    from examctl.settings import normalize_database_url

    engine = make_engine(normalize_database_url(url))
    init_schema(engine)
    engine.dispose()
    with psycopg.connect(url) as conn:
        conn.execute("SET work_mem = '256MB'")
        data.build(conn, attempts=args.attempts, answers=args.answers, events=args.events)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE, FREEZE)")  # as a long-lived table is: all-visible, frozen


# --- contenders ----------------------------------------------------------------------------------


def run_baseline(pg: Any, overdue: int) -> Outcome:
    url = clone_database(pg, TEMPLATE, "bench_baseline")
    log("baseline: one transaction per attempt …")
    argv = [sys.executable, str(HERE / "_finish_expired_baseline.py"), url]
    with TransactionWatcher(pg.url(), baseline.APPLICATION_NAME) as watcher:
        run = run_measured(argv, python_env())
    if run.returncode != 0:
        raise RuntimeError(f"baseline failed:\n{run.stderr[-3000:]}")
    figures = run.json()
    note = f"baseline longest transaction timed by the client: {figures['longest_s']:.4f} s"
    return Outcome(
        "baseline (1 tx/attempt)",
        "bench_baseline",
        figures["finished"],
        run,
        watcher.longest_s,
        watcher.transactions,
        [note],
    )


def run_examctl(pg: Any, overdue: int, args: argparse.Namespace, redis_url: str | None) -> Outcome:
    name = "bench_examctl_redis" if redis_url else "bench_examctl"
    url = clone_database(pg, TEMPLATE, name)
    sessions = fill_redis(url, redis_url) if redis_url else None
    argv = examctl_argv(args, redis_url)
    log(f"{' '.join(argv[1:])} …")
    env = python_env(args.examctl_root, DATABASE_URL=url, EXAMCTL_LOG_FORMAT="json")
    check_examctl_root(env, args.examctl_root)
    if redis_url:
        env["REDIS_URL"] = redis_url
    with TransactionWatcher(pg.url(), "examctl") as watcher:
        run = run_measured(argv, env, cwd=args.examctl_root)
    if run.returncode != 0:
        raise RuntimeError(f"examctl failed ({run.returncode}):\n{run.stderr[-3000:]}")
    counts = run.json()["counts"]
    label = "examctl + Redis" if redis_url else "examctl --no-redis"
    outcome = Outcome(label, name, counts["finished"], run, watcher.longest_s, watcher.transactions)
    outcome.notes.append(f"{label}: counts {json.dumps(counts)}")
    outcome.notes.append(f"{label}: {batch_pace(run.stderr)}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{name}_{overdue}.log").write_text(run.stderr)
    if sessions is not None:
        assert redis_url is not None
        check_redis_run(outcome, url, redis_url, sessions, counts)
    return outcome


def check_examctl_root(env: dict[str, str], root: Path) -> None:
    """Fail unless the child really imports the examctl under `root` (see run_measured)."""
    probe = [sys.executable, "-c", "import examctl; print(examctl.__file__)"]
    found = subprocess.run(probe, env=env, cwd=root, capture_output=True, text=True, check=True)
    if not Path(found.stdout.strip()).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"examctl imported from {found.stdout.strip()}, not from {root}")


def batch_pace(log: str) -> str:
    """From the JSON log: how long apart the "batch finished" lines came, early and late.

    A batch that gets slower as the run goes on (work growing with the part of the table
    already done) shows here as late intervals longer than early ones.
    """
    times = [
        datetime.fromisoformat(entry["ts"])
        for entry in (json.loads(line) for line in log.splitlines() if line.startswith("{"))
        if entry.get("action") == "batch_finished"
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    if not gaps:
        return f"{len(times)} batches"
    tenth = max(1, len(gaps) // 10)
    early, late = sum(gaps[:tenth]) / tenth, sum(gaps[-tenth:]) / tenth
    return (
        f"{len(times)} batches; seconds between batches: first tenth {early:.2f}, "
        f"last tenth {late:.2f}, max {max(gaps):.2f}"
    )


def examctl_argv(args: argparse.Namespace, redis_url: str | None) -> list[str]:
    argv = [sys.executable, "-m", "examctl", "finish-expired", "--json"]
    if redis_url is None:
        argv.append("--no-redis")
    if args.batch_size:
        argv += ["--batch-size", str(args.batch_size)]
    return argv


# --- Redis sessions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sessions:
    overdue: list[UUID]
    live: list[UUID]


def fill_redis(url: str, redis_url: str) -> Sessions:
    """Sessions for every third IN_PROGRESS attempt, overdue or live (SPEC §6 layout).

    Each session answers its first REDIS_ANSWERED questions rightly 30 s before the deadline
    (newer than the database's answers, so they must be recovered and graded) and the next
    REDIS_LATE questions after it (never counted).
    """
    import psycopg
    import redis

    client = redis.Redis.from_url(redis_url)
    found = Sessions([], [])
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT a.id, a.deadline_at, a.deadline_at < now(), "
            "array_agg(q.id ORDER BY q.position), array_agg(q.position ORDER BY q.position) "
            "FROM exam_attempts a JOIN questions q ON q.exam_id = a.exam_id "
            "WHERE a.status = 'IN_PROGRESS' GROUP BY a.id ORDER BY a.id"
        )
        pipe = client.pipeline(transaction=False)
        for i, (attempt_id, deadline_at, is_overdue, question_ids, positions) in enumerate(rows):
            if i % 3:
                continue
            fields = session(deadline_at, question_ids, positions)
            pipe.hset(f"{REDIS_PREFIX}{attempt_id}", mapping=fields)  # type: ignore[arg-type]
            (found.overdue if is_overdue else found.live).append(attempt_id)
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
    client.close()
    log(f"Redis: {len(found.overdue)} overdue and {len(found.live)} live sessions")
    return found


def session(
    deadline_at: datetime, question_ids: list[UUID], positions: list[int]
) -> dict[str, str]:
    fields = {"user_id": "platform-field", "last_seen": deadline_at.isoformat()}
    for n, (question_id, position) in enumerate(zip(question_ids, positions, strict=True)):
        if n >= REDIS_ANSWERED + REDIS_LATE:
            break
        kind, correct, _points = data.question_key(position)
        late = n >= REDIS_ANSWERED
        at = deadline_at + (timedelta(minutes=1) if late else timedelta(seconds=-30))
        value = data.right_answer(kind, correct)
        fields[f"answer:{question_id}"] = json.dumps(
            {"value": value, "at": at.astimezone(UTC).isoformat()}
        )
    return fields


def check_redis_run(
    outcome: Outcome, url: str, redis_url: str, sessions: Sessions, counts: dict[str, int]
) -> None:
    """Recovered answers graded, late ones ignored, overdue sessions deleted, live ones kept."""
    import psycopg
    import redis

    outcome.sessions = set(sessions.overdue)
    n = len(sessions.overdue)
    client = redis.Redis.from_url(redis_url)
    left = sum(client.exists(f"{REDIS_PREFIX}{a}") for a in sessions.overdue)
    kept = sum(client.exists(f"{REDIS_PREFIX}{a}") for a in sessions.live)
    client.close()
    with psycopg.connect(url) as conn:
        recovered, ignored = conn.execute(
            "SELECT count(*) FILTER (WHERE q.position < %(answered)s AND t.is_correct "
            "  AND t.answered_at = a.deadline_at - interval '30 seconds'), "
            "count(*) FILTER (WHERE q.position >= %(answered)s AND q.position < %(late)s "
            "  AND t.answered_at <= a.deadline_at - interval '1 minute') "
            "FROM attempt_answers t JOIN exam_attempts a ON a.id = t.attempt_id "
            "JOIN questions q ON q.id = t.question_id WHERE a.id = ANY(%(ids)s)",
            {
                "answered": REDIS_ANSWERED,
                "late": REDIS_ANSWERED + REDIS_LATE,
                "ids": sessions.overdue,
            },
        ).fetchall()[0]
    got = (counts["answers_recovered"], counts["redis_deleted"], recovered, ignored, left, kept)
    want = (n * REDIS_ANSWERED, n, n * REDIS_ANSWERED, n * REDIS_LATE, 0, len(sessions.live))
    outcome.notes.append(
        f"{outcome.name}: {n} overdue sessions ({n * REDIS_ANSWERED} answers recovered and "
        f"graded right, {n * REDIS_LATE} late ones ignored, sessions deleted), "
        f"{len(sessions.live)} live sessions kept"
    )
    if got != want:
        outcome.problems.append(
            f"{outcome.name}: (recovered, deleted, graded right, late ignored, sessions left, "
            f"live kept) = {got}, expected {want}"
        )


# --- checks --------------------------------------------------------------------------------------

_ATTEMPTS_SQL = (
    "SELECT id, status, score::text, max_score::text, percent::text, passed, "
    "proctoring_summary::text, finished_at IS NOT NULL, finished_by FROM exam_attempts ORDER BY id"
)
_ANSWERS_SQL = (
    "SELECT id, attempt_id, question_id, answer::text, answered_at, is_correct, "
    "points_awarded::text FROM attempt_answers ORDER BY id"
)


def verify(pg: Any, outcomes: list[Outcome], fingerprint: Any, overdue: int) -> list[str]:
    """Every problem found; an empty list means every check passed."""
    import psycopg

    problems = []
    for outcome in outcomes:
        with psycopg.connect(pg.url(outcome.database)) as conn:
            if data.untouched_fingerprint(conn) != fingerprint:
                problems.append(f"{outcome.name}: live or submitted attempts were changed")
            expired, left = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'EXPIRED' AND finished_at IS NOT NULL), "
                "count(*) FILTER (WHERE status = 'IN_PROGRESS' AND deadline_at < now()) "
                "FROM exam_attempts"
            ).fetchall()[0]
        if (expired, left, outcome.attempts) != (overdue, 0, overdue):
            problems.append(
                f"{outcome.name}: {expired} expired, {left} overdue left, "
                f"{outcome.attempts} reported; expected {overdue}, 0, {overdue}"
            )
        log(f"checked {outcome.name}: untouched rows intact, {expired} finished, {left} left")
    by_name = {o.name: o for o in outcomes}
    reference = by_name["examctl --no-redis"]
    baseline = next((o for o in outcomes if o.name.startswith("baseline")), None)
    if baseline is not None:
        problems += compare(pg, baseline, reference, skip=set())
    redis_run = by_name.get("examctl + Redis")
    if redis_run is not None:
        # Attempts with a session differ on purpose (recovered answers); checked in run_examctl.
        problems += compare(pg, redis_run, reference, skip=redis_run.sessions)
    return problems + [p for o in outcomes for p in o.problems]


def compare(pg: Any, left: Outcome, right: Outcome, skip: set[UUID]) -> list[str]:
    """Attempt by attempt and answer by answer, streamed from both databases in id order."""
    problems = []
    for what, sql, attempt_column in (("attempts", _ATTEMPTS_SQL, 0), ("answers", _ANSWERS_SQL, 1)):
        compared = differ = 0
        for a, b in zip(
            stream(pg.url(left.database), sql), stream(pg.url(right.database), sql), strict=True
        ):
            if a[attempt_column] in skip:
                continue
            compared += 1
            if a != b:
                differ += 1
                if differ <= 3:
                    problems.append(f"{left.name} vs {right.name}: {what} differ:\n  {a}\n  {b}")
        if differ:
            problems.append(f"{left.name} vs {right.name}: {differ} of {compared} {what} differ")
        log(f"{left.name} vs {right.name}: {compared} {what} compared, {differ} differ")
    return problems


def stream(url: str, sql: str) -> Iterator[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor(name="compare") as cursor:
        cursor.itersize = 20_000
        cursor.execute(sql)
        yield from cursor


# --- output --------------------------------------------------------------------------------------


def report(outcomes: list[Outcome], args: argparse.Namespace, problems: list[str]) -> None:
    base = next((o for o in outcomes if o.name.startswith("baseline")), None)
    base_rate = base.attempts / base.run.seconds if base else None
    print(
        f"\nfinish-expired: {args.attempts} overdue attempts x {args.answers} answers x "
        f"{args.events} proctoring events; PostgreSQL durable (fsync, synchronous_commit on), "
        f"{', '.join(f'{k}={v}' for k, v in PRODUCTION_SETTINGS.items())}"
    )
    if args.examctl_root != REPO_ROOT:
        print(f"examctl run from {args.examctl_root} (not this checkout)")
    rows = []
    for o in outcomes:
        rate = o.attempts / o.run.seconds
        rows.append(
            [
                o.name,
                o.attempts,
                f"{o.run.seconds:.1f}",
                f"{rate:.0f}",
                f"{o.longest_s:.3f} s",
                mib(o.run.peak_rss_bytes),
                f"{rate / base_rate:.1f}x" if base_rate else "n/a",
            ]
        )
    print_table(
        [
            "contender",
            "attempts",
            "seconds",
            "attempts/s",
            "longest transaction",
            "peak RSS",
            "ratio vs baseline",
        ],
        rows,
    )
    print(
        "\nlongest transaction: max age of one transaction seen in pg_stat_activity "
        "(polled every 20 ms; true value at most ~0.03 s more)"
    )
    for o in outcomes:
        for note in o.notes:
            print(f"- {note}")
    print("\nchecks: " + ("all passed" if not problems else f"{len(problems)} FAILED"))
    for problem in problems:
        print(f"  FAILED {problem}")


def profile(pg: Any, args: argparse.Namespace) -> None:
    """examctl --no-redis once more under cProfile (not timed); the top functions to stdout."""
    import pstats

    url = clone_database(pg, TEMPLATE, "bench_profile")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    output = OUT_DIR / f"finish_expired_{args.attempts}.prof"
    argv = examctl_argv(args, None)
    argv[1:1] = ["-m", "cProfile", "-o", str(output)]
    log(f"profiling: {' '.join(argv[1:])}")
    env = python_env(args.examctl_root, DATABASE_URL=url, EXAMCTL_LOG_FORMAT="json")
    run = run_measured(argv, env, cwd=args.examctl_root)
    print(f"\ncProfile of examctl --no-redis ({run.seconds:.1f} s under the profiler): {output}")
    stats = pstats.Stats(str(output))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    sys.exit(main())
