"""Fixtures of the archive tests (helpers live in tests/archive/support.py)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine

from tests.archive.support import s3_client, use_s3
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
