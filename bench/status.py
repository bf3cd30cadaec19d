"""Benchmark: what `examctl status` costs on a large database, and which index serves each figure.

    python bench/status.py                                  # 1,000,000 attempts, 1,000,000 events
    python bench/status.py --attempts 100000 --events 100000

Starts its own durable PostgreSQL, fills it (2 % of the attempts in progress, half of them
overdue; the rest finished over the past 200 days; events over the past 120 days, i.e. archive
and purge fell a few weeks behind; a year of minutely finish-expired history), then
runs every status query under EXPLAIN (ANALYZE, BUFFERS) and times `collect_status` as a whole.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from examctl.db.engine import db_now, make_engine  # noqa: E402
from examctl.db.migrate import init_schema  # noqa: E402
from examctl.history import last_run_query, last_success_query  # noqa: E402
from examctl.settings import normalize_database_url  # noqa: E402
from examctl.status import collect_status, status_queries  # noqa: E402
from tests.servers import PostgresServer  # noqa: E402

EXAM = "00000000-0000-0000-0000-000000000001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--history-days", type=int, default=365)
    # Retention and archive ran until a few weeks ago: some, not most, rows are due.
    parser.add_argument("--finished-days", type=int, default=200, help="finished over these days")
    parser.add_argument("--events-days", type=int, default=120, help="events over these days")
    args = parser.parse_args()
    server = PostgresServer(durable=True)
    server.start()
    try:
        run(server, args)
    finally:
        server.destroy()


def run(server: PostgresServer, args: argparse.Namespace) -> None:
    started = time.monotonic()
    server.execute("CREATE DATABASE bench")
    url = server.url("bench")
    engine = make_engine(normalize_database_url(url))
    init_schema(engine)
    fill(url, args)
    print(
        f"data built in {time.monotonic() - started:.0f}s: {args.attempts:,} attempts, "
        f"{args.events:,} events, {args.history_days * 1440:,} history rows\n"
    )
    with engine.connect() as conn:
        now = db_now(conn)
        queries = dict(status_queries(now, retention_days=90, archive_days=180))
        queries["last run (one job)"] = last_run_query("finish-expired")
        queries["last success (one job)"] = last_success_query("finish-expired")
        print(f"{'figure':<26} {'value':>12} {'ms':>8} {'buffers':>8}  plan")
        for name, query in queries.items():
            sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
            value = conn.execute(text(sql)).scalar()
            plan = conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")).scalar()
            top = plan[0]
            print(
                f"{name:<26} {_short(value):>12} {top['Execution Time']:>8.2f} "
                f"{_buffers(top['Plan']):>8}  {_scans(top['Plan'])}"
            )
    timings = []
    for _ in range(5):
        t0 = time.monotonic()
        collect_status(engine, None)
        timings.append(time.monotonic() - t0)
    engine.dispose()
    print(
        f"\ncollect_status (all figures, 6 jobs, no Redis), 5 runs: median "
        f"{statistics.median(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms"
    )


def fill(url: str, args: argparse.Namespace) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO exams (id, title, time_limit_minutes) VALUES ('{EXAM}', 'b', 60)"
        )
        live = args.attempts // 50
        conn.execute(
            "INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at) "
            "SELECT gen_random_uuid(), %s, gen_random_uuid(), 'IN_PROGRESS', now(), "
            "now() + make_interval(secs => g * 7200.0 / %s - 3600) FROM generate_series(1, %s) g",
            (EXAM, live, live),
        )
        conn.execute(
            "INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at, "
            "finished_at) SELECT gen_random_uuid(), %s, gen_random_uuid(), "
            "(ARRAY['SUBMITTED','EXPIRED','ABANDONED'])[1 + g %% 3], t - interval '1 hour', t, t "
            "FROM (SELECT g, now() - make_interval(secs => g * %s * 86400.0 / %s) AS t "
            "FROM generate_series(1, %s) g) s",
            (EXAM, args.finished_days, args.attempts - live, args.attempts - live),
        )
        conn.execute(
            "INSERT INTO proctoring_events (attempt_id, kind, occurred_at) "
            "SELECT NULL, 'tab_switch', now() - make_interval(secs => g * %s * 86400.0 / %s) "
            "FROM generate_series(1, %s) g ORDER BY g DESC",
            (args.events_days, args.events, args.events),
        )
        conn.execute(
            "INSERT INTO examctl_job_runs (job, started_at, finished_at, status, dry_run, host, "
            "pid) SELECT 'finish-expired', now() - make_interval(mins => g), "
            "now() - make_interval(mins => g) + interval '1 second', "
            "CASE WHEN g %% 100 = 0 THEN 'failed' ELSE 'ok' END, false, 'bench', 1 "
            "FROM generate_series(1, %s) g",
            (args.history_days * 1440,),
        )
        conn.execute("VACUUM (ANALYZE)")


def _short(value: object) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)[:19] if value is not None else "none"


def _buffers(plan: dict[str, object]) -> int:
    return int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))  # type: ignore[call-overload]


def _scans(plan: dict[str, object]) -> str:
    """The scan nodes of a plan, e.g. 'Index Only Scan ix_exam_attempts_deadline_in_progress'."""
    found = []
    node_type = str(plan.get("Node Type", ""))
    if "Scan" in node_type:
        found.append(f"{node_type} {plan.get('Index Name') or plan.get('Relation Name', '')}")
    for child in plan.get("Plans", []) or []:  # type: ignore[attr-defined]
        found.append(_scans(child))
    return "; ".join(f for f in found if f)


if __name__ == "__main__":
    main()
