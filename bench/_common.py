"""Shared pieces of the benchmarks in bench/: servers, a measured subprocess, a transaction
watcher and a plain-text table.

Benchmarks are scripts, not tests: they start their own durable PostgreSQL (fsync and
synchronous_commit on, as in production) and Redis from tests/servers.py, build their data, run
each contender, and print one table with the ratios against the baseline of the same run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # so `python bench/x.py` imports this checkout's code
    sys.path.insert(0, str(REPO_ROOT))

from tests.servers import PostgresServer, RedisServer  # noqa: E402

OUT_DIR = REPO_ROOT / "bench" / "out"

# The sizing of a production server rather than initdb's defaults (128 MB of shared buffers, a
# checkpoint forced after every 1 GB of WAL), for benchmarks whose data or WAL outgrow those:
# with the defaults, a run's own checkpoints (and the page cache this VM reclaims) decide its
# time more than the contender does. Every contender of a run gets the same server.
PRODUCTION_SETTINGS = {
    "shared_buffers": "1GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
}


def _sizing() -> str:
    return ", ".join(f"{name}={value}" for name, value in PRODUCTION_SETTINGS.items())


def configure(server: PostgresServer, settings: dict[str, str]) -> None:
    """ALTER SYSTEM each setting and restart `server` so they all apply."""
    for name, value in settings.items():
        server.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    server.stop()
    server.start()


# --- servers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def durable_postgres(*, keep: bool = False) -> Iterator[PostgresServer]:
    """A PostgreSQL cluster with production durability; stopped (and removed unless keep)."""
    server = PostgresServer(durable=True)
    try:
        server.start()
        configure(server, PRODUCTION_SETTINGS)
        log(
            f"PostgreSQL (durable: fsync=on, synchronous_commit=on; {_sizing()}) "
            f"on port {server.port}"
        )
        yield server
    finally:
        server.stop()
        if keep:
            log(f"kept the cluster in {server.data}; start it again with:")
            user = f"sudo -u {server.user} " if server.user else ""
            log(f"  {user}{server.bindir / 'postgres'} -D {server.data} -p {server.port}")
        else:
            server.destroy()


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def clone_database(server: PostgresServer, template: str, name: str) -> str:
    """A byte-identical copy of `template` (so every contender starts from the same data), its
    tables and indexes read into shared buffers: on the platform the attempts being finished
    were written minutes ago and are in memory; a fresh file copy would start every contender
    from cold files instead (and a VM's page cache decides how cold)."""
    server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    server.execute(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
    server.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm", name)
    server.execute(
        "SELECT pg_prewarm(c.oid) FROM pg_class c "
        "WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'i')",
        name,
    )
    # Start each contender from a clean slate: no dirty pages of the copy left to write back.
    server.execute("CHECKPOINT")
    return server.url(name)


# --- a measured subprocess -----------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    returncode: int
    seconds: float
    peak_rss_bytes: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_measured(
    argv: Sequence[str], env: dict[str, str], *, cwd: Path = REPO_ROOT, timeout_s: float = 3600
) -> Measured:
    """Run argv in `cwd` to completion; wall time from spawn to exit and the child's own peak RSS.

    `python -m pkg` puts the working directory first on sys.path, before PYTHONPATH: run it in
    the directory whose `pkg` is meant, or it silently imports the one found there instead.

    os.wait4 returns the rusage of that one child, so the figure is not mixed up with other
    children (initdb, earlier contenders) as RUSAGE_CHILDREN would be. Output goes to temporary
    files, never pipes, so a chatty child cannot block on a full pipe while we wait.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        try:
            _pid, status, usage = _wait4(process.pid, timeout_s)
        except BaseException:
            process.kill()
            os.waitpid(process.pid, 0)
            raise
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped: keep Popen quiet
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=process.returncode,
            seconds=seconds,
            peak_rss_bytes=usage.ru_maxrss * 1024,  # KiB on Linux
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def _wait4(pid: int, timeout_s: float) -> tuple[int, int, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        reaped, status, usage = os.wait4(pid, os.WNOHANG)
        if reaped:
            return reaped, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"pid {pid} still running after {timeout_s}s")
        time.sleep(0.02)


def python_env(root: Path = REPO_ROOT, **overrides: str) -> dict[str, str]:
    """Environment of a Python child that runs the code under `root` (default: this checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    env.update(overrides)
    return env


# --- longest transaction, seen from the server ---------------------------------------------------


@dataclass
class TransactionWatcher:
    """Polls pg_stat_activity for the sessions of one application_name and records, for each
    transaction (pid, xact_start), the longest age seen. Ages are measured with the server's
    clock_timestamp(), so they include time the client spends between statements while it holds
    its locks ("idle in transaction"). A poll can miss at most one interval of a transaction's
    end: the true longest transaction is between `longest_s` and `longest_s + interval_s` plus
    one poll's latency.
    """

    url: str
    application_name: str
    interval_s: float = 0.02
    seen: dict[tuple[int, Any], float] = field(default_factory=dict)
    polls: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> TransactionWatcher:
        import psycopg

        self._conn = psycopg.connect(self.url, autocommit=True, application_name="bench-watcher")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._conn.close()

    def _run(self) -> None:
        query = (
            "SELECT pid, xact_start, extract(epoch FROM clock_timestamp() - xact_start)::float8 "
            "FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL"
        )
        while not self._stop.is_set():
            for pid, xact_start, age in self._conn.execute(query, (self.application_name,)):
                key = (pid, xact_start)
                self.seen[key] = max(age, self.seen.get(key, 0.0))
            self.polls += 1
            self._stop.wait(self.interval_s)

    @property
    def longest_s(self) -> float:
        return max(self.seen.values(), default=0.0)

    @property
    def transactions(self) -> int:
        return len(self.seen)


# --- output --------------------------------------------------------------------------------------


def log(message: str) -> None:
    """Progress for the person running the benchmark, on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"{what}: {time.perf_counter() - started:.1f} s")


def mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MiB"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table (pastes as is into a report), numbers right-aligned."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i and _numeric(c) else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|")
    for row in cells[1:]:
        print(line(row))


def _numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[0] in "≤≥~-")
