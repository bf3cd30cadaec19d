"""LocalStore: archive objects in a local directory (`file:///path` or a plain path).

Each object is written to a hidden `.name.*.part` file in its final directory, fsynced, renamed
over the final name (atomic on POSIX), and the directory is fsynced, so a crash leaves either the
whole object or none of it under its name. Files are 0600 and directories 0700: archives hold
students' results.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from examctl.errors import ServiceUnavailable, UsageError
from examctl.stores.archive_store import Destination, ObjectMissing, Sink, TranslatedFile

_PART_SUFFIX = ".part"


class LocalStore:
    def __init__(self, destination: Destination) -> None:
        assert destination.path is not None
        self.destination = destination
        self.root = destination.path

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--dest {self.root} exists and is not a directory")
        with self._translated():
            _make_dirs(self.root)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".examctl-probe-")
            os.close(fd)
            os.unlink(probe)

    def stage(self, key: str) -> tuple[Path, Sink]:
        final = self._path(key)
        with self._translated():
            _make_dirs(final.parent)
            fd, name = tempfile.mkstemp(
                dir=final.parent, prefix=f".{final.name}.", suffix=_PART_SUFFIX
            )
        return Path(name), TranslatedFile(os.fdopen(fd, "wb"), self.unwritable)

    def commit(self, key: str, staged: Path, sha256: str) -> None:
        final = self._path(key)
        with self._translated():
            fd = os.open(staged, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(staged, 0o600)
            os.replace(staged, final)
            _fsync_dir(final.parent)

    def size(self, key: str) -> int | None:
        with self._translated():
            try:
                return self._path(key).stat().st_size
            except FileNotFoundError:
                return None

    @contextlib.contextmanager
    def reader(self, key: str) -> Iterator[IO[bytes]]:
        path = self._path(key)
        with self._translated():
            try:
                file = path.open("rb")
            except FileNotFoundError:
                raise ObjectMissing(f"object {key} is missing from {self.root}") from None
            with file:
                yield file

    def remove(self, key: str) -> None:
        final = self._path(key)
        with self._translated():
            final.unlink(missing_ok=True)
            if final.parent.is_dir():
                for leftover in final.parent.glob(f".{final.name}.*{_PART_SUFFIX}"):
                    leftover.unlink(missing_ok=True)
                _fsync_dir(final.parent)

    def close(self) -> None:
        pass

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise UsageError(f"object key {key!r} is not a plain relative path")
        return self.root.joinpath(*parts)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise self.unwritable(error) from error

    def unwritable(self, error: OSError) -> ServiceUnavailable:
        reason = error.strerror or errno.errorcode.get(error.errno or 0, str(error))
        return ServiceUnavailable(f"archive directory {self.root} cannot be written: {reason}")


def _make_dirs(path: Path) -> None:
    """mkdir -p with mode 0700, fsyncing each parent so the new entries survive a crash."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
        _fsync_dir(directory.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
