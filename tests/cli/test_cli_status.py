"""examctl status: the figures, each job's last run and last success, and that indexes serve it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import redis
from sqlalchemy import Engine, text

from examctl.status import status_queries
from tests.events import DAY, add_events
from tests.factories import make_attempt, make_exam, now_of, put_session
from tests.invoke import invoke
from tests.servers import free_port


def _sample(engine: Engine) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    for minutes in (-90, -2, 7, 30):  # two overdue, two running
        make_attempt(engine, exam, deadline_at=now + timedelta(minutes=minutes))
    for age in (1, 179, 181, 400):  # two finished over 180 days ago
        finished = now - DAY * age
        make_attempt(engine, exam, deadline_at=finished, status="SUBMITTED", finished_at=finished)
    # A status archive does not take (not one of SPEC's finished ones) is not due for it.
    old = now - DAY * 400
    make_attempt(engine, exam, deadline_at=old, status="CANCELLED", finished_at=old)
    add_events(engine, count=12, newest=now - 95 * DAY, step=DAY)  # all past 90 days
    add_events(engine, count=5, newest=now, step=DAY)


def test_status__sample__figures_and_jobs(db_url: str, engine: Engine) -> None:
    _sample(engine)
    assert invoke("purge-proctoring", "--dry-run", "--database-url", db_url).exit_code == 0
    assert invoke("purge-proctoring", "--database-url", db_url).exit_code == 0
    assert invoke("clean-redis", "--database-url", db_url).exit_code == 0  # skipped: no Redis

    result = invoke("status", "--json", "--database-url", db_url)

    assert result.exit_code == 0, result.stderr
    status = result.json()
    now = now_of(engine)
    assert status["attempts_in_progress"] == 4
    assert status["attempts_overdue"] == 2
    assert abs(_seconds(status["next_deadline_at"]) - (now + timedelta(minutes=7)).timestamp()) < 5
    assert (status["redis"], status["redis_sessions"]) == ("not configured", None)
    assert status["events_past_retention"] == 0  # purged just now
    assert status["attempts_due_for_archive"] == 2
    jobs = status["jobs"]
    assert set(jobs) == {
        "finish-expired",
        "sweep",
        "remind",
        "clean-redis",
        "purge-proctoring",
        "archive",
    }
    purge, clean = jobs["purge-proctoring"], jobs["clean-redis"]
    assert (purge["last_status"], purge["last_dry_run"]) == ("ok", False)
    assert purge["last_success_at"] is not None
    assert (clean["last_status"], clean["last_success_at"]) == ("skipped", None)
    assert jobs["archive"] == {
        "last_run_at": None,
        "last_status": None,
        "last_dry_run": None,
        "last_success_at": None,
    }


def test_status__options__retention_and_archive_days_apply(engine: Engine, db_url: str) -> None:
    _sample(engine)

    status = invoke(
        "status", "--json", "--days", "100", "--archive-days", "2", "--database-url", db_url
    ).json()

    assert status["events_past_retention"] == 7  # 95..106 days old: those over 100
    assert status["attempts_due_for_archive"] == 3


def test_status__redis_sessions__counted(
    sqlite_url: str, redis_url: str, redis_client: redis.Redis
) -> None:
    for _ in range(3):
        put_session(redis_client, uuid.uuid4(), {})
    redis_client.set("other", "1")

    status = invoke("status", "--json", "--database-url", sqlite_url, "--redis-url", redis_url)

    assert (status.json()["redis"], status.json()["redis_sessions"]) == ("ok", 3)


def test_status__redis_unreachable__shown_exit_0(sqlite_url: str) -> None:
    url = f"redis://:hunter22@127.0.0.1:{free_port()}/0"

    result = invoke("status", "--json", "--database-url", sqlite_url, "--redis-url", url)

    assert result.exit_code == 0
    assert result.json()["redis"].startswith("unreachable: Redis unreachable at redis://:***@")
    assert "hunter22" not in result.stdout + result.stderr


def test_status__human_view__redis_error_text_shown_as_is_not_as_markup(sqlite_url: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?client_name=[/x]"

    result = invoke(
        "status", "--database-url", sqlite_url, "--redis-url", url, env={"COLUMNS": "400"}
    )

    assert result.exit_code == 0, result.stderr
    assert "client_name=[/x]" in result.stdout


def test_status__database_unreachable__exit_3() -> None:
    url = f"postgresql://examctl:hunter22@127.0.0.1:{free_port()}/exams"

    result = invoke("status", "--database-url", url)

    assert result.exit_code == 3
    assert result.error_line.startswith("examctl: error: database unreachable at")
    assert "hunter22" not in result.stderr


def test_status__human__shows_figures_and_jobs(sqlite_url: str, engine: Engine) -> None:
    result = invoke("status", "--database-url", sqlite_url)

    assert result.exit_code == 0
    assert "attempts in progress" in result.stdout
    assert "purge-proctoring" in result.stdout and "never run" in result.stdout


def test_status__every_query__served_by_an_index(pg_engine: Engine) -> None:
    # With sequential scans priced out, a plan still shows one only if no index can serve it.
    _sample(pg_engine)
    now = now_of(pg_engine)
    from examctl.history import last_run_query, last_success_query

    queries = [
        *status_queries(now, retention_days=90, archive_days=180).values(),
        last_run_query("archive"),
        last_success_query("archive"),
    ]
    with pg_engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        for query in queries:
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            plan = "\n".join(conn.execute(text(f"EXPLAIN {compiled}")).scalars())
            assert "Seq Scan" not in plan, plan
            assert "Index" in plan, plan


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def test_status__tables_in_another_schema__search_path_from_url_options(
    pg_url: str, pg_engine: Engine
) -> None:
    # A platform whose tables live in schema `platform` says so in its URL's libpq options.
    _sample(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA platform"))
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        for table in list(tables):
            conn.execute(text(f"ALTER TABLE public.{table} SET SCHEMA platform"))

    result = invoke(
        "status", "--json", "--database-url", f"{pg_url}?options=-csearch_path%3Dplatform"
    )

    assert result.exit_code == 0, result.stderr
    assert result.json()["attempts_in_progress"] == 4
