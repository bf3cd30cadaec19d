"""Settings: URL normalising, validation and redaction (SPEC §2)."""

from __future__ import annotations

import pytest

from examctl.errors import UsageError
from examctl.settings import Settings, normalize_database_url, redact_url


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:p@db:5432/exams",
        "postgresql://u:p@db:5432/exams",
        "postgresql+asyncpg://u:p@db:5432/exams",
        "postgresql+psycopg://u:p@db:5432/exams",
    ],
)
def test_database_url__every_platform_form__runs_on_psycopg3(url: str) -> None:
    assert normalize_database_url(url) == "postgresql+psycopg://u:p@db:5432/exams"


@pytest.mark.parametrize(("ssl", "sslmode"), [("disable", "disable"), ("true", "require")])
def test_database_url__asyncpg_ssl__becomes_libpq_sslmode(ssl: str, sslmode: str) -> None:
    url = normalize_database_url(f"postgresql+asyncpg://u:p@db/exams?ssl={ssl}")
    assert url == f"postgresql+psycopg://u:p@db/exams?sslmode={sslmode}"


def test_database_url__sqlite_path__kept() -> None:
    assert normalize_database_url("sqlite:///var/lib/examctl.db") == "sqlite:///var/lib/examctl.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:p@db/exams", "unsupported scheme 'mysql://'"),
        ("db.example.com/exams", "is not a URL"),
        ("postgresql://u:p@db:99999/exams", "port is not a number"),
        ("postgresql:///exams", "no host given"),
        ("sqlite://", "expected postgresql://"),
        ("postgresql://u:p@[::1/exams", "is malformed"),
        ("postgresql://u:p@db/exams?bogusparam=1", 'invalid URI query parameter: "bogusparam"'),
        ("postgresql://u:p@db/exams?sslmode=bogus", "sslmode must be one of"),
        ("postgresql://u:p@db/exams?port=abc", "port is not a number"),
    ],
)
def test_database_url__malformed__usage_error_without_password(url: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as raised:
        normalize_database_url(url)
    assert ":p@" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["postgresql://u:se%zzcret@db/exams", "postgresql://u@db/exams?password=se%zzcret"]
)
def test_database_url__refused_by_libpq__reason_without_the_password(url: str) -> None:
    with pytest.raises(UsageError, match="invalid percent-encoded token") as raised:
        normalize_database_url(url)
    assert "se%zzcret" not in str(raised.value)


def test_redact_url__password__replaced() -> None:
    assert redact_url("postgresql://user:hunter2@db/x") == "postgresql://user:***@db/x"
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


@pytest.mark.parametrize(
    "url", ["sqlite:////var/lib/examctl.db", "sqlite:///examctl.db", "postgresql://u@db/x?a=1"]
)
def test_redact_url__nothing_secret__unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_settings__repr__hides_urls() -> None:
    settings = Settings.resolve(
        database_url="postgresql://u:hunter2@db/x",
        redis_url="redis://:hunter3@r:6379/0",
        log_format="json",
    )
    assert "hunter" not in repr(settings)
    assert settings.secrets() == ["hunter2", "hunter3"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"redis_url": "http://cache:6379"}, "unsupported scheme 'http://'"),
        ({"redis_url": "redis://"}, "no host given"),
        ({"redis_url": "redis://c:6379/0?socket_timeout=x"}, "Invalid value for 'socket_timeout'"),
        ({"redis_prefix": "exam:*"}, "no glob characters"),
        ({"log_format": "xml"}, "--log-format must be text or json"),
    ],
)
def test_settings__bad_option__usage_error(flags: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Settings.resolve(database_url="sqlite:///x.db", **flags)


def test_settings__defaults__embedded_sqlite_and_standard_prefix() -> None:
    settings = Settings.resolve(log_format="text")
    assert settings.database_url == "sqlite:///examctl.db"
    assert settings.redis_url is None and settings.redis_prefix == "exam:attempt:"
