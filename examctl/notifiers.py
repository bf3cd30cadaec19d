"""Where reminders go (SPEC §8): a log line, or a signed POST to an http(s) webhook.

The webhook uses the standard library (urllib) so `remind` needs no extra dependency. It gets the
exact JSON body of SPEC §8; with a secret, `X-Examctl-Signature: sha256=<hex HMAC-SHA256 of the
body bytes>`. Every request is bounded by a timeout (per socket operation: connect, send,
each read). Redirects are not followed: a 3xx is a failed delivery like any other non-2xx.
The URL is shown only as scheme://host:port, since webhook paths often carry a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit
from uuid import UUID

from examctl.errors import UsageError, first_line

if TYPE_CHECKING:
    import urllib.request

logger = logging.getLogger(__name__)

DEFAULT_WEBHOOK_TIMEOUT_S = 5.0
_NOTIFY_HELP = "--notify must be 'log' or an http:// or https:// URL with a host"
# What http.client refuses to send (InvalidURL), so it is refused up front instead.
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class Reminder:
    attempt_id: UUID
    user_id: UUID | None
    exam_id: UUID
    minutes_before: int
    deadline_at: datetime

    def payload(self) -> dict[str, Any]:
        """SPEC §8's body; `minutes_remaining` is the threshold (clarification 4)."""
        return {
            "attempt_id": str(self.attempt_id),
            "user_id": None if self.user_id is None else str(self.user_id),
            "exam_id": str(self.exam_id),
            "minutes_remaining": self.minutes_before,
            "deadline_at": self.deadline_at.isoformat(),
        }


class DeliveryFailed(Exception):
    """A reminder was not delivered. `endpoint_down`: refused, unreachable or timed out."""

    def __init__(self, message: str, *, endpoint_down: bool) -> None:
        super().__init__(message)
        self.endpoint_down = endpoint_down


class Notifier(Protocol):
    display: str
    # How many reminders one claim takes: what a process killed mid-way can lose (at-most-once).
    claim_size: int

    def send(self, reminder: Reminder) -> None:
        """Deliver one reminder; raise DeliveryFailed when it was not delivered."""


class LogNotifier:
    """`--notify log`: the reminder is a log line (stderr), for trying it out or a log pipeline."""

    display = "log"
    claim_size = 500

    def send(self, reminder: Reminder) -> None:
        logger.info("reminder", extra={"action": "reminder", **reminder.payload()})


class WebhookNotifier:
    """`--notify https://…`: POST the reminder as JSON, signed when a secret is given."""

    # Small claims: each POST can take up to the timeout, and a crash loses what is claimed.
    claim_size = 20

    def __init__(self, url: str, *, secret: str | None, timeout_s: float) -> None:
        self.url = url
        self.display = webhook_display(url)
        self.secret = secret.encode() if secret else None
        self.timeout_s = timeout_s
        self._opener: urllib.request.OpenerDirector | None = None

    def request_parts(self, reminder: Reminder) -> tuple[bytes, dict[str, str]]:
        """The exact body bytes and the headers sent for `reminder`."""
        body = json.dumps(reminder.payload(), separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "examctl",
            # Lets a receiver drop a duplicate should one ever reach it.
            "X-Examctl-Delivery": f"{reminder.attempt_id}:{reminder.minutes_before}",
        }
        if self.secret is not None:
            digest = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            headers["X-Examctl-Signature"] = f"sha256={digest}"
        return body, headers

    def send(self, reminder: Reminder) -> None:
        import http.client
        import urllib.error
        import urllib.request

        body, headers = self.request_parts(reminder)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self.opener().open(request, timeout=self.timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as error:
            error.close()
            raise DeliveryFailed(f"HTTP {error.code}", endpoint_down=False) from None
        except urllib.error.URLError as error:
            raise DeliveryFailed(self._reason(error.reason), endpoint_down=True) from None
        except (OSError, ValueError) as error:  # TimeoutError, reset, bad status line
            raise DeliveryFailed(self._reason(error), endpoint_down=True) from None
        except http.client.HTTPException as error:  # a broken response (IncompleteRead, …)
            raise DeliveryFailed(
                f"bad response: {type(error).__name__}", endpoint_down=True
            ) from None

    def _reason(self, reason: object) -> str:
        if isinstance(reason, TimeoutError):
            return f"timed out after {self.timeout_s:g} s"
        return first_line(reason)

    def opener(self) -> urllib.request.OpenerDirector:
        if self._opener is None:
            import urllib.request

            class _NoRedirect(urllib.request.HTTPRedirectHandler):
                def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                    return None  # a 3xx surfaces as HTTPError: not delivered

            self._opener = urllib.request.build_opener(_NoRedirect)
        return self._opener


def make_notifier(notify: str, *, secret: str | None, timeout_s: float) -> Notifier:
    """The notifier for `--notify`; UsageError (exit 2) when it is neither log nor a URL."""
    if notify == "log":
        return LogNotifier()
    try:
        parts = urlsplit(notify)
        parts.port  # noqa: B018 -- urllib validates the port lazily
    except ValueError:
        raise UsageError(_NOTIFY_HELP) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(_NOTIFY_HELP)
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            "--notify: no user or password in the URL (it would be sent and shown in errors); "
            "sign with EXAMCTL_WEBHOOK_SECRET, or keep a token in the path, which is never shown"
        )
    if _UNSENDABLE.search(notify):
        raise UsageError("--notify: the URL has spaces or control characters; percent-encode them")
    return WebhookNotifier(notify, secret=secret, timeout_s=timeout_s)


def webhook_display(url: str) -> str:
    """scheme://host[:port]/… : enough to tell endpoints apart, no token from the path."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"
