"""SIGKILL of `examctl archive` at every step of its protocol, then a rerun.

At the moment of the kill no attempt is lost (each is live, or its object is recorded deleted
and is whole in the store); after the rerun each attempt is in exactly one manifest, and the
objects the killed run left unverified are gone from the store.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from examctl.db.engine import make_engine
from examctl.db.schema import archive_runs, archived_objects
from examctl.settings import normalize_database_url
from tests.archive.support import (
    assert_live_xor_in_one_manifest,
    bucket_files,
    live_ids,
    local_files,
    manifests,
    seed_finished,
)
from tests.factories import make_exam
from tests.invoke import run_examctl, subprocess_env
from tests.servers import MotoServer

ARGS = ("--days", "180", "--max-object-attempts", "1", "--json")


def run_killed_at(step: str, nth: int, *args: str, database_url: str) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "tests.archive.kill_at", step, str(nth), "archive", *args],
        env=subprocess_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode


def seeded(url: str) -> tuple[Engine, list[uuid.UUID]]:
    engine = make_engine(normalize_database_url(url))
    exam = make_exam(engine)
    return engine, seed_finished(engine, exam, [205, 204, 204, 203, 202])


def assert_nothing_lost(engine: Engine, files: dict[str, bytes], ids: list[uuid.UUID]) -> None:
    """Right after the kill: every attempt is live, or held by a whole object marked deleted."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(archived_objects).where(archived_objects.c.state == "deleted")
        ).mappings()
        held = {}
        for row in rows:
            data = files[row["key"]]
            assert hashlib.sha256(data).hexdigest() == row["sha256"]
            lines = gzip.decompress(data).decode().splitlines()
            assert [json.loads(line)["attempt"]["id"] for line in lines] == row["attempt_ids"]
            held.update(dict.fromkeys(map(uuid.UUID, row["attempt_ids"]), row["key"]))
    live = live_ids(engine)
    assert all((i in live) != (i in held) for i in ids)


@pytest.mark.parametrize(
    ("step", "nth"),
    [
        ("planned", 1),
        ("writing", 2),
        ("stored", 2),
        ("verified", 1),
        ("deleted", 1),
        ("deleted", 5),
        ("manifest", 1),
        ("manifest_written", 1),
    ],
)
def test_archive__sigkill_at_step__rerun_leaves_each_attempt_live_xor_in_one_manifest(
    pg_url: str, tmp_path: Path, step: str, nth: int
) -> None:
    engine, ids = seeded(pg_url)
    dest = tmp_path / "archive"

    code = run_killed_at(step, nth, "--dest", str(dest), *ARGS, database_url=pg_url)

    assert code == -signal.SIGKILL
    assert_nothing_lost(engine, local_files(dest), ids)
    rerun = run_examctl("archive", "--dest", str(dest), *ARGS, DATABASE_URL=pg_url)
    assert rerun.returncode == 0, rerun.stderr
    assert_live_xor_in_one_manifest(engine, local_files(dest), ids)
    assert live_ids(engine) == set()
    statuses = {m["status"] for m in manifests(local_files(dest))}
    assert statuses == {"recovered", "complete"}  # the killed run's manifest, and the rerun's
    engine.dispose()


def test_archive__sigkill_twice_then_rerun__still_one_manifest_each(
    pg_url: str, tmp_path: Path
) -> None:
    engine, ids = seeded(pg_url)
    dest = tmp_path / "archive"
    assert run_killed_at("stored", 3, "--dest", str(dest), *ARGS, database_url=pg_url) == -9
    # The rerun dies too, while it removes what the first run left unverified.
    assert run_killed_at("discarded", 1, "--dest", str(dest), *ARGS, database_url=pg_url) == -9

    assert run_examctl("archive", "--dest", str(dest), *ARGS, DATABASE_URL=pg_url).returncode == 0

    assert_live_xor_in_one_manifest(engine, local_files(dest), ids)
    assert live_ids(engine) == set()
    with engine.connect() as conn:
        runs = conn.execute(select(archive_runs.c.status).order_by(archive_runs.c.id)).scalars()
        assert sorted(runs) == ["complete", "recovered"]  # the second died before it began
    engine.dispose()


def test_archive__sigkill_on_sqlite__rerun_completes(sqlite_url: str, tmp_path: Path) -> None:
    engine, ids = seeded(sqlite_url)
    dest = tmp_path / "archive"
    assert run_killed_at("deleted", 2, "--dest", str(dest), *ARGS, database_url=sqlite_url) == -9

    assert (
        run_examctl("archive", "--dest", str(dest), *ARGS, DATABASE_URL=sqlite_url).returncode == 0
    )

    assert_live_xor_in_one_manifest(engine, local_files(dest), ids)
    engine.dispose()


def test_archive__sigkill_with_s3__unverified_object_removed_from_bucket(
    pg_url: str, bucket: str, s3_server: MotoServer
) -> None:
    engine, ids = seeded(pg_url)
    dest = f"s3://{bucket}/exams"
    assert run_killed_at("stored", 2, "--dest", dest, *ARGS, database_url=pg_url) == -9
    assert len(bucket_files(s3_server, bucket, "exams")) == 2  # one archived, one unverified

    assert run_examctl("archive", "--dest", dest, *ARGS, DATABASE_URL=pg_url).returncode == 0

    files = bucket_files(s3_server, bucket, "exams")
    assert_live_xor_in_one_manifest(engine, files, ids)
    assert len(files) == len(ids) + 2  # one object per attempt, two manifests, nothing else
    engine.dispose()
