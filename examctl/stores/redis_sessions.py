"""The platform's Redis exam sessions (SPEC §6): one HASH per attempt at `{prefix}{attempt_id}`.

Fields `answer:<question_id>` hold `{"value": <answer>, "at": "<ISO 8601>"}`; other fields are
the platform's and are ignored. A field that cannot be decoded is skipped with a log line naming
the attempt: one corrupt field must not block finishing the attempt or the batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import redis

from examctl.errors import ServiceUnavailable
from examctl.settings import redact_url

logger = logging.getLogger(__name__)

ANSWER_FIELD_PREFIX = b"answer:"


@dataclass(frozen=True)
class RedisAnswer:
    question_id: UUID
    value: Any
    at: datetime


class RedisSessions:
    """Reads and deletes attempt sessions; every Redis failure surfaces as ServiceUnavailable."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.display_url = redact_url(url)
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
        )

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
            hashes = pipe.execute()
        return {a: parse_session(a, fields) for a, fields in zip(ids, hashes, strict=True)}

    def delete(self, attempt_ids: Iterable[UUID]) -> int:
        """UNLINK the sessions of these attempts; returns how many keys existed."""
        keys = [self.key(a) for a in attempt_ids]
        if not keys:
            return 0
        with self.unreachable_is_fatal():
            return int(self.client.unlink(*keys))

    def close(self) -> None:
        self.client.close()

    @contextlib.contextmanager
    def unreachable_is_fatal(self) -> Iterator[None]:
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as error:
            raise ServiceUnavailable(
                f"Redis unreachable at {self.display_url}: {_first_line(error)}"
            ) from error


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
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    # A time without a zone is taken as UTC, the platform's convention.
    return RedisAnswer(question_id, value, at if at.tzinfo else at.replace(tzinfo=UTC))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
