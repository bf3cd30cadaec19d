"""--metrics-dir: examctl_<job>.prom in Prometheus text format, read back with its own parser."""

from __future__ import annotations

import time
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from tests.events import DAY, add_events, count_events
from tests.factories import make_attempt, make_exam, now_of, put_session
from tests.invoke import invoke
from tests.servers import free_port


def _metrics(path: Path) -> dict[str, dict[str, float]]:
    """{metric name: {label value that is not the job (or ''): value}}."""
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            extra = [v for k, v in sample.labels.items() if k != "job"]
            found.setdefault(sample.name, {})[extra[0] if extra else ""] = sample.value
    return found


def test_metrics__purge_run__last_run_success_duration_counts(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    add_events(engine, count=40, newest=now_of(engine) - 100 * DAY, step=DAY)
    metrics_dir = tmp_path / "textfile"
    before = time.time()

    result = invoke(
        "purge-proctoring",
        "--batch-size",
        "15",
        "--database-url",
        db_url,
        "--metrics-dir",
        str(metrics_dir),
    )

    assert result.exit_code == 0, result.stderr
    assert [p.name for p in metrics_dir.iterdir()] == ["examctl_purge_proctoring.prom"]
    m = _metrics(metrics_dir / "examctl_purge_proctoring.prom")
    last_run = m["examctl_last_run_timestamp_seconds"][""]
    assert before - 5 < last_run < time.time() + 5
    assert m["examctl_last_success_timestamp_seconds"][""] == last_run
    assert 0 < m["examctl_last_run_duration_seconds"][""] < 60
    assert m["examctl_last_run_count"] == {"deleted": 40, "batches": 3}
    assert m["examctl_last_run_status"] == {"ok": 1, "failed": 0, "skipped": 0}
    assert (m["examctl_last_run_exit_code"][""], m["examctl_last_run_dry_run"][""]) == (0, 0)


def test_metrics__failed_after_success__last_success_kept(
    db_url: str, engine: Engine, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    exam = make_exam(engine)
    put_session(
        redis_client, make_attempt(engine, exam, deadline_at=now_of(engine), status="EXPIRED"), {}
    )
    common = ["--database-url", db_url, "--metrics-dir", str(tmp_path)]
    assert invoke("clean-redis", *common, "--redis-url", redis_url).exit_code == 0
    path = tmp_path / "examctl_clean_redis.prom"
    first = _metrics(path)
    time.sleep(0.05)

    down = f"redis://127.0.0.1:{free_port()}/0"
    result = invoke("clean-redis", *common, "--redis-url", down)

    assert result.exit_code == 3
    after = _metrics(path)
    assert after["examctl_last_run_status"] == {"ok": 0, "failed": 1, "skipped": 0}
    assert after["examctl_last_run_exit_code"][""] == 3
    assert (
        after["examctl_last_run_timestamp_seconds"][""]
        > first["examctl_last_run_timestamp_seconds"][""]
    )
    assert (
        after["examctl_last_success_timestamp_seconds"][""]
        == first["examctl_last_run_timestamp_seconds"][""]
    )
    assert first["examctl_last_run_count"] == {
        "scanned": 1,
        "deleted": 1,
        "kept": 0,
        "malformed": 0,
    }


def test_metrics__never_succeeded__last_success_zero(sqlite_url: str, tmp_path: Path) -> None:
    result = invoke(
        "clean-redis", "--database-url", sqlite_url, env={"EXAMCTL_METRICS_DIR": str(tmp_path)}
    )

    assert result.exit_code == 0
    m = _metrics(tmp_path / "examctl_clean_redis.prom")
    assert m["examctl_last_run_status"]["skipped"] == 1
    assert m["examctl_last_success_timestamp_seconds"][""] == 0


def test_metrics__database_unreachable__failed_run_written_last_success_kept(
    sqlite_url: str, tmp_path: Path
) -> None:
    ok = invoke("purge-proctoring", "--database-url", sqlite_url, "--metrics-dir", str(tmp_path))
    assert ok.exit_code == 0, ok.stderr
    path = tmp_path / "examctl_purge_proctoring.prom"
    first = _metrics(path)
    assert first["examctl_last_run_exit_code"][""] == 0
    down = f"postgresql://examctl:s3cret-pw@127.0.0.1:{free_port()}/exams"

    result = invoke("purge-proctoring", "--database-url", down, "--metrics-dir", str(tmp_path))

    assert result.exit_code == 3
    assert "database unreachable" in result.stderr and "s3cret-pw" not in result.stderr
    after = _metrics(path)
    assert after["examctl_last_run_status"] == {"ok": 0, "failed": 1, "skipped": 0}
    assert after["examctl_last_run_exit_code"][""] == 3
    assert (
        after["examctl_last_run_timestamp_seconds"][""]
        >= first["examctl_last_run_timestamp_seconds"][""]
    )
    assert (
        after["examctl_last_success_timestamp_seconds"][""]
        == first["examctl_last_success_timestamp_seconds"][""]
        > 0
    )
    assert "s3cret-pw" not in path.read_text()


def test_metrics__database_unreachable_first_run__last_success_zero(tmp_path: Path) -> None:
    down = f"postgresql://examctl:pw@127.0.0.1:{free_port()}/exams"

    result = invoke(
        "archive",
        "--dest",
        str(tmp_path / "a"),
        "--database-url",
        down,
        "--metrics-dir",
        str(tmp_path / "m"),
    )

    assert result.exit_code == 3
    m = _metrics(tmp_path / "m" / "examctl_archive.prom")
    assert (
        m["examctl_last_run_exit_code"][""],
        m["examctl_last_success_timestamp_seconds"][""],
    ) == (3, 0)


def test_metrics__dir_under_a_file__exit_2_before_any_work(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    add_events(engine, count=5, newest=now_of(engine) - 100 * DAY, step=DAY)
    afile = tmp_path / "afile"
    afile.write_text("")

    result = invoke(
        "purge-proctoring", "--json", "--database-url", db_url, "--metrics-dir", str(afile / "sub")
    )

    assert result.exit_code == 2
    assert "--metrics-dir" in result.stderr and "cannot be written" in result.stderr
    assert result.stderr.count("\n") == 1
    assert count_events(engine) == 5
