"""The platform's Redis exam sessions (SPEC §6): one HASH per attempt at `{prefix}{attempt_id}`.

Fields `answer:<question_id>` hold `{"value": <answer>, "at": "<ISO 8601>"}`; other fields are
the platform's and are ignored. A field that cannot be decoded is skipped with a log line naming
the attempt: one corrupt field must not block finishing the attempt or the batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import redis

from examctl.errors import ServiceUnavailable, first_line
from examctl.settings import redact_url

logger = logging.getLogger(__name__)

ANSWER_FIELD_PREFIX = b"answer:"
# Keys per SCAN call: each call costs Redis a millisecond or so, never a long stall.
SCAN_COUNT = 1000
UNLINK_CHUNK = 1000
# Deeper than any real answer (a list of choices is 1), far below Python's recursion limit.
MAX_ANSWER_DEPTH = 32
# KEYS: candidate keys; ARGV: minimum idle seconds, "1" to unlink or "0" to count only.
# Returns {unlinked, untracked}: untracked keys are those whose idle time Redis does not keep
# (OBJECT IDLETIME is an error under an LFU maxmemory-policy); they stay.
_UNLINK_IF_IDLE = """
local n, untracked = 0, 0
for _, key in ipairs(KEYS) do
  local idle = redis.pcall('OBJECT', 'IDLETIME', key)
  if type(idle) == 'number' then
    if idle >= tonumber(ARGV[1]) then
      if ARGV[2] == '1' then redis.call('UNLINK', key) end
      n = n + 1
    end
  elseif type(idle) == 'table' and idle.err then
    untracked = untracked + 1
  end
end
return {n, untracked}
"""
_CANONICAL_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class RedisAnswer:
    question_id: UUID
    value: Any
    at: datetime


class RedisSessions:
    """Reads and deletes attempt sessions; every Redis failure surfaces as ServiceUnavailable."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self._prefix_length = len(prefix.encode())
        self.display_url = redact_url(url)
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )
        self._unlink_if_idle = self.client.register_script(_UNLINK_IF_IDLE)

    def key(self, attempt_id: UUID) -> str:
        return f"{self.prefix}{attempt_id}"

    def ping(self) -> None:
        with self.unreachable_is_fatal():
            self.client.ping()

    def answers(self, attempt_ids: Iterable[UUID]) -> dict[UUID, list[RedisAnswer]]:
        """Every decodable answer of each attempt's session, read in one pipeline."""
        ids = list(attempt_ids)
        with self.unreachable_is_fatal():
            pipe = self.client.pipeline(transaction=False)
            for attempt_id in ids:
                pipe.hgetall(self.key(attempt_id))
            replies = pipe.execute(raise_on_error=False)
            return {a: parse_session(a, _hash(a, r)) for a, r in zip(ids, replies, strict=True)}

    def delete(self, attempt_ids: Iterable[UUID]) -> int:
        """UNLINK the sessions of these attempts; returns how many keys existed."""
        keys = [self.key(a) for a in attempt_ids]
        if not keys:
            return 0
        with self.unreachable_is_fatal():
            return int(self.client.unlink(*keys))

    def count_existing(self, attempt_ids: Iterable[UUID]) -> int:
        """How many of these attempts have a session (what delete() would remove)."""
        keys = [self.key(a) for a in attempt_ids]
        if not keys:
            return 0
        with self.unreachable_is_fatal():
            return int(self.client.exists(*keys))

    def scan_batches(self, count: int = SCAN_COUNT) -> Iterator[list[bytes]]:
        """SCAN `{prefix}*`, one list of keys per reply. A key may come twice (SCAN's contract).

        The next SCAN call is already on its way while the caller works on a reply."""
        pattern = _glob_escape(self.prefix) + "*"
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan") as prefetch:
            reply = prefetch.submit(self._scan, 0, pattern, count)
            while True:
                cursor, keys = reply.result()
                if cursor != 0:
                    reply = prefetch.submit(self._scan, cursor, pattern, count)
                if keys:
                    yield keys
                if cursor == 0:
                    return

    def _scan(self, cursor: int, pattern: str, count: int) -> tuple[int, list[bytes]]:
        with self.unreachable_is_fatal():
            return self.client.scan(cursor, match=pattern, count=count)

    def attempt_id_of(self, key: bytes) -> str | None:
        """The attempt id (canonical UUID text) a session key names, None if it names none."""
        suffix = key[self._prefix_length :]
        if len(suffix) == 36 and _CANONICAL_UUID.fullmatch(suffix):
            return suffix.decode("ascii")
        try:
            return str(UUID(suffix.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            return None

    def prefix_fitting(self, key: bytes) -> str | None:
        """For a key whose suffix is not a UUID but ends in one (`exam:attempt` given for
        `exam:attempt:`), the prefix that would make it a session key; None otherwise."""
        suffix = key[self._prefix_length :]
        if len(suffix) > 36 and _CANONICAL_UUID.fullmatch(suffix[-36:]):
            return key[: len(key) - 36].decode("utf-8", "replace")
        return None

    def unlink_stale(
        self,
        keys: Sequence[bytes],
        if_idle: Sequence[bytes],
        min_idle_seconds: int,
        *,
        dry_run: bool = False,
    ) -> tuple[int, int]:
        """UNLINK `keys`, and those of `if_idle` idle for at least `min_idle_seconds`, in one
        round trip; returns how many of `if_idle` were (or, with dry_run, would be) unlinked,
        and how many of them stayed because Redis keeps no idle time (an LFU maxmemory-policy).

        The idle check and the UNLINK run in one script, so a key that is written meanwhile
        cannot be deleted on a stale reading."""
        with self.unreachable_is_fatal():
            pipe = self.client.pipeline(transaction=False)
            for start in range(0, len(keys) if not dry_run else 0, UNLINK_CHUNK):
                pipe.unlink(*keys[start : start + UNLINK_CHUNK])
            if if_idle:
                flag = "0" if dry_run else "1"
                self._unlink_if_idle(if_idle, [min_idle_seconds, flag], client=pipe)
            replies = pipe.execute()
        if not if_idle:
            return 0, 0
        unlinked, untracked = replies[-1]
        return int(unlinked), int(untracked)

    def count_keys(self) -> int:
        """How many session keys exist (a full SCAN; a key seen twice counts once)."""
        seen: set[bytes] = set()
        for keys in self.scan_batches():
            seen.update(keys)
        return len(seen)

    def close(self) -> None:
        self.client.close()

    @contextlib.contextmanager
    def unreachable_is_fatal(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise ServiceUnavailable(
                f"Redis unreachable at {self.display_url}: {first_line(error)}"
            ) from error


def _hash(attempt_id: UUID, reply: object) -> dict[bytes, bytes]:
    """HGETALL's reply; a key that is not a hash (WRONGTYPE) holds no answers, said once."""
    if isinstance(reply, redis.ResponseError):
        logger.warning(
            "Redis session is not a hash; no answers recovered from it",
            extra={"action": "redis_session_unreadable", "attempt_id": str(attempt_id)},
        )
        return {}
    if isinstance(reply, Exception):
        raise reply
    return reply  # type: ignore[return-value]


def parse_session(attempt_id: UUID, fields: dict[bytes, bytes]) -> list[RedisAnswer]:
    """The decodable answers of one session hash; corrupt fields are logged and skipped."""
    answers = []
    for name, raw in fields.items():
        if not name.startswith(ANSWER_FIELD_PREFIX):
            continue
        answer = _parse_answer(name, raw)
        if answer is None:
            logger.warning(
                "corrupt Redis answer skipped",
                extra={
                    "action": "redis_answer_skipped",
                    "attempt_id": str(attempt_id),
                    "field": name.decode("utf-8", "replace"),
                },
            )
        else:
            answers.append(answer)
    return answers


def _parse_answer(name: bytes, raw: bytes) -> RedisAnswer | None:
    try:
        question_id = UUID(name[len(ANSWER_FIELD_PREFIX) :].decode("ascii"))
        document = json.loads(raw)
        at = datetime.fromisoformat(document["at"])
        value = document["value"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return None
    if not _storable(value):
        return None
    # A time without a zone is taken as UTC, the platform's convention.
    return RedisAnswer(question_id, value, at if at.tzinfo else at.replace(tzinfo=UTC))


def _storable(value: Any) -> bool:
    """Whether an answer can be stored as JSON by either database: Python's json reads NaN,
    Infinity (also as 1e999) and NUL characters, which PostgreSQL's jsonb refuses, and nesting
    too deep to write back; one such answer would fail its whole batch, run after run."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_ANSWER_DEPTH:
            return False
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, str) and "\x00" in item:
            return False
        if isinstance(item, dict):
            pending.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            pending.extend((part, depth + 1) for part in item)
    return True


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)
