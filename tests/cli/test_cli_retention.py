"""purge-proctoring and clean-redis from the command line: output, exit codes, history."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
from sqlalchemy import Engine

from tests.events import DAY, add_events, count_events
from tests.factories import make_attempt, make_exam, now_of, put_session
from tests.invoke import REPO_ROOT, invoke, subprocess_env
from tests.servers import free_port


def _history(db_url: str, job: str) -> list[dict[str, object]]:
    result = invoke("history", "--job", job, "--json", "--database-url", db_url)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, object]] = result.json()
    return rows


def test_purge_proctoring__cli_json__spec_object(db_url: str, engine: Engine) -> None:
    add_events(engine, count=12, newest=now_of(engine) - 91 * DAY, step=DAY)

    result = invoke("purge-proctoring", "--batch-size", "5", "--json", "--database-url", db_url)

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert set(report) == {"job", "status", "dry_run", "counts", "duration_s"}
    assert (report["job"], report["status"], report["dry_run"]) == ("purge-proctoring", "ok", False)
    assert report["counts"] == {"deleted": 12, "batches": 3}
    assert _history(db_url, "purge-proctoring")[0]["counts"] == {"deleted": 12, "batches": 3}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "Invalid value for '--days'"),
        (["--batch-size", "0"], "Invalid value for '--batch-size'"),
    ],
)
def test_purge_proctoring__bad_option__exit_2_nothing_deleted(
    sqlite_url: str, args: list[str], message: str
) -> None:
    from examctl.db.engine import make_engine

    engine = make_engine(sqlite_url)
    add_events(engine, count=3, newest=now_of(engine) - 200 * DAY, step=DAY)

    result = invoke("purge-proctoring", *args, "--database-url", sqlite_url)

    assert result.exit_code == 2
    assert result.error_line.startswith(f"examctl: error: examctl purge-proctoring: {message}")
    assert count_events(engine) == 3


def test_purge_proctoring__cli_dry_run__nothing_deleted(sqlite_url: str) -> None:
    from examctl.db.engine import make_engine

    engine = make_engine(sqlite_url)
    add_events(engine, count=4, newest=now_of(engine) - 100 * DAY, step=DAY)

    result = invoke("purge-proctoring", "--dry-run", "--json", "--database-url", sqlite_url)

    assert (result.json()["dry_run"], result.json()["counts"]["deleted"]) == (True, 4)
    assert count_events(engine) == 4


def test_clean_redis__cli_json__counts(
    db_url: str, engine: Engine, redis_url: str, redis_client: redis.Redis
) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    put_session(redis_client, make_attempt(engine, exam, deadline_at=now), {})
    put_session(redis_client, make_attempt(engine, exam, deadline_at=now, status="EXPIRED"), {})
    redis_client.set("exam:attempt:junk", "1")

    result = invoke("clean-redis", "--json", "--database-url", db_url, "--redis-url", redis_url)

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == {"scanned": 3, "deleted": 2, "kept": 1, "malformed": 1}
    assert redis_client.dbsize() == 1


def test_clean_redis__no_redis__skipped_exit_0_recorded(sqlite_url: str) -> None:
    result = invoke("clean-redis", "--json", "--database-url", sqlite_url)

    assert result.exit_code == 0
    assert (result.json()["status"], result.json()["counts"]) == ("skipped", {})
    assert "Redis not configured" in result.stderr
    assert _history(sqlite_url, "clean-redis")[0]["status"] == "skipped"


def test_clean_redis__redis_unreachable__exit_3_recorded_failed(sqlite_url: str) -> None:
    url = f"redis://:hunter22@127.0.0.1:{free_port()}/0"

    result = invoke("clean-redis", "--database-url", sqlite_url, "--redis-url", url)

    assert result.exit_code == 3
    assert result.error_line.startswith("examctl: error: Redis unreachable at redis://:***@127.")
    assert "hunter22" not in result.stdout + result.stderr
    row = _history(sqlite_url, "clean-redis")[0]
    assert row["status"] == "failed" and "hunter22" not in json.dumps(row)


@pytest.mark.parametrize("command", ["purge-proctoring", "clean-redis", "status"])
def test_cli__help__imports_no_driver(command: str) -> None:
    probe = (
        "import sys; from examctl.cli import main; sys.argv = ['examctl', sys.argv[1], '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "loaded = [m for m in ('sqlalchemy', 'psycopg', 'redis', 'boto3') if m in sys.modules]\n"
        "print('LOADED', loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, command],
        env=subprocess_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )

    assert "Example: examctl" in result.stdout
    assert result.stdout.strip().endswith("LOADED []")
