"""Real PostgreSQL, Redis and S3 (moto) servers for the test suite, on free loopback ports.

Each server can be stopped and started again on the same port, which the outage tests need; that,
and PostgreSQL's refusal to run as root (CI runs as root), is why these are not pytest-postgresql
and pytest-redis fixtures. A missing server binary fails the suite loudly.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

LOOPBACK = "127.0.0.1"
PG_PASSWORD = "pg-S3cret-pa55word"
REDIS_PASSWORD = "redis-S3cret-pa55word"


class ServerMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {LOOPBACK}:{port} after {timeout_s}s")


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as `postgres` (or `nobody`) when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServerMissing(
        "running as root and no unprivileged user (postgres, nobody) to run PostgreSQL"
    )


def _pg_bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise ServerMissing(
            "PostgreSQL server binaries not found (install the distribution's postgresql package)"
        )
    return Path(candidates[-1]).parent


class PostgresServer:
    """A throwaway cluster with password authentication over TCP on 127.0.0.1."""

    def __init__(self, *, durable: bool = False) -> None:
        self.bindir = _pg_bindir()
        self.user = _unprivileged_user()
        self.root = Path(tempfile.mkdtemp(prefix="examctl-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._initdb()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{PG_PASSWORD}@{LOOPBACK}:{self.port}/{database}"

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self.user:
            shutil.chown(self.root, self.user)
            shutil.chown(pwfile, self.user)
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def start(self) -> None:
        settings = [
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "max_connections=200",
            "-c",
            "log_min_messages=fatal",
        ]
        if not self.durable:
            settings += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        with open(self.root / "log", "ab") as log:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), *settings],
                user=self.user,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or (
                    self.process and self.process.poll() is not None
                ):
                    log = (self.root / "log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start:\n{log}") from None
                time.sleep(0.1)

    def stop(self, *, mode: signal.Signals = signal.SIGINT) -> None:
        """SIGINT is PostgreSQL's fast shutdown: it ends every session, as a restart does."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(mode)
            self.process.wait(timeout=60)
        self.process = None

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerMissing("redis-server not found (install the distribution's redis-server)")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="examctl-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://:{REDIS_PASSWORD}@{LOOPBACK}:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                "--requirepass",
                REDIS_PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class MotoServer:
    """moto's standalone S3 server over HTTP, driven with boto3 as in production."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.process = None
