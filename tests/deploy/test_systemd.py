"""systemd/: every unit passes `systemd-analyze verify` without a single warning, is hardened,
and the timers and the sweep service behave as an operator expects at 3 a.m.

`systemd-analyze verify` checks that ExecStart's binary exists, and /usr/local/bin/examctl does
not exist on a CI machine: the units are verified as copies whose ExecStart points at a stub.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy.deployfiles import (
    EXAMCTL_BIN,
    SPEC_PERIODS,
    SYSTEMD,
    read_unit,
    require_tool,
    unit_files,
    unit_value,
)

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}
EXPOSURE_THRESHOLD = 20  # systemd-analyze security's 0-100 scale: 2.0 and below is "OK"


def _analyze() -> str:
    return require_tool("systemd-analyze", "apt-get install systemd")


def _verifiable_copies(tmp_path: Path) -> list[Path]:
    """The units, ExecStart pointing at an executable stub instead of /usr/local/bin/examctl."""
    stub = tmp_path / "bin" / "examctl"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    units = tmp_path / "units"
    units.mkdir()
    copies = []
    for path in sorted([*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.timer")]):
        copy = units / path.name
        copy.write_text(path.read_text().replace(EXAMCTL_BIN, str(stub)))
        copies.append(copy)
    return copies


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_analyze(), "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_systemd__every_unit__verifies_without_warnings(tmp_path: Path) -> None:
    units = _verifiable_copies(tmp_path)

    result = _verify(units)

    assert len(units) == 2 * len(SPEC_PERIODS) + 1
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == "", "systemd-analyze verify warned"


def test_systemd__unit_with_a_typo__warned_by_verify(tmp_path: Path) -> None:
    # systemd-analyze exits 0 on warnings: the test above must (and does) fail on any output.
    units = _verifiable_copies(tmp_path)
    units[0].write_text(units[0].read_text() + "NoNewPrivilege=yes\n")

    result = _verify(units)

    assert "Unknown key 'NoNewPrivilege'" in result.stdout + result.stderr


@pytest.mark.parametrize("service", sorted(SYSTEMD.glob("*.service")), ids=lambda p: p.name)
def test_systemd__service__dedicated_user_env_file_and_hardening(service: Path) -> None:
    unit = read_unit(service)

    assert unit_value(unit, "Service", "User") == "examctl"
    assert unit_value(unit, "Service", "EnvironmentFile") == "/etc/examctl/env"
    for key, value in HARDENING.items():
        assert unit_value(unit, "Service", key) == value, key
    assert "Environment" not in unit["Service"], "configuration belongs in the env file"
    assert "://" not in service.read_text(), "no URL (or password) in a unit"


@pytest.mark.parametrize("service", sorted(SYSTEMD.glob("*.service")), ids=lambda p: p.name)
def test_systemd__service__exposure_level_ok(service: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}", service],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_systemd__job_services__oneshot_with_a_start_timeout() -> None:
    services = unit_files("service")
    for job in SPEC_PERIODS:
        unit = read_unit(services[job])

        assert unit_value(unit, "Service", "Type") == "oneshot"
        assert unit_value(unit, "Service", "TimeoutStartSec"), "a hung run must not block the next"
        assert unit_value(unit, "Service", "SyslogIdentifier") == f"examctl-{job}"


def test_systemd__timers__persistent_utc_and_randomised_only_when_not_every_minute() -> None:
    timers = unit_files("timer")

    assert sorted(timers) == sorted(SPEC_PERIODS)
    for job, path in timers.items():
        timer = read_unit(path)["Timer"]

        assert timer["Persistent"] == ["true"]
        assert timer["OnCalendar"][0].endswith(" UTC")
        if SPEC_PERIODS[job] == 60:
            assert "RandomizedDelaySec" not in timer
            assert timer["AccuracySec"] == ["1s"], "the default 1 min lets runs slip a minute"
        else:
            assert timer["RandomizedDelaySec"]
        assert read_unit(path)["Install"]["WantedBy"] == ["timers.target"]


def test_systemd__sweep__restarts_except_on_bad_configuration_and_stops_gracefully() -> None:
    unit = read_unit(SYSTEMD / "examctl-sweep.service")
    service = unit["Service"]
    argv = shlex.split(unit_value(unit, "Service", "ExecStart"))
    health = argv[argv.index("--health-file") + 1]

    assert service["Restart"] == ["always"]
    assert service["RestartPreventExitStatus"] == ["2"]
    assert service["KillSignal"] == ["SIGTERM"]
    assert int(service["TimeoutStopSec"][0].removesuffix("s")) >= 60
    assert health == f"/run/{unit_value(unit, 'Service', 'RuntimeDirectory')}/sweep.health"
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]


def test_systemd__sysusers__creates_the_examctl_user(tmp_path: Path) -> None:
    tool = require_tool("systemd-sysusers", "apt-get install systemd")
    lines = [
        line
        for line in (SYSTEMD / "examctl.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    result = subprocess.run(
        [tool, "--dry-run", f"--root={tmp_path}", "--inline", *lines],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Creating user 'examctl'" in result.stderr + result.stdout
