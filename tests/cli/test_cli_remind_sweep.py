"""`examctl remind` and `examctl sweep --once` in-process: exit codes, --json, secrets, files."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from examctl.db.engine import make_engine
from examctl.db.schema import job_runs, reminders
from examctl.settings import normalize_database_url
from tests.factories import attempt_row, make_attempt, make_exam, now_of
from tests.invoke import invoke
from tests.servers import free_port
from tests.webhooks import WebhookServer

SECRET = "whsec-cli-t0p-s3cret"


def seed(url: str, *lefts: timedelta) -> list[object]:
    engine = make_engine(normalize_database_url(url))
    exam = make_exam(engine)
    now = now_of(engine)
    ids = [make_attempt(engine, exam, deadline_at=now + left) for left in lefts]
    engine.dispose()
    return ids


def table(url: str, which: object) -> list[dict[str, object]]:
    engine = make_engine(normalize_database_url(url))
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(which))]  # type: ignore[call-overload]
    engine.dispose()
    return rows


# --- remind ------------------------------------------------------------------------------------


@pytest.mark.parametrize("at", ["10,0,1", "ten", "5,,1", "-1", "²", "10081"])
def test_cli_remind__bad_at__exit_2_one_line(sqlite_url: str, at: str) -> None:
    result = invoke("remind", "--at", at, "--database-url", sqlite_url)

    assert result.exit_code == 2
    assert result.error_line == (
        "examctl: error: --at must be a comma-separated list of whole minutes from 1 to 10080, "
        "such as 10,5,1"
    )
    assert table(sqlite_url, job_runs) == []


@pytest.mark.parametrize("notify", ["smtp://mail.example.com", "https://", "hooks.example.com/x"])
def test_cli_remind__bad_notify__exit_2_one_line(sqlite_url: str, notify: str) -> None:
    result = invoke("remind", "--notify", notify, "--database-url", sqlite_url)

    assert result.exit_code == 2
    assert result.error_line == (
        "examctl: error: --notify must be 'log' or an http:// or https:// URL with a host"
    )


def test_cli_remind__signed_webhook__json_counts_and_metrics(pg_url: str, tmp_path: Path) -> None:
    seed(pg_url, timedelta(seconds=40), timedelta(minutes=7))
    with WebhookServer(secret=SECRET) as server:
        result = invoke(
            "remind",
            "--json",
            "--notify",
            server.url,
            "--metrics-dir",
            str(tmp_path / "metrics"),
            "--database-url",
            pg_url,
            env={"EXAMCTL_WEBHOOK_SECRET": SECRET},
        )

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == {"sent": 2, "skipped": 2, "failed": 0}
    assert [r.signature_ok for r in server.received] == [True, True]
    metrics = (tmp_path / "metrics" / "examctl_remind.prom").read_text()
    assert 'examctl_last_run_count{count="sent",job="remind"} 2.0' in metrics


def test_cli_remind__webhook_fails__exit_1_and_no_secret_anywhere(db_url: str) -> None:
    seed(db_url, timedelta(minutes=3))
    with WebhookServer(status=502) as server:
        result = invoke(
            "remind",
            "--json",
            "--notify",
            server.url,
            "--database-url",
            db_url,
            env={"EXAMCTL_WEBHOOK_SECRET": SECRET},
        )

    assert result.exit_code == 1
    document = result.json()
    assert (document["status"], document["counts"]) == (
        "failed",
        {"sent": 0, "skipped": 1, "failed": 1},
    )
    [run] = table(db_url, job_runs)
    assert "retried on the next run" in str(run["error"])
    [row] = [r for r in table(db_url, reminders) if r["minutes_before"] == 5]
    assert (row["state"], row["error"]) == ("failed", "HTTP 502")
    everything = result.stdout + result.stderr + repr(table(db_url, job_runs))
    assert SECRET not in everything
    assert "s3cr3t-path" not in everything  # the webhook's path (a token) is never shown


def test_cli_remind__dry_run__counts_records_no_reminder(sqlite_url: str) -> None:
    seed(sqlite_url, timedelta(minutes=3))

    result = invoke("remind", "--dry-run", "--json", "--database-url", sqlite_url)

    assert result.exit_code == 0
    assert result.json()["counts"] == {"sent": 1, "skipped": 1, "failed": 0}
    assert result.json()["dry_run"] is True
    assert table(sqlite_url, reminders) == []


# --- sweep --once ------------------------------------------------------------------------------


def test_cli_sweep__once__json_counts_and_health_file(db_url: str, tmp_path: Path) -> None:
    overdue, _ = seed(db_url, -timedelta(seconds=3), timedelta(minutes=4))
    health = tmp_path / "sweep.health"

    result = invoke(
        "sweep", "--once", "--json", "--health-file", str(health), "--database-url", db_url
    )

    assert result.exit_code == 0, result.stderr
    counts = result.json()["counts"]
    assert (counts["finished"], counts["sent"], counts["skipped"]) == (1, 1, 1)
    assert health.exists()
    assert [r["job"] for r in table(db_url, job_runs)] == ["sweep"]
    engine = make_engine(normalize_database_url(db_url))
    assert attempt_row(engine, overdue)["status"] == "EXPIRED"  # type: ignore[arg-type]
    engine.dispose()


def test_cli_sweep__once_redis_down__exit_3_nothing_finished(pg_url: str, tmp_path: Path) -> None:
    [overdue] = seed(pg_url, -timedelta(seconds=3))
    health = tmp_path / "sweep.health"

    result = invoke(
        "sweep",
        "--once",
        "--health-file",
        str(health),
        "--database-url",
        pg_url,
        "--redis-url",
        f"redis://127.0.0.1:{free_port()}/0",
    )

    assert result.exit_code == 3
    assert result.error_line.startswith("examctl: error: Redis unreachable at redis://127.0.0.1:")
    assert not health.exists()
    engine = make_engine(normalize_database_url(pg_url))
    assert attempt_row(engine, overdue)["status"] == "IN_PROGRESS"  # type: ignore[arg-type]
    engine.dispose()


def test_cli_sweep__dry_run__one_round_nothing_changed(sqlite_url: str) -> None:
    seed(sqlite_url, -timedelta(seconds=3), timedelta(minutes=4))

    result = invoke("sweep", "--dry-run", "--json", "--database-url", sqlite_url)

    assert result.exit_code == 0
    assert (result.json()["counts"]["finished"], result.json()["dry_run"]) == (1, True)
    assert table(sqlite_url, reminders) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--health-file", "/no/such/dir/health"], "--health-file: directory /no/such/dir"),
        (["--interval", "0"], "Invalid value for '--interval'"),
        (["--at", "0"], "--at must be a comma-separated list"),
    ],
)
def test_cli_sweep__bad_option__exit_2(sqlite_url: str, args: list[str], message: str) -> None:
    result = invoke("sweep", *args, "--database-url", sqlite_url)

    assert result.exit_code == 2
    assert message in result.error_line


def test_cli_sweep__redis_unreachable_at_start__exit_3_at_once(pg_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"

    result = invoke("sweep", "--database-url", pg_url, "--redis-url", dead)

    assert result.exit_code == 3
    assert result.error_line.startswith(f"examctl: error: Redis unreachable at {dead}")
    assert [(r["job"], r["status"]) for r in table(pg_url, job_runs)] == [("sweep", "failed")]
