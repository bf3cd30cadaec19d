"""`examctl remind` as processes: killed mid-delivery (the guarantee), and two at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from tests.factories import make_attempt, make_exam, now_of
from tests.invoke import run_examctl
from tests.sweeping import reminder_states, spawner
from tests.webhooks import Received, WebhookServer

spawn = pytest.fixture(spawner, name="spawn")
Spawn = Callable[..., subprocess.Popen[str]]


def test_remind__killed_after_sending_before_recording__never_sent_again(
    pg_url: str, pg_engine: Engine, spawn: Spawn
) -> None:
    exam = make_exam(pg_engine)
    now = now_of(pg_engine)
    attempts = [
        make_attempt(pg_engine, exam, deadline_at=now + timedelta(minutes=3, seconds=n))
        for n in range(3)
    ]
    started = threading.Event()
    pids: list[int] = []

    def kill_sender(_: Received) -> None:
        started.wait(10)
        os.kill(pids[0], signal.SIGKILL)  # the POST arrived; its outcome is never recorded

    with WebhookServer(on_request=kill_sender) as server:
        remind = spawn("remind", "--notify", server.url, DATABASE_URL=pg_url)
        pids.append(remind.pid)
        started.set()
        remind.communicate(timeout=60)
    assert remind.returncode == -signal.SIGKILL
    assert len(server.received) == 1
    # At most once: the claim in hand stays `sending` and is never sent again, not even the two
    # reminders of that claim that were not tried yet (the documented, bounded loss).
    assert [reminder_states(pg_engine, a) for a in attempts] == [{5: "sending", 10: "skipped"}] * 3

    with WebhookServer() as healthy:
        rerun = run_examctl("remind", "--json", "--notify", healthy.url, DATABASE_URL=pg_url)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["counts"] == {"sent": 0, "skipped": 0, "failed": 0}
    assert healthy.received == []


def test_remind__two_processes_at_once__each_reminder_delivered_once(
    pg_url: str, pg_engine: Engine, spawn: Spawn
) -> None:
    exam = make_exam(pg_engine)
    now = now_of(pg_engine)
    for n in range(150):
        make_attempt(pg_engine, exam, deadline_at=now + timedelta(minutes=2, milliseconds=500 * n))

    with WebhookServer(on_request=lambda _: time.sleep(0.02)) as server:  # a run takes seconds
        racers = [
            spawn("remind", "--json", "--notify", server.url, DATABASE_URL=pg_url) for _ in range(2)
        ]
        outputs = [racer.communicate(timeout=120) for racer in racers]

    assert [r.returncode for r in racers] == [0, 0], outputs
    sent = [json.loads(stdout)["counts"]["sent"] for stdout, _ in outputs]
    assert sum(sent) == 150 and min(sent) > 0  # both took a share: they did race
    deliveries = [r.headers["X-Examctl-Delivery"] for r in server.received]
    assert len(deliveries) == len(set(deliveries)) == 150
