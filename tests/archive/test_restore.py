"""restore on PostgreSQL and SQLite: exact round trip, skipping live rows, checksums, subsets."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, text

from examctl.db.schema import attempt_answers, exam_attempts, exams, proctoring_events, questions
from examctl.errors import JobFailed, UsageError
from examctl.jobs.archive import archive
from examctl.jobs.archive_manifest import FORMAT, parse_manifest
from examctl.jobs.restore import RestoreResult, locate_manifest, parse_attempt_ids, restore
from examctl.stores.archive_store import Destination, open_store, parse_destination
from tests.archive.support import StoreAt, live_ids, seed_finished
from tests.factories import Exam, make_exam

TABLES = (exam_attempts, attempt_answers, proctoring_events)


def archived(engine: Engine, root: Path, **kwargs: Any) -> str:
    """Archive everything due into `root`; return the manifest's key."""
    store = open_store(parse_destination(str(root)))
    archive(engine, store, days=180, **kwargs)
    (manifest,) = (root / "manifests").glob("*.json")
    return f"manifests/{manifest.name}"


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the three tables, each value with its type and exact text (12.50 ≠ 12.5)."""
    with engine.connect() as conn:
        return {
            table.name: [
                {k: (type(v).__name__, repr(v)) for k, v in row.items()}
                for row in conn.execute(select(table).order_by(table.c.id)).mappings()
            ]
            for table in TABLES
        }


def insert_rich_attempt(engine: Engine, exam: Exam, finished_at: datetime) -> uuid.UUID:
    """An attempt with every column set to a value that is easy to damage on the way."""
    attempt_id = uuid.uuid4()
    started = finished_at - timedelta(minutes=44, microseconds=123457)
    with engine.begin() as conn:
        conn.execute(
            insert(exam_attempts).values(
                id=attempt_id,
                exam_id=exam.id,
                user_id=uuid.uuid4(),
                status="EXPIRED",
                started_at=started,
                deadline_at=started + timedelta(minutes=45),
                finished_at=finished_at,
                finished_by="examctl",
                score=Decimal("12.50"),
                max_score=Decimal("20.000"),
                percent=Decimal("62.5000000000000000001"),
                passed=True,
                proctoring_summary={
                    "total": 2,
                    "by_kind": {"tab_switch": 2},
                    "first_at": started.isoformat(),
                    "ratio": 0.1,
                    "note": 'quote " backslash \\ newline \n unicode é 漢字 🙂',
                    "none": None,
                },
            )
        )
        conn.execute(
            insert(attempt_answers),
            [
                {
                    "attempt_id": attempt_id,
                    "question_id": exam.question_ids[0],
                    "answer": "B\n",
                    "answered_at": started + timedelta(seconds=1, microseconds=1),
                    "is_correct": False,
                    "points_awarded": Decimal("0.0"),
                },
                {
                    "attempt_id": attempt_id,
                    "question_id": exam.question_ids[1],
                    "answer": ["C", "A"],
                    "answered_at": started + timedelta(seconds=2),
                    "is_correct": None,
                    "points_awarded": None,
                },
                {
                    "attempt_id": attempt_id,
                    "question_id": exam.question_ids[3],
                    "answer": 3.14159,
                    "answered_at": started + timedelta(seconds=3),
                    "is_correct": True,
                    "points_awarded": Decimal("1E+1"),
                },
            ],
        )
        conn.execute(
            insert(proctoring_events),
            [
                {"attempt_id": attempt_id, "kind": "tab_switch", "occurred_at": started},
                {
                    "attempt_id": attempt_id,
                    "kind": "face_missing",
                    "occurred_at": started + timedelta(minutes=1),
                    "payload": {"confidence": 0.25, "frames": [1, 2, 3], "big": 2**53 + 1},
                },
            ],
        )
    return attempt_id


def test_restore__every_column__round_trips_exactly(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    day = datetime(2021, 6, 1, 12, 0, 0, 654321, tzinfo=UTC)
    insert_rich_attempt(engine, exam, day)
    insert_rich_attempt(engine, exam, day + timedelta(days=1))
    seed_finished(engine, exam, [400, 401], answers=4, events=3)
    before = snapshot(engine)
    key = archived(engine, tmp_path / "archive", max_object_attempts=1)
    assert live_ids(engine) == set()

    result = restore(engine, store_at(str(tmp_path / "archive")), key)

    assert result == RestoreResult(attempts=4, answers=14, events=10, objects=4)
    after = snapshot(engine)
    for table in TABLES:
        for row_before, row_after in zip(before[table.name], after[table.name], strict=True):
            for column in table.columns:
                assert row_after[column.name] == row_before[column.name], (table, column)


def test_restore__run_twice__second_run_skips_every_row(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    seed_finished(engine, exam, [200, 201], answers=2, events=1)
    root = tmp_path / "archive"
    key = archived(engine, root)
    store = store_at(str(root))
    assert restore(engine, store, key, dry_run=True) == RestoreResult(2, 4, 2, 0, 2)
    assert live_ids(engine) == set()
    restore(engine, store, key)

    assert restore(engine, store, key) == RestoreResult(skipped=8, objects=2)


def test_restore__dry_run__counts_what_the_run_does_and_changes_nothing(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    seed_finished(engine, exam, [200, 201], answers=2, events=1)
    root = tmp_path / "archive"
    key = archived(engine, root)
    store = store_at(str(root))
    restore(engine, store, key)
    with engine.begin() as conn:
        # One answer live again under another id: the run skips it on (attempt, question).
        conn.execute(
            text(
                "UPDATE attempt_answers SET id = id + 1000000 WHERE id = "
                "(SELECT min(id) FROM attempt_answers)"
            )
        )
        conn.execute(text("DELETE FROM proctoring_events"))
    before = snapshot(engine)

    dry = restore(engine, store, key, dry_run=True)

    assert snapshot(engine) == before
    assert dry == RestoreResult(events=2, skipped=6, objects=2)
    assert restore(engine, store, key) == dry


def test_restore__into_a_database_whose_ids_are_behind__new_rows_do_not_collide(
    store_at: StoreAt, pg_engine: Engine, tmp_path: Path
) -> None:
    exam = make_exam(pg_engine)
    seed_finished(pg_engine, exam, [200, 201], answers=2, events=1)
    root = tmp_path / "archive"
    key = archived(pg_engine, root)
    with pg_engine.begin() as conn:  # a database recreated elsewhere: its ids start over
        for table in ("attempt_answers", "proctoring_events"):
            conn.execute(text(f"ALTER TABLE {table} ALTER COLUMN id RESTART WITH 1"))

    restore(pg_engine, store_at(str(root)), key)
    seed_finished(pg_engine, exam, [1], answers=2, events=1)  # the platform goes on inserting

    with pg_engine.connect() as conn:
        restored = conn.execute(text("SELECT count(*) FROM attempt_answers")).scalar_one()
    assert restored == 2 * 2 + 2


def test_restore__selected_attempts__only_those(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    ids = seed_finished(engine, exam, [200, 200, 205])
    root = tmp_path / "archive"
    key = archived(engine, root)

    result = restore(engine, store_at(str(root)), key, attempt_ids=[ids[1]])

    assert live_ids(engine) == {ids[1]}
    assert (result.attempts, result.objects) == (1, 1)


def test_restore__attempt_not_in_manifest__usage_error(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    seed_finished(engine, exam, [200])
    root = tmp_path / "archive"
    key = archived(engine, root)
    stranger = uuid.uuid4()

    with pytest.raises(UsageError, match=f"not in manifest {key}: {stranger}"):
        restore(engine, store_at(str(root)), key, attempt_ids=[stranger])
    assert live_ids(engine) == set()


def test_restore__attempt_not_a_uuid__usage_error() -> None:
    with pytest.raises(UsageError, match="--attempt 'abc' is not an attempt id"):
        parse_attempt_ids(["abc"])


def test_restore__tampered_object__nothing_from_it_others_restored(
    store_at: StoreAt, engine: Engine, exam: Exam, tmp_path: Path
) -> None:
    ids = seed_finished(engine, exam, [200, 210])
    root = tmp_path / "archive"
    key = archived(engine, root)
    first, _ = sorted((root / "attempts").rglob("*.gz"))  # first: the older day's object
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern changed
    first.write_bytes(bytes(data))

    with pytest.raises(JobFailed, match="does not match its manifest") as failure:
        restore(engine, store_at(str(root)), key)

    assert failure.value.partial == RestoreResult(1, 3, 2, 0, 1, failed=1)
    assert live_ids(engine) == {ids[0]}  # ids[1], 210 days old, was in the tampered object


def test_restore__corrupt_manifest__usage_error(
    store_at: StoreAt, tmp_path: Path, engine: Engine
) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "x.json").write_text('{"format": "examctl-archive-manifest/1", ')

    with pytest.raises(UsageError, match="is not a valid examctl archive manifest"):
        restore(engine, store_at(str(tmp_path)), "manifests/x.json")


@pytest.mark.parametrize(
    "key", ["", "/etc/x.gz", "attempts//x.gz", "attempts/./x.gz", "attempts/../x.gz", "attempts/"]
)
def test_parse_manifest__key_not_a_plain_relative_path__usage_error(key: str) -> None:
    entry = {"key": key, "bytes": 1, "sha256": "0" * 64, "attempt_ids": [str(uuid.uuid4())]}
    raw = json.dumps({"format": FORMAT, "run_id": "r", "objects": [entry]}).encode()

    with pytest.raises(UsageError, match=re.escape(f"bad object key '{key}'")):
        parse_manifest(raw, "m.json")


def test_restore__exam_deleted_meanwhile__counted_failed(
    store_at: StoreAt, engine: Engine, tmp_path: Path
) -> None:
    exam = make_exam(engine)
    seed_finished(engine, exam, [200])
    root = tmp_path / "archive"
    key = archived(engine, root)
    with engine.begin() as conn:
        conn.execute(delete(questions).where(questions.c.exam_id == exam.id))
        conn.execute(delete(exams).where(exams.c.id == exam.id))

    with pytest.raises(JobFailed, match="1 attempt\\(s\\) not restored: their exam or questions"):
        restore(engine, store_at(str(root)), key)
    assert live_ids(engine) == set()


@pytest.mark.parametrize(
    ("manifest", "root", "key"),
    [
        (
            "s3://bkt/p/q/manifests/r.json",
            Destination("s3", bucket="bkt", prefix="p/q"),
            "manifests/r.json",
        ),
        ("s3://bkt/manifests/r.json", Destination("s3", bucket="bkt"), "manifests/r.json"),
        (
            "file:///a/b/manifests/r.json",
            Destination("file", path=Path("/a/b")),
            "manifests/r.json",
        ),
        ("/a/copied.json", Destination("file", path=Path("/a")), "copied.json"),
    ],
)
def test_restore__manifest_location__archive_root_found(
    manifest: str, root: Destination, key: str
) -> None:
    assert locate_manifest(manifest) == (root, key)
