"""archive on PostgreSQL and SQLite: what is due, objects per UTC day, manifest, deletion."""

from __future__ import annotations

import gzip
import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from examctl.db.schema import archive_runs, archived_objects, attempt_answers, proctoring_events
from examctl.jobs import archive as archive_job
from examctl.jobs.archive import ArchiveResult, archive
from examctl.jobs.archive_export import prefetched
from tests.archive.support import (
    StoreAt,
    assert_live_xor_in_one_manifest,
    live_ids,
    local_files,
    manifests,
    seed_finished,
)
from tests.factories import Exam, make_attempt, now_of


def test_archive__old_finished_attempts__stored_verified_then_deleted(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    old = seed_finished(engine, exam, [200, 200.01, 190], answers=3, events=2)
    old += seed_finished(engine, exam, [181], status="ABANDONED", answers=0, events=0)
    recent = seed_finished(engine, exam, [179])
    now = now_of(engine)
    running = make_attempt(engine, exam, deadline_at=now - timedelta(days=300))
    dest = tmp_path / "archive"

    result = archive(engine, store_at(str(dest)), days=180)

    files = local_files(dest)
    assert result == ArchiveResult(
        attempts=4,
        answers=9,
        events=6,
        objects=3,
        bytes=sum(len(v) for k, v in files.items() if k.endswith(".gz")),
    )
    assert live_ids(engine) == {*recent, running}
    listed = assert_live_xor_in_one_manifest(engine, files, [*old, *recent, running])
    assert set(listed) == set(old)
    (manifest,) = manifests(files)
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {
        "attempts": 4,
        "answers": 9,
        "events": 6,
        "objects": 3,
        "bytes": result.bytes,
    }


def test_archive__local_directory__private_modes(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    seed_finished(engine, exam, [200])
    dest = tmp_path / "archive"

    archive(engine, store_at(str(dest)), days=180)

    paths = [dest, *dest.rglob("*")]
    modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert all(mode == (0o700 if (tmp_path / p).is_dir() else 0o600) for p, mode in modes.items())
    assert len([p for p in paths if p.is_file()]) == 2


def test_archive__days_and_size_bound__one_utc_day_per_object(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    late = datetime(2020, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    ids = [make_attempt(engine, exam, deadline_at=late, status="EXPIRED", finished_at=late)]
    for minute in range(5):
        at = datetime(2020, 3, 2, 0, minute, tzinfo=UTC)
        ids.append(make_attempt(engine, exam, deadline_at=at, status="SUBMITTED", finished_at=at))
    dest = tmp_path / "archive"

    result = archive(engine, store_at(str(dest)), days=1, max_object_attempts=2)

    (manifest,) = manifests(local_files(dest))
    run = manifest["run_id"]
    assert [(o["key"], o["day"], o["attempt_ids"]) for o in manifest["objects"]] == [
        (f"attempts/2020/03/01/{run}-0001.jsonl.gz", "2020-03-01", [str(ids[0])]),
        (f"attempts/2020/03/02/{run}-0002.jsonl.gz", "2020-03-02", [str(i) for i in ids[1:3]]),
        (f"attempts/2020/03/02/{run}-0003.jsonl.gz", "2020-03-02", [str(i) for i in ids[3:5]]),
        (f"attempts/2020/03/02/{run}-0004.jsonl.gz", "2020-03-02", [str(ids[5])]),
    ]
    assert result.objects == 4 and result.attempts == 6


def test_archive__dry_run__counts_and_changes_nothing(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    seed_finished(engine, exam, [200, 200, 201, 202], answers=2, events=3)
    before = live_ids(engine)
    dest = tmp_path / "archive"

    result = archive(engine, store_at(str(dest)), days=180, max_object_attempts=1, dry_run=True)

    assert result == ArchiveResult(attempts=4, answers=8, events=12, objects=4, bytes=0)
    assert live_ids(engine) == before
    assert not dest.exists()
    with engine.connect() as conn:
        assert conn.execute(select(archive_runs)).all() == []


def test_archive__nothing_due__empty_manifest_still_written(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    kept = seed_finished(engine, exam, [30])
    dest = tmp_path / "archive"

    assert archive(engine, store_at(str(dest)), days=180) == ArchiveResult()

    (manifest,) = manifests(local_files(dest))
    assert manifest["objects"] == [] and manifest["status"] == "complete"
    assert live_ids(engine) == set(kept)


def test_archive__rows_added_after_export__object_discarded_rows_stay_live(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (attempt,) = seed_finished(engine, exam, [200], events=1)
    dest = tmp_path / "archive"

    def late_event(step: str) -> None:
        if step == "verified":  # the object is stored and verified, its rows not yet deleted
            with engine.begin() as conn:
                row = {"attempt_id": attempt, "kind": "late", "occurred_at": now_of(engine)}
                conn.execute(insert(proctoring_events).values(row))

    monkeypatch.setattr(archive_job, "_reached", late_event)
    assert archive(engine, store_at(str(dest)), days=180) == ArchiveResult()

    assert live_ids(engine) == {attempt}
    assert manifests(local_files(dest))[0]["objects"] == []
    assert not list((dest / "attempts").rglob("*.gz"))
    with engine.connect() as conn:
        assert conn.execute(select(archived_objects.c.state)).scalars().all() == ["discarded"]

    monkeypatch.setattr(archive_job, "_reached", lambda step: None)
    assert archive(engine, store_at(str(dest)), days=180).events == 2  # the next run takes both


def test_archive__answer_regraded_after_export__object_discarded(
    store_at: StoreAt, pg_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.factories import make_exam

    exam = make_exam(pg_engine)
    (attempt,) = seed_finished(pg_engine, exam, [200], answers=2)
    dest = tmp_path / "archive"

    def regrade(step: str) -> None:
        if step == "verified":  # same row count, new content: only row versions can tell
            with pg_engine.begin() as conn:
                conn.execute(
                    update(attempt_answers)
                    .where(attempt_answers.c.attempt_id == attempt)
                    .values(points_awarded=1)
                )

    monkeypatch.setattr(archive_job, "_reached", regrade)
    assert archive(pg_engine, store_at(str(dest)), days=180).objects == 0
    assert live_ids(pg_engine) == {attempt}

    monkeypatch.setattr(archive_job, "_reached", lambda step: None)
    assert archive(pg_engine, store_at(str(dest)), days=180).objects == 1
    files = local_files(dest)
    (data,) = [v for k, v in files.items() if k.endswith(".gz")]
    answers = json.loads(gzip.decompress(data))["answers"]
    assert [a["points_awarded"] for a in answers] == [1, 1]


def test_archive_prefetch__producer_fails__error_raised_in_consumer() -> None:
    def batches() -> Iterator[int]:
        yield 1
        raise ConnectionError("lost the server mid-fetch")

    received = []
    with pytest.raises(ConnectionError, match="mid-fetch"):
        for batch in prefetched(batches()):
            received.append(batch)
    assert received == [1]


def test_archive_prefetch__consumer_stops_early__producer_released() -> None:
    produced = []

    def batches() -> Iterator[int]:
        for n in range(1000):
            produced.append(n)
            yield n

    for batch in prefetched(batches(), depth=2):
        if batch == 3:
            break  # e.g. the disk filled up while writing batch 3

    assert len(produced) <= 3 + 2 + 2  # read ahead at most `depth` (+ one in hand), not all 1000
    assert not [t for t in threading.enumerate() if t.name == "archive-fetch"]
