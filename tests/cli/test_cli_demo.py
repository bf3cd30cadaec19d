"""`examctl demo`: a sample in an empty or demo database, and nothing at all in a real one."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import Engine, insert, text

from examctl.db.engine import make_engine
from examctl.db.schema import exams, metadata
from tests.invoke import invoke


def _schema_objects(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT type, name FROM sqlite_master ORDER BY type, name"))
        return [(row.type, row.name) for row in rows]


def _platform_database(path: Path) -> Engine:
    """The platform's own tables and one real exam, before examctl ever ran there."""
    engine = make_engine(f"sqlite:///{path}")
    platform = [t for t in metadata.sorted_tables if not t.name.startswith("examctl_")]
    metadata.create_all(engine, tables=platform)
    with engine.begin() as conn:
        conn.execute(insert(exams).values(id=uuid.uuid4(), title="Chemistry final"))
    return engine


def test_demo__real_exam_without_examctl_tables__exit_2_schema_untouched(tmp_path: Path) -> None:
    engine = _platform_database(tmp_path / "platform.db")
    before = _schema_objects(engine)

    result = invoke("demo", "--database-url", f"sqlite:///{tmp_path / 'platform.db'}")

    assert result.exit_code == 2, result.stderr
    assert result.error_line.startswith("examctl: error: this database holds 1 real exam(s)")
    after = _schema_objects(engine)
    assert not [name for _, name in after if name.startswith("examctl_")]
    assert after == before
    engine.dispose()


def test_demo__empty_database__schema_created_and_sample_written(tmp_path: Path) -> None:
    result = invoke("demo", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}")

    assert result.exit_code == 0, result.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert ("table", "examctl_job_runs") in _schema_objects(engine)
    engine.dispose()


def test_demo__database_path_with_markup_brackets__shown_literally(tmp_path: Path) -> None:
    folder = tmp_path / "[/x]"
    folder.mkdir(parents=True)

    result = invoke(
        "demo", "--database-url", f"sqlite:///{folder / 'e.db'}", env={"COLUMNS": "400"}
    )

    assert result.exit_code == 0, result.stderr
    assert "/[/x]/e.db: 4 exams" in result.stdout
