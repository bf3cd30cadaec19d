"""The store failing mid-run, for real: moto stopped, a directory turned read-only, a full disk.

Each time nothing unverified is deleted, the run fails with exit 3 and a clear message, and the
next run (with the store back) completes the manifest and archives the rest. A restore that loses
the store or the database part way fails with exit 3 and the counts of what it restored.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from examctl.db.schema import archive_runs, archived_objects
from examctl.errors import ServiceUnavailable
from examctl.jobs import archive as archive_job
from examctl.jobs.archive import ArchiveResult, archive
from examctl.jobs.restore import RestoreResult, restore
from tests.archive.support import (
    StoreAt,
    assert_live_xor_in_one_manifest,
    bucket_files,
    is_manifest,
    live_ids,
    local_files,
    manifests,
    remount,
    s3_client,
    seed_finished,
    tmpfs,
    use_s3,
)
from tests.factories import make_exam
from tests.servers import MotoServer, PostgresServer


def when_planning(number: int, action: Callable[[], object]) -> Callable[[str], None]:
    """A protocol hook that runs `action` as object `number` is planned: the objects before it
    are verified (their rows deleted or being deleted), and no file is open for writing."""
    done = 0

    def hook(step: str) -> None:
        nonlocal done
        if step == "planned":
            done += 1
            if done == number:
                action()

    return hook


@pytest.fixture
def own_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A moto server of this test's own, so stopping it does not disturb the others."""
    server = MotoServer()
    server.start()
    use_s3(monkeypatch, server)
    yield server
    server.stop()


def test_archive__s3_server_stopped_mid_run__unverified_rows_kept_rerun_completes(
    store_at: StoreAt, pg_engine: Engine, own_moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    exam = make_exam(pg_engine)
    ids = seed_finished(pg_engine, exam, [203, 202, 201, 200])
    s3_client(own_moto).create_bucket(Bucket="exams")
    monkeypatch.setattr(archive_job, "_reached", when_planning(2, own_moto.stop))

    with pytest.raises(
        ServiceUnavailable, match=r"S3 unreachable at http://127\.0\.0\.1"
    ) as failed:
        archive(pg_engine, store_at("s3://exams/a"), days=180)

    assert failed.value.partial == ArchiveResult(1, 3, 2, 1, failed.value.partial.bytes)
    assert "the manifest of run" in str(failed.value) and "written by the next run" in str(
        failed.value
    )
    assert live_ids(pg_engine) == set(ids[1:])  # only the verified object's rows were deleted
    with pg_engine.connect() as conn:
        states = conn.execute(select(archived_objects.c.state).order_by(archived_objects.c.id))
        assert states.scalars().all() == ["deleted", "planned"]  # the second: removed next run

    # The server comes back (moto keeps nothing across a restart: recreate the bucket).
    own_moto.start()
    s3_client(own_moto).create_bucket(Bucket="exams")
    monkeypatch.setattr(archive_job, "_reached", lambda step: None)
    result = archive(pg_engine, store_at("s3://exams/a"), days=180)

    assert result.attempts == 3 and live_ids(pg_engine) == set()
    first, second = sorted(
        manifests(bucket_files(own_moto, "exams", "a")), key=lambda m: m["started_at"]
    )
    assert first["status"] == "partial"
    assert [o["attempt_ids"] for o in first["objects"]] == [[str(ids[0])]]
    assert sorted(i for o in second["objects"] for i in o["attempt_ids"]) == sorted(
        map(str, ids[1:])
    )


def after_first_object(action: Callable[[], object]) -> Callable[[int, int], None]:
    """A restore progress callback that runs `action` once the first object is restored."""

    def progress(done: int, _total: int) -> None:
        if done == 1:
            action()

    return progress


def test_restore__s3_server_stopped_after_the_first_object__exit_3_with_what_was_restored(
    store_at: StoreAt, pg_engine: Engine, own_moto: MotoServer
) -> None:
    ids = seed_finished(pg_engine, make_exam(pg_engine), [201, 200])
    s3_client(own_moto).create_bucket(Bucket="exams")
    store = store_at("s3://exams/a")
    archive(pg_engine, store, days=180)
    (key,) = [k for k in bucket_files(own_moto, "exams", "a") if is_manifest(k)]

    with pytest.raises(ServiceUnavailable, match="S3 unreachable at") as failed:
        restore(pg_engine, store, key, progress=after_first_object(own_moto.stop))

    assert failed.value.partial == RestoreResult(attempts=1, answers=3, events=2, objects=1)
    assert live_ids(pg_engine) == {ids[0]}


def test_restore__database_refuses_connections_after_the_first_object__exit_3_with_counts(
    store_at: StoreAt, pg_engine: Engine, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    ids = seed_finished(pg_engine, make_exam(pg_engine), [201, 200])
    store = store_at(str(tmp_path / "a"))
    archive(pg_engine, store, days=180)
    (manifest,) = (tmp_path / "a" / "manifests").glob("*.json")
    name = pg_engine.url.database

    def close_the_database() -> None:
        postgres_server.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        postgres_server.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )

    progress = after_first_object(close_the_database)
    with pytest.raises(ServiceUnavailable, match="database unreachable at") as failed:
        restore(pg_engine, store, f"manifests/{manifest.name}", progress=progress)

    assert failed.value.partial == RestoreResult(attempts=1, answers=3, events=2, objects=1)
    postgres_server.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    assert live_ids(pg_engine) == {ids[0]}


def test_archive__directory_turns_read_only_mid_run__exit_3_then_rerun_completes(
    store_at: StoreAt, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exam = make_exam(engine)
    ids = seed_finished(engine, exam, [203, 202, 201, 200])
    with tmpfs(tmp_path / "mnt", "4m") as mount:
        dest = mount / "archive"
        monkeypatch.setattr(archive_job, "_reached", when_planning(3, lambda: remount(mount, "ro")))

        with pytest.raises(ServiceUnavailable, match="cannot be written: Read-only file system"):
            archive(engine, store_at(str(dest)), days=180)

        assert live_ids(engine) == set(ids[2:])
        assert not (dest / "manifests").exists()
        remount(mount, "rw")
        monkeypatch.setattr(archive_job, "_reached", lambda step: None)
        assert archive(engine, store_at(str(dest)), days=180).attempts == 2

        assert_live_xor_in_one_manifest(engine, local_files(dest), ids)
        assert live_ids(engine) == set()
        assert [m["status"] for m in manifests(local_files(dest))].count("partial") == 1


def test_archive__read_only_from_the_start__nothing_recorded_nothing_deleted(
    store_at: StoreAt, engine: Engine, tmp_path: Path
) -> None:
    exam = make_exam(engine)
    ids = seed_finished(engine, exam, [200])
    with tmpfs(tmp_path / "mnt", "1m") as mount:
        remount(mount, "ro")
        with pytest.raises(ServiceUnavailable, match=f"archive directory {mount}/a cannot be"):
            archive(engine, store_at(str(mount / "a")), days=180)
    assert live_ids(engine) == set(ids)
    with engine.connect() as conn:
        assert conn.execute(select(archive_runs)).all() == []


def test_archive__disk_full_mid_run__exit_3_then_rerun_completes(
    store_at: StoreAt, pg_engine: Engine, tmp_path: Path
) -> None:
    exam = make_exam(pg_engine)
    ids = seed_finished(pg_engine, exam, [210 - n for n in range(12)], answers=0, events=0)
    _bulky_answers(pg_engine, ids, exam.question_ids[0])
    with tmpfs(tmp_path / "mnt", "48k") as mount:
        dest = mount / "archive"

        with pytest.raises(ServiceUnavailable, match="No space left on device"):
            archive(pg_engine, store_at(str(dest)), days=180)

        still_live = live_ids(pg_engine)
        assert 0 < len(still_live) < len(ids)
        remount(mount, "size=4m")
        archive(pg_engine, store_at(str(dest)), days=180)

        assert live_ids(pg_engine) == set()
        assert_live_xor_in_one_manifest(pg_engine, local_files(dest), ids)


def _bulky_answers(engine: Engine, ids: list[uuid.UUID], question_id: uuid.UUID) -> None:
    """One answer per attempt of 6 KB that gzip cannot shrink: a few objects fill the disk."""
    from sqlalchemy import insert

    from examctl.db.schema import attempt_answers
    from tests.factories import now_of

    rows = [
        {
            "attempt_id": attempt_id,
            "question_id": question_id,
            "answer": os.urandom(4500).hex(),
            "answered_at": now_of(engine),
        }
        for attempt_id in ids
    ]
    with engine.begin() as conn:
        conn.execute(insert(attempt_answers), rows)


class _Crash(BaseException):
    """Stands in for SIGKILL in-process: nothing of the job catches it."""


def test_archive__killed_run_dest_unreachable__pending_then_completed_there(
    store_at: StoreAt, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exam = make_exam(engine)
    ids = seed_finished(engine, exam, [203, 202, 201])
    first, second = tmp_path / "first", tmp_path / "second"

    def crash(step: str) -> None:
        if step == "deleted":
            raise _Crash

    monkeypatch.setattr(archive_job, "_reached", crash)
    with pytest.raises(_Crash):
        archive(engine, store_at(str(first)), days=180)
    monkeypatch.setattr(archive_job, "_reached", lambda step: None)
    first.rename(tmp_path / "unmounted")  # the first destination is gone for now

    assert archive(engine, store_at(str(second)), days=180).attempts == 2

    assert not first.exists()  # not created again by the recovery attempt
    (tmp_path / "unmounted").rename(first)
    assert archive(engine, store_at(str(second)), days=180) == ArchiveResult()
    files = local_files(first) | local_files(second)
    assert_live_xor_in_one_manifest(engine, files, ids)
    assert [m["status"] for m in manifests(local_files(first))] == ["recovered"]
