"""Helpers of the archive tests: S3 through moto over HTTP, finished attempts, the archive's
invariant, and file systems that are read-only or full (real tmpfs mounts: the suite runs as
root, as CI does)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, select

from examctl.db.schema import exam_attempts
from examctl.stores.archive_store import ArchiveStore
from tests.factories import Exam, make_attempt, now_of
from tests.servers import MotoServer

StoreAt = Callable[..., ArchiveStore]  # the store_at fixture: store_at(dest, encryption=None)

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def use_s3(monkeypatch: pytest.MonkeyPatch, server: MotoServer) -> None:
    """Point boto3 at `server` the way production is configured: through the environment."""
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": server.endpoint_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


_clients: dict[str, Any] = {}


def s3_client(server: MotoServer) -> Any:
    """One client per server for the whole session (a client per call leaks sockets)."""
    if server.endpoint_url not in _clients:
        _clients[server.endpoint_url] = _new_client(server)
    return _clients[server.endpoint_url]


def _new_client(server: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )


def seed_finished(
    engine: Engine,
    exam: Exam,
    days_ago: list[float],
    *,
    status: str = "SUBMITTED",
    answers: int = 3,
    events: int = 2,
) -> list[uuid.UUID]:
    """Finished attempts, one per entry of `days_ago`, with answers and proctoring events."""
    now = now_of(engine)
    ids = []
    for age in days_ago:
        finished = now - timedelta(days=age)
        ids.append(
            make_attempt(
                engine,
                exam,
                deadline_at=finished,
                status=status,
                finished_at=finished,
                answers={i: ["B", ["A", "C"], " paris ", 3.14][i % 4] for i in range(answers)},
                events=[("tab_switch", finished - timedelta(minutes=k + 1)) for k in range(events)],
            )
        )
    return ids


def live_ids(engine: Engine) -> set[uuid.UUID]:
    with engine.connect() as conn:
        return set(conn.execute(select(exam_attempts.c.id)).scalars())


def local_files(root: Path) -> dict[str, bytes]:
    """Every file under an archive directory, by key (leftover .part files included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def bucket_files(server: MotoServer, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object under an S3 archive prefix, by key relative to the prefix."""
    client = s3_client(server)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("Contents", [])
    return {
        o["Key"][len(prefix) + 1 :]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def is_manifest(key: str) -> bool:
    folder, _, name = key.partition("/")
    return folder == "manifests" and name.endswith(".json") and not name.startswith(".")


def manifests(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(data) for key, data in sorted(files.items()) if is_manifest(key)]


def assert_live_xor_in_one_manifest(
    engine: Engine, files: dict[str, bytes], attempt_ids: list[uuid.UUID]
) -> Counter[uuid.UUID]:
    """The archive's promise: each attempt is live, or listed in exactly one manifest (never
    both, never neither); every listed object is there, whole; no other file is left."""
    listed: Counter[uuid.UUID] = Counter()
    keys = set()
    for manifest in manifests(files):
        for obj in manifest["objects"]:
            keys.add(obj["key"])
            data = files[obj["key"]]
            assert len(data) == obj["bytes"]
            assert hashlib.sha256(data).hexdigest() == obj["sha256"]
            lines = gzip.decompress(data).decode().splitlines()
            assert [json.loads(line)["attempt"]["id"] for line in lines] == obj["attempt_ids"]
            listed.update(uuid.UUID(i) for i in obj["attempt_ids"])
    live = live_ids(engine)
    for attempt_id in attempt_ids:
        assert (attempt_id in live) != (listed[attempt_id] == 1), attempt_id
        assert listed[attempt_id] <= 1, attempt_id
    leftovers = {k for k in files if not is_manifest(k)} - keys
    assert not leftovers, f"files no manifest lists: {leftovers}"
    return listed


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real, size-limited file system mounted at `path` (needs root, as CI runs)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)
