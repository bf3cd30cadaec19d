"""`examctl history`: the stored runs, shown as they were recorded."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from examctl.errors import JobFailed
from examctl.runner import JobContext, run_job
from tests.invoke import invoke

# A path and SQLAlchemy's `[parameters: …]` suffix both look like Rich markup: the first
# crashed the table (MarkupError), the second vanished from it.
BRACKETED_ERRORS = [
    "restore '/tmp/[/x]/manifests/a.json' failed [parameters: {'id_1': 7}]",
    "(psycopg.errors.QueryCanceled) canceling statement [parameters: {'id_1': 7}]",
]


def _fail_with(message: str) -> None:
    raise JobFailed(message)


@pytest.mark.parametrize("error", BRACKETED_ERRORS, ids=["closing-tag", "parameters"])
def test_history__error_with_markup_brackets__printed_literally(
    db_url: str, engine: Engine, error: str
) -> None:
    run_job(JobContext(engine), "restore", lambda: _fail_with(error))

    result = invoke("history", "--database-url", db_url, env={"COLUMNS": "400"})

    assert result.exit_code == 0, result.stderr
    assert error in result.stdout


def test_history__unknown_job__exit_2_naming_the_jobs(sqlite_url: str) -> None:
    result = invoke("history", "--job", "purge_proctoring", "--database-url", sqlite_url)

    assert result.exit_code == 2
    assert result.error_line == (
        "examctl: error: --job: no job is named 'purge_proctoring'; the jobs are finish-expired, "
        "sweep, remind, clean-redis, purge-proctoring, archive, restore"
    )
    assert result.stdout == ""


def test_history__restore_job__accepted(sqlite_url: str) -> None:
    result = invoke("history", "--job", "restore", "--json", "--database-url", sqlite_url)

    assert result.exit_code == 0, result.stderr
    assert result.json() == []
