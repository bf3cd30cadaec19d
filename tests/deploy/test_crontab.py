"""crontab/examctl: every line parses, every SPEC §1 job runs at its cadence, in UTC, logged."""

from __future__ import annotations

import itertools
import subprocess
from datetime import UTC, datetime

from croniter import croniter

from tests.deploy.deployfiles import CRONTAB, SPEC_PERIODS, crontab_entries, crontab_environment

BASE = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)


def test_crontab__every_line__parses_as_a_cron_expression() -> None:
    entries = crontab_entries()

    assert entries
    for entry in entries:
        assert croniter.is_valid(entry.schedule), f"line {entry.line}: {entry.schedule}"


def test_crontab__every_spec_job__scheduled_once_at_its_cadence() -> None:
    entries = crontab_entries()
    jobs = [entry.job for entry in entries]

    assert sorted(jobs) == sorted(SPEC_PERIODS), "one line per SPEC §1 job (sweep is a service)"
    for entry in entries:
        times = croniter(entry.schedule, BASE).all_next(datetime)
        runs = [next(times) for _ in range(4)]
        gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(runs)}
        assert gaps == {SPEC_PERIODS[entry.job]}, f"{entry.job}: every {gaps} s"


def test_crontab__schedule__utc_with_advice_for_crons_without_cron_tz() -> None:
    assert crontab_environment()["CRON_TZ"] == "UTC"
    assert "timedatectl set-timezone UTC" in CRONTAB.read_text()


def test_crontab__every_job__runs_as_examctl_and_logs_to_syslog_under_its_name() -> None:
    for entry in crontab_entries():
        assert entry.user == "examctl"
        assert entry.tag == f"examctl-{entry.job}"


def test_crontab__file__holds_no_url_or_secret() -> None:
    env = crontab_environment()

    assert "://" not in CRONTAB.read_text(), "URLs (and their passwords) belong in the env file"
    assert set(env) == {"SHELL", "PATH", "CRON_TZ"}


def test_crontab__every_command__is_valid_shell_without_cron_percent_signs() -> None:
    lines = CRONTAB.read_text().splitlines()
    for entry in crontab_entries():
        command = lines[entry.line - 1].split(None, 6)[6]
        checked = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)

        assert checked.returncode == 0, f"line {entry.line}: {checked.stderr}"
        assert "%" not in command, "cron turns % into a newline"
