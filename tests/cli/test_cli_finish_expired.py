"""The command line of finish-expired, history and db: exit codes, JSON, errors (SPEC §9)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from examctl.db.engine import make_engine
from examctl.settings import normalize_database_url
from tests.factories import attempt_row, make_attempt, make_exam, now_of
from tests.invoke import invoke

COUNT_KEYS = {
    "finished",
    "expired",
    "abandoned",
    "answers_graded",
    "answers_recovered",
    "redis_deleted",
}


def test_cli_finish_expired__json__exact_object_and_history(db_url: str, engine: Engine) -> None:
    exam = make_exam(engine)
    make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=2), answers={0: "B"})

    result = invoke("finish-expired", "--json", "--database-url", db_url)

    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert set(document) == {"job", "status", "dry_run", "counts", "duration_s"}
    assert (document["job"], document["status"], document["dry_run"]) == (
        "finish-expired",
        "ok",
        False,
    )
    assert set(document["counts"]) == COUNT_KEYS
    assert document["counts"]["expired"] == 1 and document["counts"]["answers_graded"] == 1
    history = invoke("history", "--json", "--database-url", db_url).json()
    assert history[0]["job"] == "finish-expired" and history[0]["status"] == "ok"
    assert history[0]["counts"] == document["counts"]


def test_cli_finish_expired__dry_run__reports_and_changes_nothing(
    db_url: str, engine: Engine
) -> None:
    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=2))

    result = invoke("finish-expired", "--dry-run", "--json", "--database-url", db_url)

    assert result.json()["dry_run"] is True and result.json()["counts"]["finished"] == 1
    assert attempt_row(engine, attempt)["status"] == "IN_PROGRESS"


def test_cli_finish_expired__environment__used_and_flag_wins(db_url: str, engine: Engine) -> None:
    exam = make_exam(engine)
    make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=2))

    by_env = invoke("finish-expired", "--dry-run", "--json", env={"DATABASE_URL": db_url})
    flag_wins = invoke(
        "finish-expired",
        "--dry-run",
        "--json",
        "--database-url",
        db_url,
        env={"DATABASE_URL": "mysql://nope"},
    )

    assert by_env.json()["counts"]["finished"] == 1
    assert flag_wins.exit_code == 0 and flag_wins.json()["counts"]["finished"] == 1


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("finish-expired", "--batch-size", "0"),
        ("finish-expired", "--grace-seconds", "99999999999"),  # past every date range
        ("sweep", "--grace-seconds", "99999999999"),
    ],
)
def test_cli_finish_expired__bad_option__one_line_exit_2(
    command: str, option: str, value: str
) -> None:
    result = invoke(command, option, value)

    assert result.exit_code == 2
    assert result.error_line.startswith(
        f"examctl: error: examctl {command}: Invalid value for '{option}'"
    )


def test_cli_finish_expired__unsupported_url__exit_2() -> None:
    result = invoke("finish-expired", "--database-url", "mysql://root:hunter2@db/exams")

    assert result.exit_code == 2
    assert result.error_line == (
        "examctl: error: --database-url / DATABASE_URL: unsupported scheme 'mysql://' "
        "(expected postgresql://user:password@host:port/dbname or sqlite:///path)"
    )
    assert "hunter2" not in result.stderr + result.stdout


def test_cli_finish_expired__database_down__exit_3() -> None:
    from tests.servers import free_port

    url = f"postgresql://examctl:hunter2@127.0.0.1:{free_port()}/exams"
    result = invoke("finish-expired", "--database-url", url)

    assert result.exit_code == 3
    assert result.error_line.startswith(
        "examctl: error: database unreachable at postgresql+psycopg://examctl:***@127.0.0.1:"
    )
    assert "hunter2" not in result.stderr


def test_cli_finish_expired__redis_down__exit_3_nothing_finished(
    db_url: str, engine: Engine
) -> None:
    from tests.servers import free_port

    exam = make_exam(engine)
    attempt = make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=2))

    result = invoke(
        "finish-expired",
        "--json",
        "--database-url",
        db_url,
        "--redis-url",
        f"redis://127.0.0.1:{free_port()}/0",
    )

    assert result.exit_code == 3
    assert result.json()["status"] == "failed"
    assert attempt_row(engine, attempt)["status"] == "IN_PROGRESS"
    history = invoke("history", "--json", "--database-url", db_url).json()
    assert history[0]["status"] == "failed" and "Redis unreachable" in history[0]["error"]


def test_cli_finish_expired__no_redis_flag__finishes_from_database(
    db_url: str, engine: Engine
) -> None:
    from tests.servers import free_port

    exam = make_exam(engine)
    make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=2))

    result = invoke(
        "finish-expired",
        "--no-redis",
        "--json",
        "--database-url",
        db_url,
        "--redis-url",
        f"redis://127.0.0.1:{free_port()}/0",
    )

    assert result.exit_code == 0 and result.json()["counts"]["finished"] == 1


def test_cli_finish_expired__no_tables__exit_2_says_db_init(tmp_path: object) -> None:
    result = invoke("finish-expired", "--database-url", "sqlite:///empty.db")

    assert result.exit_code == 2
    assert result.error_line == (
        "examctl: error: the database lacks examctl's tables: run `examctl db init` "
        "(`examctl db check` lists what is missing)"
    )


def test_cli_finish_expired__human_summary__counts_and_redis_note(
    db_url: str, engine: Engine
) -> None:
    result = invoke("finish-expired", "--database-url", db_url)

    assert result.exit_code == 0
    assert "finish-expired: ok" in result.stdout
    assert "Redis not configured" in result.stdout


def test_cli_logs__json_lines_on_stderr__results_on_stdout(db_url: str, engine: Engine) -> None:
    exam = make_exam(engine)
    make_attempt(engine, exam, deadline_at=now_of(engine) - timedelta(minutes=2))

    result = invoke("finish-expired", "--json", "--log-format", "json", "--database-url", db_url)

    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert any(line.get("action") == "batch_finished" for line in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)
    json.loads(result.stdout)  # stdout holds only the one JSON object


# --- db init / check ----------------------------------------------------------------------------


def test_cli_db__init_twice__idempotent_and_check_passes(tmp_path: object) -> None:
    url = "sqlite:///fresh.db"

    first = invoke("db", "init", "--database-url", url)
    second = invoke("db", "init", "--database-url", url)
    check = invoke("db", "check", "--json", "--database-url", url)

    assert first.exit_code == 0 and "created table exam_attempts" in first.stdout
    assert second.stdout.strip() == "schema complete: nothing to do"
    assert check.exit_code == 0 and check.json() == {"ok": True, "missing": []}


def test_cli_db__platform_tables_without_index_and_column__check_names_them_init_adds(
    pg_url: str,
) -> None:
    engine = make_engine(normalize_database_url(pg_url))
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_exam_attempts_deadline_in_progress"))
        conn.execute(text("ALTER TABLE exam_attempts DROP COLUMN proctoring_summary"))
        conn.execute(text("DROP TABLE examctl_job_runs"))

    check = invoke("db", "check", "--database-url", pg_url)
    init = invoke("db", "init", "--database-url", pg_url)
    after = invoke("db", "check", "--database-url", pg_url)

    assert check.exit_code == 1
    assert check.stdout.splitlines() == [
        "missing table examctl_job_runs",
        "missing column exam_attempts.proctoring_summary",
        "missing index ix_exam_attempts_deadline_in_progress on exam_attempts (deadline_at)",
    ]
    assert init.exit_code == 0 and after.exit_code == 0
    engine.dispose()


def test_cli_db__index_under_another_name__counts_as_present(pg_url: str) -> None:
    engine = make_engine(normalize_database_url(pg_url))
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_proctoring_events_occurred_at"))
        conn.execute(text("CREATE INDEX platform_events_time ON proctoring_events (occurred_at)"))

    assert invoke("db", "check", "--database-url", pg_url).exit_code == 0
    engine.dispose()
