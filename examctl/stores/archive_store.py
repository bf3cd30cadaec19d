"""Where archived attempts go (SPEC §7): an S3 bucket or a local directory, behind one protocol.

An object is written in three steps that every store shares: stage it (a private file, hashed
while it is written), commit it (S3 upload, or fsync + atomic rename), then verify it by reading
its size and its bytes back from the store and comparing both with what was written. Only a
verified object may let the archive job delete rows.

Stores translate their driver's failures at this boundary: a destination that cannot be reached
or written raises ServiceUnavailable (exit 3); a malformed destination raises UsageError (exit 2)
before anything happens.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import unquote, urlsplit

from examctl.errors import ExamctlError, JobFailed, UsageError

DEFAULT_DEST = "./examctl-archive"
SSE_MODES = ("AES256", "aws:kms")
READ_CHUNK = 1024 * 1024
_DEST_HELP = "expected s3://bucket/prefix, file:///path or a directory path"
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
# `s3:/b`, `s3:b`, `file:/x`, `S3//x`: a URL with its `://` mistyped, not a directory to create
_MISTYPED_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:|(?i:s3|file)//")


class ObjectMissing(JobFailed):
    """An object a manifest lists is not in the store."""


class VerificationFailed(JobFailed):
    """An object read back from the store differs from what was written."""


@dataclass(frozen=True)
class Destination:
    """A parsed `--dest`: an S3 bucket and key prefix, or a local directory."""

    scheme: str  # "s3" | "file"
    bucket: str = ""
    prefix: str = ""
    path: Path | None = None

    def __str__(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return str(self.path)


@dataclass(frozen=True)
class Encryption:
    """Server-side encryption for S3 objects: None, AES256 or aws:kms (with an optional key)."""

    mode: str | None = None
    kms_key_id: str | None = None


@dataclass(frozen=True)
class StoredObject:
    key: str
    bytes: int
    sha256: str


class Sink(Protocol):
    """Where a staged object's bytes are written."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class ArchiveStore(Protocol):
    destination: Destination

    def check(self) -> None:
        """Fail with ServiceUnavailable unless the destination can be reached and written."""

    def stage(self, key: str) -> tuple[Path, Sink]:
        """A new private file to write `key` into before it is committed."""

    def commit(self, key: str, staged: Path, sha256: str) -> None:
        """Make the staged file the object `key` (atomically, durably); consumes the file."""

    def size(self, key: str) -> int | None:
        """The stored object's size in bytes, None when it does not exist."""

    def reader(self, key: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """The stored bytes of `key`, streamed; ObjectMissing when it does not exist."""

    def remove(self, key: str) -> None:
        """Delete `key` and whatever a killed writer left of it; no error if absent."""

    def close(self) -> None:
        """Release what the store holds (temporary files, connections)."""


def parse_destination(dest: str, *, what: str = "--dest") -> Destination:
    """`s3://bucket/prefix`, `file:///path` or a plain path; UsageError for anything else."""
    text = dest.strip()
    if not text:
        raise UsageError(f"{what} is empty ({_DEST_HELP})")
    if "://" not in text:
        return _directory(text, what)
    scheme, _, rest = text.partition("://")
    if scheme.lower() == "s3":
        bucket, _, prefix = rest.partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise UsageError(f"{what} {text!r}: no valid bucket name after s3:// ({_DEST_HELP})")
        return Destination("s3", bucket=bucket, prefix="/".join(p for p in prefix.split("/") if p))
    if scheme.lower() == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise UsageError(
                f"{what} {text!r}: a file:// URL needs an absolute path ({_DEST_HELP})"
            )
        return Destination("file", path=Path(unquote(parts.path)))
    raise UsageError(f"{what} {text!r}: unsupported scheme '{scheme}://' ({_DEST_HELP})")


def _directory(text: str, what: str) -> Destination:
    """A plain path; one that starts like a URL is refused, or `s3:/b` would be `./s3:/b`."""
    if _MISTYPED_URL.match(text):
        raise UsageError(
            f"{what} {text!r} looks like a mistyped URL; write s3://bucket/prefix, or "
            "file:///path for a directory (also one whose name has a colon)"
        )
    return Destination("file", path=Path(text).expanduser().absolute())


def parse_encryption(
    destination: Destination, sse: str | None, kms_key_id: str | None
) -> Encryption:
    """Validate --sse / --sse-kms-key-id against the destination; UsageError when they clash."""
    if sse is not None and sse not in SSE_MODES:
        raise UsageError(f"--sse must be AES256 or aws:kms, not {sse!r}")
    if (sse or kms_key_id) and destination.scheme != "s3":
        raise UsageError("--sse and --sse-kms-key-id apply to s3:// destinations only")
    if kms_key_id and sse != "aws:kms":
        raise UsageError("--sse-kms-key-id needs --sse aws:kms")
    return Encryption(sse, kms_key_id)


def open_store(destination: Destination, encryption: Encryption | None = None) -> ArchiveStore:
    """The store for a parsed destination (boto3 is imported only for S3)."""
    if destination.scheme == "s3":
        from examctl.stores.s3_store import S3Store

        return S3Store(destination, encryption or Encryption())
    from examctl.stores.local_store import LocalStore

    return LocalStore(destination)


class TranslatedFile:
    """A staged file whose OSErrors (disk full, read-only, I/O error) become the store's error."""

    def __init__(self, file: IO[bytes], translate: Callable[[OSError], ExamctlError]) -> None:
        self.file = file
        self.translate = translate

    def write(self, data: bytes, /) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            raise self.translate(error) from error

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as error:
            raise self.translate(error) from error

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as error:
            raise self.translate(error) from error


class HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, target: Sink) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes, /) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def write_object(
    store: ArchiveStore, key: str, fill: Callable[[HashingWriter], None]
) -> StoredObject:
    """Stage `key`, let `fill` write its bytes, commit it; the staged file never outlives this."""
    staged, sink = store.stage(key)
    try:
        writer = HashingWriter(sink)
        try:
            fill(writer)
            writer.flush()
        finally:
            sink.close()
        digest = writer.sha256.hexdigest()
        store.commit(key, staged, digest)
    finally:
        staged.unlink(missing_ok=True)
    return StoredObject(key, writer.bytes, digest)


def verify_object(store: ArchiveStore, expected: StoredObject) -> None:
    """Read the object's size and bytes back from the store; VerificationFailed on a mismatch."""
    size = store.size(expected.key)
    if size is None:
        raise VerificationFailed(f"object {expected.key} is missing from {store.destination}")
    if size != expected.bytes:
        raise VerificationFailed(
            f"object {expected.key} has {size} bytes in the store, {expected.bytes} were written"
        )
    digest = read_digest(store, expected.key, into=None)
    if digest != expected.sha256:
        raise VerificationFailed(
            f"object {expected.key} reads back with SHA-256 {digest}, {expected.sha256} was written"
        )


def read_digest(store: ArchiveStore, key: str, *, into: IO[bytes] | None) -> str:
    """SHA-256 of the stored object, streamed (and copied into `into` when given)."""
    digest = hashlib.sha256()
    with store.reader(key) as body:
        while chunk := body.read(READ_CHUNK):
            digest.update(chunk)
            if into is not None:
                into.write(chunk)
    return digest.hexdigest()
