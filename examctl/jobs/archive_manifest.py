"""The manifest of an archive run: `DEST/manifests/<run-id>.json` (SPEC §7).

It lists every object whose rows the run deleted (key relative to DEST, bytes, SHA-256, UTC day,
counts and attempt ids), so an archive can be checked and restored from the store alone. It is
written last, streamed from the database (a run over a large backlog lists many ids), and read
back like every object before the run counts it as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Engine

from examctl.db.engine import db_now
from examctl.errors import UsageError
from examctl.jobs import archive_log
from examctl.jobs.archive_log import RunRecord
from examctl.stores.archive_store import (
    ArchiveStore,
    HashingWriter,
    StoredObject,
    verify_object,
    write_object,
)

FORMAT = "examctl-archive-manifest/1"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestObject:
    key: str
    bytes: int
    sha256: str
    attempt_ids: frozenset[UUID]


@dataclass(frozen=True)
class Manifest:
    run_id: str
    objects: list[ManifestObject]

    @property
    def attempt_ids(self) -> set[UUID]:
        return {i for obj in self.objects for i in obj.attempt_ids}


def write_manifest(
    engine: Engine, store: ArchiveStore, run: RunRecord, *, status: str
) -> StoredObject:
    """Write and verify the run's manifest; it lists the objects whose rows were deleted."""
    with engine.connect() as conn:
        written_at = db_now(conn)
    header = {
        "format": FORMAT,
        "run_id": run.id,
        "dest": str(store.destination),
        "status": status,  # complete | partial (the run failed part way) | recovered (by a rerun)
        "cutoff": run.cutoff.isoformat(),
        "started_at": run.started_at.isoformat(),
        "written_at": written_at.isoformat(),
    }

    def fill(out: HashingWriter) -> None:
        totals = {"attempts": 0, "answers": 0, "events": 0, "objects": 0, "bytes": 0}
        out.write(json.dumps(header, indent=1)[:-2].encode() + b',\n "objects": [')
        for number, entry in enumerate(archive_log.deleted_objects(engine, run.id)):
            out.write((",\n  " if number else "\n  ").encode() + json.dumps(entry).encode())
            totals["attempts"] += entry["attempt_count"]
            totals["answers"] += entry["answer_count"]
            totals["events"] += entry["event_count"]
            totals["objects"] += 1
            totals["bytes"] += entry["bytes"]
        out.write(f'\n ],\n "counts": {json.dumps(totals)}\n}}\n'.encode())

    stored = write_object(store, archive_log.manifest_key(run.id), fill)
    verify_object(store, stored)
    return stored


def parse_manifest(raw: bytes, where: str) -> Manifest:
    """A manifest's objects, checked for shape; UsageError (exit 2) when it is not one."""
    try:
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} document")
        objects = [_object(entry) for entry in document["objects"]]
        return Manifest(str(document["run_id"]), objects)
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UsageError(f"{where} is not a valid examctl archive manifest: {error}") from None


def _object(entry: Any) -> ManifestObject:
    key, size, sha256 = entry["key"], entry["bytes"], entry["sha256"]
    if not _plain_relative(key):  # refused here, before any object is restored
        raise ValueError(f"bad object key {key!r}")
    if not isinstance(size, int) or size < 0 or not _SHA256.fullmatch(str(sha256)):
        raise ValueError(f"object {key}: bad bytes or sha256")
    return ManifestObject(key, size, sha256, frozenset(UUID(i) for i in entry["attempt_ids"]))


def _plain_relative(key: object) -> bool:
    """A key every store can hold: relative, and no empty, `.` or `..` segment."""
    return isinstance(key, str) and all(p not in ("", ".", "..") for p in key.split("/"))
