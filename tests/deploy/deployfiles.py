"""Read the deployment files (crontab, systemd units, Kubernetes manifests) and the CLI's commands.

The deploy tests compare these with each other and with the command line, so each parser is
strict: a line that does not have the expected shape fails the test instead of being skipped.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer._click.core import Command
from typer.core import TyperGroup

from examctl.cli import app

REPO = Path(__file__).resolve().parents[2]
CRONTAB = REPO / "crontab" / "examctl"
SYSTEMD = REPO / "systemd"
KUBERNETES = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
EXAMCTL_BIN = "/usr/local/bin/examctl"

# Commands an operator runs by hand; every other command is a scheduled job.
NOT_SCHEDULED = frozenset({"status", "history", "db", "demo", "restore"})
# Long-running: a systemd service and a Kubernetes Deployment, never cron or a timer.
SERVICES = frozenset({"sweep"})
# SPEC §1: every scheduled job and how often it runs, in seconds.
SPEC_PERIODS = {
    "finish-expired": 60,
    "remind": 60,
    "clean-redis": 3600,
    "purge-proctoring": 86400,
    "archive": 86400,
}


# --- the command line -------------------------------------------------------------------------


def cli_commands() -> dict[str, Command]:
    """The top-level commands of the Typer app, by name."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return dict(group.commands)


def all_command_paths() -> list[tuple[tuple[str, ...], Command]]:
    """Every runnable command with its path, sub-commands included: (("db", "init"), cmd)."""
    found: list[tuple[tuple[str, ...], Command]] = []

    def walk(prefix: tuple[str, ...], command: Command) -> None:
        if isinstance(command, TyperGroup):
            for name, sub in sorted(command.commands.items()):
                walk((*prefix, name), sub)
        else:
            found.append((prefix, command))

    walk((), typer.main.get_command(app))
    return found


def scheduled_commands() -> set[str]:
    return set(cli_commands()) - NOT_SCHEDULED


# --- crontab ----------------------------------------------------------------------------------

_CRON_LINE = re.compile(r"^(?P<when>(?:\S+\s+){5})(?P<user>\S+)\s+(?P<command>.+)$")
_CRON_COMMAND = re.compile(
    r"^set -a; \. /etc/examctl/env; examctl (?P<argv>[^|;&<>]+?) 2>&1 \| logger -t (?P<tag>\S+)$"
)
_CRON_ENV = re.compile(r"^[A-Z_]+=")


@dataclass(frozen=True)
class CronEntry:
    schedule: str
    user: str
    job: str
    args: tuple[str, ...]
    tag: str
    line: int


def crontab_environment() -> dict[str, str]:
    env = {}
    for raw in CRONTAB.read_text().splitlines():
        if _CRON_ENV.match(raw):
            name, _, value = raw.partition("=")
            env[name] = value
    return env


def crontab_entries() -> list[CronEntry]:
    """Every job line; a line that is neither comment, environment nor job fails the test."""
    entries = []
    for number, raw in enumerate(CRONTAB.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or _CRON_ENV.match(line):
            continue
        match = _CRON_LINE.match(line)
        assert match, f"crontab/examctl:{number}: not a cron.d line: {line}"
        command = _CRON_COMMAND.match(match["command"])
        assert command, (
            f"crontab/examctl:{number}: expected `set -a; . /etc/examctl/env; examctl JOB … "
            f"2>&1 | logger -t examctl-JOB`, got: {match['command']}"
        )
        job, *args = shlex.split(command["argv"])
        entries.append(
            CronEntry(
                schedule=" ".join(match["when"].split()),
                user=match["user"],
                job=job,
                args=tuple(args),
                tag=command["tag"],
                line=number,
            )
        )
    return entries


# --- systemd ----------------------------------------------------------------------------------

Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """Sections → key → every value given (keys such as SystemCallFilter= repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and section is not None, f"{path.name}:{number}: not key=value: {line}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def unit_value(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values and len(values) == 1, f"[{section}] {key}= must be given once, got {values}"
    return values[0]


def unit_files(suffix: str) -> dict[str, Path]:
    """examctl-<job>.<suffix> files by job name."""
    found = {}
    for path in sorted(SYSTEMD.glob(f"*.{suffix}")):
        assert path.name.startswith("examctl-"), f"systemd/{path.name}: expected examctl-<job>"
        found[path.name.removeprefix("examctl-").removesuffix(f".{suffix}")] = path
    return found


def service_command(path: Path) -> tuple[str, tuple[str, ...]]:
    """(job, flags) of a service's ExecStart=/usr/local/bin/examctl JOB FLAGS…"""
    binary, job, *args = shlex.split(unit_value(read_unit(path), "Service", "ExecStart"))
    assert binary == EXAMCTL_BIN, f"{path.name}: ExecStart must run {EXAMCTL_BIN}, not {binary}"
    return job, tuple(args)


def require_tool(name: str, install: str) -> str:
    """The tool's path; a missing tool fails the test loudly (it is never skipped)."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: {install} (.ci/run installs it)")
    return found


_ELAPSE = re.compile(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def calendar_elapses(expression: str, base: datetime, count: int) -> list[datetime]:
    """The next `count` times a systemd OnCalendar= expression elapses after `base` (UTC)."""
    tool = require_tool("systemd-analyze", "apt-get install systemd")
    result = subprocess.run(
        [
            tool,
            "calendar",
            f"--iterations={count}",
            f"--base-time={base:%Y-%m-%d %H:%M:%S} UTC",
            expression,
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"TZ": "UTC", "PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0"},
    )
    assert result.returncode == 0, f"OnCalendar={expression}: {result.stderr}"
    found = [datetime.fromisoformat(f"{m}+00:00") for m in _ELAPSE.findall(result.stdout)]
    assert len(found) == count, result.stdout
    return found


# --- Kubernetes -------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest (kustomization.yaml is kustomize's, not the API server's)."""
    return sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in manifest_files()
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    if resource["kind"] == "CronJob":
        return dict(resource["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(resource["spec"]["template"]["spec"])


def container(resource: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(resource)["containers"]
    assert len(containers) == 1, resource["metadata"]["name"]
    return dict(containers[0])


def k8s_command(resource: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """(job, flags) of the examctl container: the image's entry point is examctl."""
    spec = container(resource)
    assert "command" not in spec, "keep the image's ENTRYPOINT [examctl]; pass args only"
    job, *args = (str(a) for a in spec["args"])
    return job, tuple(args)


def cronjobs() -> dict[str, dict[str, Any]]:
    return {k8s_command(doc)[0]: doc for doc in of_kind("CronJob")}


def deployments() -> dict[str, dict[str, Any]]:
    return {k8s_command(doc)[0]: doc for doc in of_kind("Deployment")}
