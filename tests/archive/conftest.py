"""Fixtures of the archive tests (helpers live in tests/archive/support.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from examctl.stores.archive_store import ArchiveStore, Encryption, open_store, parse_destination
from tests.archive.support import StoreAt, s3_client, use_s3
from tests.factories import Exam, make_exam
from tests.servers import MotoServer


@pytest.fixture
def bucket(s3_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, empty bucket on the session's moto server; boto3 configured for it."""
    use_s3(monkeypatch, s3_server)
    name = f"archive-{uuid.uuid4().hex[:12]}"
    s3_client(s3_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def exam(engine: Engine) -> Exam:
    return make_exam(engine)


@pytest.fixture
def store_at() -> Iterator[StoreAt]:
    """`store_at(dest, encryption=None)`: a store, closed when the test ends."""
    opened: list[ArchiveStore] = []

    def open_at(dest: str, encryption: Encryption | None = None) -> ArchiveStore:
        opened.append(open_store(parse_destination(dest), encryption))
        return opened[-1]

    yield open_at
    for store in opened:
        store.close()
