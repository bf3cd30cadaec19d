"""Fixtures: real servers for the session, a clean database / Redis / bucket for each test.

PostgreSQL follows procrastinate: the schema is applied once to a template database, and each
test gets `CREATE DATABASE … TEMPLATE` (a file copy, a few milliseconds).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import Engine

from examctl.db.engine import make_engine
from examctl.db.migrate import init_schema
from examctl.settings import normalize_database_url
from tests.servers import MotoServer, PostgresServer, RedisServer

TEMPLATE = "examctl_template"
_ENV_VARS = (
    "DATABASE_URL",
    "REDIS_URL",
    "EXAMCTL_REDIS_PREFIX",
    "EXAMCTL_LOG_FORMAT",
    "EXAMCTL_METRICS_DIR",
    "EXAMCTL_WEBHOOK_SECRET",
    "EXAMCTL_NOTIFY",
    "EXAMCTL_ARCHIVE_DEST",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
)
_db_numbers = itertools.count()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No test sees the developer's configuration; each runs in its own directory, and the
    logging a CLI test set up does not hide later tests' records from caplog."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    examctl_logger = logging.getLogger("examctl")
    examctl_logger.handlers.clear()
    examctl_logger.propagate = True
    examctl_logger.setLevel(logging.NOTSET)


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    server.execute(f"CREATE DATABASE {TEMPLATE}")
    engine = make_engine(normalize_database_url(server.url(TEMPLATE)))
    init_schema(engine)
    engine.dispose()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


# --- per test ---------------------------------------------------------------------------------


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database with the schema, as the platform would give it."""
    name = f"examctl_test_{os.getpid()}_{next(_db_numbers)}"
    postgres_server.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    yield postgres_server.url(name)
    if postgres_server.process is not None:
        postgres_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'examctl.db'}"
    engine = make_engine(url)
    init_schema(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["postgresql", "sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Both databases, for behaviour that must hold on each."""
    fixture = "pg_url" if request.param == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(normalize_database_url(db_url))
    yield eng
    eng.dispose()


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    eng = make_engine(normalize_database_url(pg_url))
    yield eng
    eng.dispose()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    url = redis_server.url()
    client = redis_lib.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()
