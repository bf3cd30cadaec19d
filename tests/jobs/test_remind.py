"""remind on PostgreSQL and SQLite: thresholds, once ever, skips, webhooks and their failures."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from examctl.db.engine import make_engine
from examctl.db.schema import exam_attempts, reminders
from examctl.errors import JobFailed, UsageError
from examctl.jobs.remind import (
    RemindResult,
    parse_thresholds,
    remind,
    seconds_until_next_reminder,
)
from examctl.notifiers import LogNotifier, WebhookNotifier, make_notifier
from examctl.settings import normalize_database_url
from tests.factories import attempt_row, make_attempt, make_exam, now_of
from tests.servers import free_port
from tests.webhooks import WebhookServer

AT = (1, 5, 10)
SECRET = "whsec-t0p-s3cret-value"


def reminder_rows(engine: Engine, attempt_id: uuid.UUID) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(reminders).where(reminders.c.attempt_id == attempt_id))
        return {row.minutes_before: dict(row._mapping) for row in rows}


def states(engine: Engine, attempt_id: uuid.UUID) -> dict[int, str]:
    return {m: row["state"] for m, row in reminder_rows(engine, attempt_id).items()}


def attempt_due_in(engine: Engine, left: timedelta, **overrides: Any) -> uuid.UUID:
    return make_attempt(engine, make_exam(engine), deadline_at=now_of(engine) + left, **overrides)


def move_deadline(engine: Engine, attempt_id: uuid.UUID, left: timedelta) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(exam_attempts)
            .where(exam_attempts.c.id == attempt_id)
            .values(deadline_at=now_of(engine) + left)
        )


def webhook(server: WebhookServer, secret: str | None = None, timeout_s: float = 2) -> Any:
    return WebhookNotifier(server.url, secret=secret, timeout_s=timeout_s)


# --- thresholds and the reminder log -----------------------------------------------------------


def test_remind__seven_minutes_left__ten_minute_reminder_once(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="examctl.notifiers")
    attempt = attempt_due_in(engine, timedelta(minutes=7))

    assert remind(engine, LogNotifier(), thresholds=AT) == RemindResult(sent=1)
    assert remind(engine, LogNotifier(), thresholds=AT) == RemindResult()

    logged = [r for r in caplog.records if getattr(r, "action", "") == "reminder"]
    assert [(r.attempt_id, r.minutes_remaining) for r in logged] == [(str(attempt), 10)]
    assert states(engine, attempt) == {10: "sent"}
    assert reminder_rows(engine, attempt)[10]["sent_at"] is not None


def test_remind__several_due_at_once__smallest_sent_larger_skipped(engine: Engine) -> None:
    attempt = attempt_due_in(engine, timedelta(seconds=30))

    assert remind(engine, LogNotifier(), thresholds=AT) == RemindResult(sent=1, skipped=2)
    assert states(engine, attempt) == {1: "sent", 5: "skipped", 10: "skipped"}
    assert remind(engine, LogNotifier(), thresholds=AT) == RemindResult()


def test_remind__deadline_approaches__each_threshold_sent_once(engine: Engine) -> None:
    attempt = attempt_due_in(engine, timedelta(minutes=9))
    sent = []
    for left in (timedelta(minutes=9), timedelta(minutes=4), timedelta(seconds=50)):
        move_deadline(engine, attempt, left)
        sent.append(remind(engine, LogNotifier(), thresholds=AT))
        sent.append(remind(engine, LogNotifier(), thresholds=AT))

    assert sum(r.sent for r in sent) == 3 and sum(r.skipped for r in sent) == 0
    assert states(engine, attempt) == {1: "sent", 5: "sent", 10: "sent"}


def test_remind__finished_overdue_or_far__nothing_sent(engine: Engine) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    attempts = [
        make_attempt(engine, exam, deadline_at=now + timedelta(minutes=3), status="SUBMITTED"),
        make_attempt(engine, exam, deadline_at=now - timedelta(seconds=5)),
        make_attempt(engine, exam, deadline_at=now + timedelta(minutes=10, seconds=30)),
    ]

    assert remind(engine, LogNotifier(), thresholds=AT) == RemindResult()
    assert all(states(engine, a) == {} for a in attempts)


def test_remind__dry_run__counts_and_records_nothing(engine: Engine) -> None:
    attempts = [attempt_due_in(engine, timedelta(minutes=m)) for m in (0.5, 4, 7)]

    result = remind(engine, LogNotifier(), thresholds=AT, dry_run=True)

    assert result == RemindResult(sent=3, skipped=3)
    assert all(states(engine, a) == {} for a in attempts)


def test_remind__more_than_one_claim__every_attempt_reminded(engine: Engine) -> None:
    exam = make_exam(engine)
    now = now_of(engine)
    for n in range(45):
        make_attempt(engine, exam, deadline_at=now + timedelta(minutes=2, seconds=n))
    notifier = LogNotifier()
    notifier.claim_size = 10

    assert remind(engine, notifier, thresholds=AT) == RemindResult(sent=45, skipped=45)


# --- webhooks ----------------------------------------------------------------------------------


def test_remind__webhook__exact_body_and_valid_signature(engine: Engine) -> None:
    attempt = attempt_due_in(engine, timedelta(minutes=3))
    row = attempt_row(engine, attempt)
    with WebhookServer(secret=SECRET) as server:
        assert remind(engine, webhook(server, SECRET), thresholds=AT).sent == 1

    [received] = server.received
    assert received.json() == {
        "attempt_id": str(attempt),
        "user_id": str(row["user_id"]),
        "exam_id": str(row["exam_id"]),
        "minutes_remaining": 5,
        "deadline_at": row["deadline_at"].isoformat(),
    }
    assert received.signature_ok is True
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-Examctl-Delivery"] == f"{attempt}:5"


def test_remind__webhook_without_secret__no_signature_header(pg_engine: Engine) -> None:
    attempt_due_in(pg_engine, timedelta(minutes=3))
    with WebhookServer() as server:
        remind(pg_engine, webhook(server), thresholds=AT)

    assert "X-Examctl-Signature" not in server.received[0].headers


def test_remind__webhook_500__failed_not_sent_then_retried(engine: Engine) -> None:
    attempt = attempt_due_in(engine, timedelta(minutes=3))
    with WebhookServer(status=500) as failing:
        with pytest.raises(JobFailed, match=r"1 reminder\(s\) not delivered .*\(HTTP 500 \(1\)\)"):
            remind(engine, webhook(failing), thresholds=AT)
    assert len(failing.received) == 1  # not retried within the run
    row = reminder_rows(engine, attempt)[5]
    assert (row["state"], row["tries"], row["error"]) == ("failed", 1, "HTTP 500")

    with WebhookServer() as healthy:
        assert remind(engine, webhook(healthy), thresholds=AT) == RemindResult(sent=1)
    assert states(engine, attempt) == {5: "sent", 10: "skipped"}
    assert reminder_rows(engine, attempt)[5]["tries"] == 2


def test_remind__webhook_500__partial_counts_on_error(pg_engine: Engine) -> None:
    attempt_due_in(pg_engine, timedelta(seconds=30))
    with WebhookServer(status=503) as failing, pytest.raises(JobFailed) as raised:
        remind(pg_engine, webhook(failing), thresholds=AT)

    assert raised.value.partial == RemindResult(skipped=2, failed=1)


def test_remind__webhook_refused__rest_not_attempted_all_retried(engine: Engine) -> None:
    attempts = [attempt_due_in(engine, timedelta(minutes=m)) for m in (2, 3, 4)]
    refused = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", secret=None, timeout_s=2)

    with pytest.raises(
        JobFailed, match=r"\(not attempted: .*refused \(2\); .*refused \(1\)\)"
    ) as raised:
        remind(engine, refused, thresholds=AT)
    assert raised.value.partial == RemindResult(skipped=3, failed=3)
    errors = [reminder_rows(engine, a)[5]["error"] for a in attempts]
    assert errors[0].startswith("[Errno 111]") or "refused" in errors[0].lower()
    assert all(e.startswith("not attempted:") for e in errors[1:]), errors

    with WebhookServer() as healthy:
        assert remind(engine, webhook(healthy), thresholds=AT).sent == 3
    assert sorted(p["attempt_id"] for p in healthy.payloads()) == sorted(map(str, attempts))


def test_remind__webhook_breaks_its_response__failed_then_retried(engine: Engine) -> None:
    attempts = [attempt_due_in(engine, timedelta(minutes=m)) for m in (2, 3)]
    with WebhookServer(broken_body=True) as broken, pytest.raises(JobFailed) as raised:
        remind(engine, webhook(broken), thresholds=AT)

    assert raised.value.partial == RemindResult(skipped=2, failed=2)
    assert [states(engine, a)[5] for a in attempts] == ["failed", "failed"]
    with WebhookServer() as healthy:
        assert remind(engine, webhook(healthy), thresholds=AT).sent == 2


def test_remind__notifier_crashes__unreached_claims_retried_the_one_in_hand_never_twice(
    engine: Engine,
) -> None:
    attempts = [attempt_due_in(engine, timedelta(minutes=m)) for m in (2, 3, 4)]

    class CrashesOnSecond(LogNotifier):
        calls = 0

        def send(self, reminder: Any) -> None:
            self.calls += 1
            if self.calls == 2:
                raise RuntimeError("a bug")
            super().send(reminder)

    with pytest.raises(RuntimeError):
        remind(engine, CrashesOnSecond(), thresholds=AT)

    # The second was in hand (it may have gone out: at most once); the third was never reached.
    assert [states(engine, a)[5] for a in attempts] == ["sent", "sending", "failed"]
    assert remind(engine, LogNotifier(), thresholds=AT).sent == 1  # the next run retries that one


def test_remind__webhook_hangs__bounded_by_timeout(pg_engine: Engine) -> None:
    for m in (2, 3, 4):
        attempt_due_in(pg_engine, timedelta(minutes=m))
    with WebhookServer(hang=True) as hanging:
        started = time.monotonic()
        with pytest.raises(JobFailed) as raised:
            remind(pg_engine, webhook(hanging, timeout_s=0.5), thresholds=AT)
        elapsed = time.monotonic() - started

    assert raised.value.partial == RemindResult(skipped=3, failed=3)
    assert len(hanging.received) == 1  # the endpoint is down: the others are not tried
    assert 0.5 <= elapsed < 2.0


def test_remind__larger_failed_then_smaller_due__larger_skipped(engine: Engine) -> None:
    attempt = attempt_due_in(engine, timedelta(minutes=7))
    with WebhookServer(status=500) as failing, pytest.raises(JobFailed):
        remind(engine, webhook(failing), thresholds=AT)
    move_deadline(engine, attempt, timedelta(minutes=4))

    with WebhookServer() as healthy:
        assert remind(engine, webhook(healthy), thresholds=AT) == RemindResult(sent=1, skipped=1)
    assert states(engine, attempt) == {5: "sent", 10: "skipped"}
    assert [p["minutes_remaining"] for p in healthy.payloads()] == [5]


def test_remind__two_at_once__each_reminder_delivered_once(pg_url: str) -> None:
    url = normalize_database_url(pg_url)
    setup = make_engine(url)
    exam = make_exam(setup)
    now = now_of(setup)
    for n in range(120):
        make_attempt(setup, exam, deadline_at=now + timedelta(minutes=3, milliseconds=n * 100))
    results: list[RemindResult] = []
    with WebhookServer() as server:

        def run() -> None:
            engine = make_engine(url)
            notifier = webhook(server)
            notifier.claim_size = 7
            results.append(remind(engine, notifier, thresholds=AT))
            engine.dispose()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    setup.dispose()

    assert sum(r.sent for r in results) == 120
    deliveries = [r.headers["X-Examctl-Delivery"] for r in server.received]
    assert len(deliveries) == len(set(deliveries)) == 120


# --- parsing, notifiers, scheduling ------------------------------------------------------------


@pytest.mark.parametrize("text", ["10,5,1", " 1 , 5,10 ", "5,10,1,5"])
def test_parse_thresholds__valid__sorted_unique(text: str) -> None:
    assert parse_thresholds(text) == (1, 5, 10)


@pytest.mark.parametrize("text", ["", "10,,1", "0", "-5", "1.5", "ten", "10;5", "٣", "99999999"])
def test_parse_thresholds__invalid__usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--at must be a comma-separated list"):
        parse_thresholds(text)


@pytest.mark.parametrize(
    "notify", ["ftp://example.com/x", "https://", "example.com/hook", "http://host:99999/", "LOG"]
)
def test_make_notifier__malformed__usage_error(notify: str) -> None:
    with pytest.raises(UsageError, match="--notify must be 'log' or an http"):
        make_notifier(notify, secret=None, timeout_s=1)


@pytest.mark.parametrize(
    "notify", ["http://hookuser:Sup3rT0ken@127.0.0.1/hooks", "https://T0ken@hooks.example/x"]
)
def test_make_notifier__credentials_in_url__usage_error_without_them(notify: str) -> None:
    with pytest.raises(UsageError, match="no user or password in the URL") as raised:
        make_notifier(notify, secret=None, timeout_s=1)
    assert "T0ken" not in str(raised.value)


@pytest.mark.parametrize("notify", ["http://127.0.0.1/hooks/a b", "http://127.0.0.1/x\ty"])
def test_make_notifier__unsendable_characters__usage_error(notify: str) -> None:
    with pytest.raises(UsageError, match="spaces or control characters"):
        make_notifier(notify, secret=None, timeout_s=1)


def test_make_notifier__webhook__display_hides_path() -> None:
    notifier = make_notifier("https://hooks.example.com:8443/T0/B0/tok3n", secret=None, timeout_s=1)

    assert notifier.display == "https://hooks.example.com:8443/…"


def test_seconds_until_next_reminder__next_crossing__found(engine: Engine) -> None:
    attempt_due_in(engine, timedelta(minutes=5, seconds=20))  # crosses 5 in 20 s
    attempt_due_in(engine, timedelta(minutes=1, seconds=40))  # crosses 1 in 40 s

    wait = seconds_until_next_reminder(engine, AT, horizon_s=30)

    assert wait is not None and 18 < wait <= 20
    assert seconds_until_next_reminder(engine, AT, horizon_s=10) is None
