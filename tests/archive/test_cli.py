"""`examctl archive` and `examctl restore` as users and cron run them: exit codes, messages,
`--json`, the environment, the lock, metrics, progress only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from examctl.db.engine import make_engine
from examctl.db.locks import advisory_lock
from examctl.db.schema import archive_runs, job_runs
from examctl.settings import normalize_database_url
from tests.archive.support import live_ids, s3_client, seed_finished
from tests.factories import Exam
from tests.invoke import examctl_command, invoke, run_examctl, subprocess_env
from tests.servers import MotoServer

DEST_HELP = "(expected s3://bucket/prefix, file:///path or a directory path)"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--dest", "s3://"], f"--dest 's3://': no valid bucket name after s3:// {DEST_HELP}"),
        (["--dest", "ftp://x"], f"--dest 'ftp://x': unsupported scheme 'ftp://' {DEST_HELP}"),
        (["--days", "0"], "--days must be at least 1, not 0"),
        (
            ["--days", "1000000"],
            "examctl archive: Invalid value for '--days': Input should be less than or equal to "
            "36500 (see 'examctl archive --help')",
        ),
        (["--sse", "AES256"], "--sse and --sse-kms-key-id apply to s3:// destinations only"),
    ],
)
def test_archive_cli__bad_usage__exit_2_one_line_nothing_recorded(
    sqlite_url: str, args: list[str], line: str
) -> None:
    result = invoke("archive", *args, "--database-url", sqlite_url)

    assert result.exit_code == 2
    assert result.error_line == f"examctl: error: {line}"
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(select(job_runs)).all() == []
    engine.dispose()


def test_archive_cli__dest_from_environment__json_counts_and_metrics(
    engine: Engine, exam: Exam, db_url: str, tmp_path: Path
) -> None:
    seed_finished(engine, exam, [200, 300], answers=2, events=1)
    dest = tmp_path / "from-env"

    result = invoke(
        "archive",
        "--json",
        "--metrics-dir",
        str(tmp_path / "metrics"),
        "--database-url",
        db_url,
        env={"EXAMCTL_ARCHIVE_DEST": f"file://{dest}"},
    )

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert (report["job"], report["status"], report["dry_run"]) == ("archive", "ok", False)
    assert {k: v for k, v in report["counts"].items() if k != "bytes"} == {
        "attempts": 2,
        "answers": 4,
        "events": 2,
        "objects": 2,
    }
    assert report["counts"]["bytes"] == sum(p.stat().st_size for p in dest.rglob("*.gz"))
    metrics = (tmp_path / "metrics" / "examctl_archive.prom").read_text()
    assert 'examctl_last_run_count{count="objects",job="archive"} 2.0' in metrics


def test_archive_cli__another_run_holds_the_lock__skipped_exit_0(
    engine: Engine, exam: Exam, db_url: str, tmp_path: Path
) -> None:
    ids = seed_finished(engine, exam, [200])
    with advisory_lock(engine, "archive") as acquired:
        assert acquired
        result = invoke(
            "archive", "--json", "--dest", str(tmp_path / "a"), "--database-url", db_url
        )

    assert (result.exit_code, result.json()["status"]) == (0, "skipped")
    assert live_ids(engine) == set(ids)


def test_archive_cli__bucket_missing__exit_3_nothing_deleted(
    pg_engine: Engine, pg_url: str, s3_server: MotoServer, bucket: str
) -> None:
    from tests.factories import make_exam

    ids = seed_finished(pg_engine, make_exam(pg_engine), [200])

    result = invoke(
        "archive", "--json", "--dest", "s3://no-such-bucket/x", "--database-url", pg_url
    )

    assert (result.exit_code, result.json()["status"]) == (3, "failed")
    assert "bucket no-such-bucket does not exist" in result.stderr
    assert live_ids(pg_engine) == set(ids)
    with pg_engine.connect() as conn:
        assert conn.execute(select(archive_runs)).all() == []


def test_archive_cli__s3_round_trip__restored_from_the_bucket(
    pg_engine: Engine, pg_url: str, s3_server: MotoServer, bucket: str
) -> None:
    from tests.factories import make_exam

    ids = seed_finished(pg_engine, make_exam(pg_engine), [200, 250, 250])
    dest = f"s3://{bucket}/exams/prod"
    archived = invoke(
        "archive", "--json", "--dest", dest, "--sse", "AES256", "--database-url", pg_url
    )
    assert archived.exit_code == 0, archived.stderr
    listed = s3_client(s3_server).list_objects_v2(Bucket=bucket, Prefix="exams/prod/manifests/")
    (manifest,) = [o["Key"] for o in listed["Contents"]]

    result = invoke(
        "restore",
        f"s3://{bucket}/{manifest}",
        "--attempt",
        str(ids[2]),
        "--json",
        "--database-url",
        pg_url,
    )

    assert result.exit_code == 0, result.stderr
    assert result.json()["counts"] == {
        "attempts": 1,
        "answers": 3,
        "events": 2,
        "skipped": 0,
        "objects": 1,
        "failed": 0,
    }
    assert live_ids(pg_engine) == {ids[2]}


def archived_locally(engine: Engine, exam: Exam, db_url: str, root: Path) -> Path:
    seed_finished(engine, exam, [200, 201])
    assert invoke("archive", "--dest", str(root), "--database-url", db_url).exit_code == 0
    (manifest,) = (root / "manifests").glob("*.json")
    return manifest


def test_restore_cli__tampered_object__exit_1(
    engine: Engine, exam: Exam, db_url: str, tmp_path: Path
) -> None:
    manifest = archived_locally(engine, exam, db_url, tmp_path / "a")
    first = sorted((tmp_path / "a" / "attempts").rglob("*.gz"))[0]
    data = bytearray(first.read_bytes())
    data[20] ^= 0x01
    first.write_bytes(bytes(data))

    result = invoke("restore", str(manifest), "--json", "--database-url", db_url)

    assert (result.exit_code, result.json()["status"]) == (1, "failed")
    assert result.json()["counts"]["failed"] == 1 and result.json()["counts"]["attempts"] == 1
    assert "does not match its manifest" in result.stderr


def test_restore_cli__bad_input__exit_2(
    engine: Engine, exam: Exam, db_url: str, tmp_path: Path
) -> None:
    manifest = archived_locally(engine, exam, db_url, tmp_path / "a")
    corrupt = tmp_path / "a" / "manifests" / "corrupt.json"
    corrupt.write_text("{not json")

    not_uuid = invoke("restore", str(manifest), "--attempt", "42", "--database-url", db_url)
    unknown = invoke(
        "restore", str(manifest), "--attempt", str(uuid.uuid4()), "--database-url", db_url
    )
    broken = invoke("restore", str(corrupt), "--database-url", db_url)
    missing = invoke("restore", str(tmp_path / "nope.json"), "--database-url", db_url)

    assert not_uuid.exit_code == 2
    assert not_uuid.error_line == "examctl: error: --attempt '42' is not an attempt id (a UUID)"
    assert unknown.exit_code == 2 and "not in manifest manifests/" in unknown.stderr
    assert broken.exit_code == 2 and "is not a valid examctl archive manifest" in broken.stderr
    assert missing.exit_code == 2 and f"manifest {tmp_path}/nope.json not found" in missing.stderr
    assert live_ids(engine) == set()


def test_restore_cli__manifest_lists_a_bad_key__exit_2_nothing_restored(
    engine: Engine, exam: Exam, db_url: str, tmp_path: Path
) -> None:
    manifest = archived_locally(engine, exam, db_url, tmp_path / "a")
    document = json.loads(manifest.read_text())
    document["objects"][1]["key"] = "attempts//x"  # the first object is sound
    manifest.write_text(json.dumps(document))

    result = invoke("restore", str(manifest), "--database-url", db_url)

    assert result.exit_code == 2
    assert result.error_line == (
        f"examctl: error: {manifest} is not a valid examctl archive manifest: "
        "bad object key 'attempts//x'"
    )
    assert live_ids(engine) == set()


def test_archive_cli__help__loads_no_database_driver_nor_boto3() -> None:
    probe = (
        "import sys\n"
        "from examctl.cli import main\n"
        "sys.argv = ['examctl', 'archive', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('boto3', 'sqlalchemy', 'psycopg') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [examctl_command()[0], "-c", probe], env=subprocess_env(), capture_output=True, text=True
    )
    assert "--max-object-attempts" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_archive_cli__progress__drawn_on_a_terminal_only(
    pg_engine: Engine, pg_url: str, tmp_path: Path
) -> None:
    from tests.factories import make_exam

    seed_finished(pg_engine, make_exam(pg_engine), [200, 201, 202])
    args = ("archive", "--dest", str(tmp_path / "a"), "--max-object-attempts", "1")

    piped = run_examctl(*args, "--days", "180", DATABASE_URL=pg_url)
    assert piped.returncode == 0 and "archiving attempts" not in piped.stderr

    seed_finished(pg_engine, make_exam(pg_engine), [200])
    master, slave = pty.openpty()
    process = subprocess.Popen(
        examctl_command(*args),
        env=subprocess_env(DATABASE_URL=pg_url, EXAMCTL_LOG_FORMAT="json", COLUMNS="100"),
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert process.wait(timeout=60) == 0
    assert b"archiving attempts" in drawn
    engine = make_engine(normalize_database_url(pg_url))
    assert live_ids(engine) == set()
    engine.dispose()


@pytest.mark.parametrize("dest", ["s3:/exam-archive/prod", "s3:bucket", "S3//x", "file:/x"])
def test_archive_cli__dest_a_mistyped_url__exit_2_rows_kept_nothing_written(
    engine: Engine, exam: Exam, db_url: str, tmp_path: Path, dest: str
) -> None:
    ids = seed_finished(engine, exam, [200])
    before = sorted(tmp_path.rglob("*"))

    result = invoke("archive", "--dest", dest, "--database-url", db_url)

    assert result.exit_code == 2
    assert result.error_line == (
        f"examctl: error: --dest {dest!r} looks like a mistyped URL; write s3://bucket/prefix, "
        "or file:///path for a directory (also one whose name has a colon)"
    )
    assert live_ids(engine) == set(ids)
    assert sorted(tmp_path.rglob("*")) == before
