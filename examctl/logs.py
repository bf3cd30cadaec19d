"""Logging to stderr: Rich text for people at a terminal, JSON lines for log collectors.

Every record passes through a filter that masks the run's secrets, so a password that leaks into
a driver's message still never reaches a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the record's `extra` fields at the top level."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ExtraTextFormatter(logging.Formatter):
    """Plain text with `key=value` for the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD_ATTRS)
        return f"{line} {extra}" if extra else line


class SecretsFilter(logging.Filter):
    """Replace every known secret in the rendered message and extra fields with ***."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = scrub(record.getMessage(), self.secrets)
            record.args = None
            for key, value in list(vars(record).items()):
                if key not in _STANDARD_ATTRS and isinstance(value, str):
                    setattr(record, key, scrub(value, self.secrets))
        return True


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def setup_logging(
    log_format: str, *, verbose: bool = False, secrets: list[str] | None = None
) -> None:
    """Send examctl's logs to stderr in the chosen format; idempotent."""
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=verbose)
        handler.setFormatter(ExtraTextFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ExtraTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretsFilter(secrets or []))
    root = logging.getLogger("examctl")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
