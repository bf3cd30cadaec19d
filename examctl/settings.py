"""Settings: the one place where flags and the environment become validated configuration.

Typer's ``envvar=`` gives flags precedence over the environment; this module validates what
results once, normalises database URLs onto psycopg 3, and keeps every secret out of reprs.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, unquote_plus, urlsplit, urlunsplit

from examctl.errors import UsageError, first_line
from examctl.logs import scrub

DEFAULT_DATABASE_URL = "sqlite:///examctl.db"
DEFAULT_REDIS_PREFIX = "exam:attempt:"
# Attempts finished per transaction (finish-expired, sweep), and batches in flight at once on
# PostgreSQL; here so --help needs no job module. Measured in bench/finish_expired.py.
DEFAULT_FINISH_BATCH_SIZE = 500
DEFAULT_FINISH_WORKERS = 2
LOG_FORMATS = ("text", "json")

# Every form the platform's own configuration uses runs on psycopg 3 here.
_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+asyncpg", "postgresql+psycopg")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_DATABASE_URL_HELP = "expected postgresql://user:password@host:port/dbname or sqlite:///path"


@dataclass(frozen=True)
class Settings:
    """Validated configuration. ``repr`` and ``*_display`` never show a password."""

    database_url: str = field(repr=False)
    redis_url: str | None = field(default=None, repr=False)
    redis_prefix: str = DEFAULT_REDIS_PREFIX
    log_format: str = "text"
    metrics_dir: Path | None = None
    verbose: bool = False
    # HMAC key for reminder webhooks; only ever from the environment (a flag would show in ps).
    webhook_secret: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        *,
        database_url: str | None = None,
        redis_url: str | None = None,
        redis_prefix: str | None = None,
        log_format: str | None = None,
        metrics_dir: Path | None = None,
        verbose: bool = False,
    ) -> Settings:
        """Validate what the command line (with its environment fallbacks) gave."""
        return cls(
            database_url=normalize_database_url(database_url or DEFAULT_DATABASE_URL),
            redis_url=_validate_redis_url(redis_url) if redis_url else None,
            redis_prefix=_validate_prefix(redis_prefix),
            log_format=_validate_log_format(log_format),
            metrics_dir=_validate_metrics_dir(metrics_dir),
            verbose=verbose,
            webhook_secret=os.environ.get("EXAMCTL_WEBHOOK_SECRET") or None,
        )

    @property
    def database_display(self) -> str:
        return redact_url(self.database_url)

    @property
    def redis_display(self) -> str | None:
        return redact_url(self.redis_url) if self.redis_url else None

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def secrets(self) -> list[str]:
        """Every secret this run knows of, for scrubbing logs and error messages."""
        found: list[str | None] = [*_passwords(self.database_url), *_passwords(self.redis_url)]
        return _worth_scrubbing([*found, *(os.environ.get(name) for name in _SECRET_ENV)])


def _worth_scrubbing(found: list[str | None]) -> list[str]:
    """Secrets long enough to replace in text (masking every `p` would garble each message)."""
    return [s for s in found if s and len(s) >= 3]


_SECRET_ENV = ("EXAMCTL_WEBHOOK_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def normalize_database_url(url: str) -> str:
    """Map every accepted database URL onto the driver examctl uses; UsageError otherwise."""
    parts = _split(url, "--database-url / DATABASE_URL")
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if not parts.path or parts.path == "/" or parts.netloc:
            raise UsageError(f"--database-url / DATABASE_URL: {_DATABASE_URL_HELP}")
        return url
    if scheme not in _POSTGRES_SCHEMES:
        raise UsageError(
            f"--database-url / DATABASE_URL: unsupported scheme '{scheme}://' "
            f"({_DATABASE_URL_HELP})"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise UsageError(f"--database-url / DATABASE_URL: no host given ({_DATABASE_URL_HELP})")
    _check_port(parts, "--database-url / DATABASE_URL")
    parts = parts._replace(query=_libpq_query(parts.query))
    _check_libpq_parameters(urlunsplit(parts._replace(scheme="postgresql")))
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


# asyncpg's `ssl=` (the platform's URL may be an asyncpg one) as libpq's `sslmode=`.
_ASYNCPG_SSL = {"true": "require", "false": "disable"}
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _libpq_query(query: str) -> str:
    items = []
    for item in query.split("&") if query else []:
        name, _, value = item.partition("=")
        if name == "ssl":
            item = f"sslmode={_ASYNCPG_SSL.get(value.lower(), value)}"
        items.append(item)
    return "&".join(items)


def _check_libpq_parameters(url: str) -> None:
    """What libpq would refuse only when connecting (exit 3 then), refused now with exit 2."""
    import psycopg

    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise _refused("--database-url / DATABASE_URL", error, url) from None
    if given.get("sslmode", "prefer") not in _SSLMODES:
        raise UsageError(
            f"--database-url / DATABASE_URL: sslmode must be one of {', '.join(_SSLMODES)}"
        )
    if not str(given.get("port", "5432")).replace(",", "").isdigit():
        raise UsageError("--database-url / DATABASE_URL: the port is not a number")


def redact_url(url: str) -> str:
    """The URL with its passwords replaced by ***, in the user part or as query parameters
    (libpq and redis-py take both); safe for logs, errors and history."""
    parts = urlsplit(url)
    query = "&".join(_masked(item) for item in parts.query.split("&")) if parts.query else ""
    if parts.password is None and query == parts.query:
        return url  # as given: urlunsplit would drop the empty host of sqlite:///path
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        parts = parts._replace(netloc=f"{user}:***@{hostinfo}")
    return urlunsplit(parts._replace(query=query))


# Query parameters that carry a secret in a database or Redis URL.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def _secret_parameter(item: str) -> str | None:
    """The value of a `name=value` query item that carries a secret, as written; else None."""
    name, _, value = item.partition("=")
    return value if unquote_plus(name).lower() in _SECRET_PARAMETERS else None


def _masked(item: str) -> str:
    return item if _secret_parameter(item) is None else f"{item.partition('=')[0]}=***"


def default_log_format() -> str:
    """Text for people at a terminal, JSON lines for log collectors."""
    return "text" if sys.stderr.isatty() else "json"


def _validate_redis_url(url: str) -> str:
    parts = _split(url, "--redis-url / REDIS_URL")
    if parts.scheme.lower() not in _REDIS_SCHEMES:
        raise UsageError(
            f"--redis-url / REDIS_URL: unsupported scheme '{parts.scheme}://' "
            "(expected redis://host:port/db, rediss:// or unix://)"
        )
    if parts.scheme.lower() != "unix" and not parts.hostname:
        raise UsageError("--redis-url / REDIS_URL: no host given (expected redis://host:port/db)")
    _check_port(parts, "--redis-url / REDIS_URL")
    _check_redis_parameters(url)
    return url


def _check_redis_parameters(url: str) -> None:
    """redis-py reads the URL's query (socket_timeout=…) only when a client is made: made
    here, without connecting, so a bad value is exit 2 now rather than a crash later."""
    import redis

    try:
        redis.Redis.from_url(url).close()
    except (ValueError, TypeError) as error:
        raise _refused("--redis-url / REDIS_URL", error, url) from None


def _refused(what: str, error: Exception, url: str) -> UsageError:
    """The driver's reason for refusing `url`, in one line, with the URL's secrets masked."""
    return UsageError(f"{what}: {scrub(first_line(error), _worth_scrubbing([*_passwords(url)]))}")


def _validate_prefix(prefix: str | None) -> str:
    if prefix is None:
        return DEFAULT_REDIS_PREFIX
    if not prefix or any(ch in prefix for ch in "*?[]"):
        raise UsageError("--redis-prefix must be non-empty and hold no glob characters (* ? [ ])")
    return prefix


def _validate_metrics_dir(metrics_dir: Path | None) -> Path | None:
    """A directory examctl can write (or create): checked before any work, not after it."""
    if metrics_dir is None:
        return None
    existing = next(p for p in (metrics_dir, *metrics_dir.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"--metrics-dir / EXAMCTL_METRICS_DIR: {metrics_dir} cannot be written "
            f"({existing} is not a writable directory)"
        )
    return metrics_dir


def _validate_log_format(log_format: str | None) -> str:
    if log_format is None:
        return default_log_format()
    if log_format not in LOG_FORMATS:
        raise UsageError(f"--log-format must be text or json, not '{log_format}'")
    return log_format


def _split(url: str, what: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise UsageError(f"{what} is malformed ({_DATABASE_URL_HELP})") from None
    if "://" not in url or not parts.scheme:
        raise UsageError(f"{what} is not a URL ({_DATABASE_URL_HELP})")
    return parts


def _check_port(parts: SplitResult, what: str) -> None:
    try:
        parts.port  # noqa: B018 -- urllib validates the port lazily
    except ValueError:
        raise UsageError(f"{what}: the port is not a number between 0 and 65535") from None


def _passwords(url: str | None) -> list[str]:
    """The URL's secrets, as written and decoded: its password and secret query parameters."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password is not None else []
    except ValueError:
        return []
    for item in parts.query.split("&"):
        value = _secret_parameter(item)
        if value is not None:
            found += [value, unquote_plus(value)]
    return found
