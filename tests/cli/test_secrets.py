"""No password ever appears in output, logs, errors, history or metrics (SPEC §2)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, text

from tests.factories import make_attempt, make_exam, now_of, put_session
from tests.invoke import CliResult, invoke
from tests.servers import PG_PASSWORD, REDIS_PASSWORD, free_port

SECRETS = (PG_PASSWORD, REDIS_PASSWORD, "hunter2-webhook")


def _everything_printed(results: list[CliResult]) -> str:
    return "\n".join(r.stdout + r.stderr for r in results)


def test_secrets__succeeding_and_failing_runs__never_show_a_password(
    pg_url: str, pg_engine: Engine, redis_url: str, redis_client: object, tmp_path: Path
) -> None:
    exam = make_exam(pg_engine)
    attempt = make_attempt(pg_engine, exam, deadline_at=now_of(pg_engine) - timedelta(minutes=1))
    put_session(redis_client, attempt, {exam.question_ids[0]: ("B", now_of(pg_engine))})  # type: ignore[arg-type]
    wrong_pg = pg_url.replace(PG_PASSWORD, PG_PASSWORD + "-wrong")
    wrong_redis = redis_url.replace(REDIS_PASSWORD, REDIS_PASSWORD + "-wrong")
    down = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{free_port()}/x"
    env = {"EXAMCTL_WEBHOOK_SECRET": "hunter2-webhook"}
    metrics = str(tmp_path / "metrics")
    common = ["--metrics-dir", metrics, "--verbose"]

    results = [
        invoke(
            "finish-expired", "--database-url", pg_url, "--redis-url", redis_url, *common, env=env
        ),
        invoke(
            "finish-expired",
            "--json",
            "--log-format",
            "text",
            "--database-url",
            pg_url,
            "--redis-url",
            redis_url,
            *common,
            env=env,
        ),
        invoke("finish-expired", "--database-url", pg_url, "--redis-url", wrong_redis, *common),
        invoke("finish-expired", "--database-url", wrong_pg, *common),
        invoke("finish-expired", "--database-url", down, *common),
        invoke("finish-expired", "--database-url", pg_url.replace("postgresql", "mysql")),
        invoke(
            "finish-expired",
            "--database-url",
            pg_url,
            "--redis-url",
            redis_url.replace("redis://", "http://"),
        ),
        invoke("history", "--database-url", pg_url, "--verbose"),
        invoke("history", "--json", "--database-url", pg_url),
        invoke("db", "check", "--database-url", pg_url, "--verbose"),
    ]

    assert [r.exit_code for r in results[:7]] == [0, 0, 3, 3, 3, 2, 2]
    printed = _everything_printed(results)
    with pg_engine.connect() as conn:
        stored = "\n".join(map(str, conn.execute(text("SELECT * FROM examctl_job_runs")).all()))
    written = "\n".join(p.read_text() for p in Path(metrics).iterdir())
    assert "failed" in stored and "examctl_last_run_timestamp_seconds" in written
    for secret in SECRETS:
        assert secret not in printed
        assert secret not in stored
        assert secret not in written


def test_secrets__password_as_url_query_parameter__never_shown(db_url: str, engine: Engine) -> None:
    # libpq and redis-py both take ?password=…, so the platform's URLs may carry it there.
    secret = "hunter22-query"
    redis_down = f"redis://127.0.0.1:{free_port()}/0?password={secret}"
    pg_down = f"postgresql://examctl@127.0.0.1:{free_port()}/exams?password={secret}&sslmode=allow"

    results = [
        invoke("clean-redis", "--json", "--database-url", db_url, "--redis-url", redis_down),
        invoke("status", "--json", "--database-url", db_url, "--redis-url", redis_down),
        invoke("status", "--verbose", "--database-url", pg_down),
        invoke("purge-proctoring", "--json", "--database-url", pg_down),
    ]

    assert [r.exit_code for r in results] == [3, 0, 3, 3]
    assert "password=***" in results[0].stderr and "password=***" in results[2].stderr
    with engine.connect() as conn:
        stored = "\n".join(map(str, conn.execute(text("SELECT * FROM examctl_job_runs")).all()))
    assert "Redis unreachable" in stored
    assert secret not in _everything_printed(results) and secret not in stored
