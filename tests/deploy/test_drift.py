"""No drift: the job list comes from the CLI, and the crontab, the systemd units and the
Kubernetes manifests run every job with the same schedule and the same flags.

The three deploy files are compared with each other directly (no fourth file of schedules to
keep in step): crontab ↔ CronJob by expression, crontab ↔ timer by the times systemd computes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from croniter import croniter
from typer._click.exceptions import UsageError as ClickUsageError

from tests.deploy.deployfiles import (
    SERVICES,
    calendar_elapses,
    cli_commands,
    cronjobs,
    crontab_entries,
    deployments,
    k8s_command,
    read_unit,
    scheduled_commands,
    service_command,
    unit_files,
    unit_value,
)

BASE = datetime(2026, 3, 1, 0, 0, 30, tzinfo=UTC)  # a Sunday; 10 runs cover a day and an hour
RUNS = 10


def _timer_jobs() -> dict[str, tuple[str, tuple[str, ...]]]:
    """job → (OnCalendar, flags) from each timer and the service it starts."""
    services = unit_files("service")
    found = {}
    for job, timer in unit_files("timer").items():
        calendar = unit_value(read_unit(timer), "Timer", "OnCalendar")
        command_job, args = service_command(services[job])
        assert command_job == job, f"examctl-{job}.service runs `examctl {command_job}`"
        found[job] = (calendar, args)
    return found


def _deployed_jobs() -> set[str]:
    return (
        {e.job for e in crontab_entries()}
        | set(unit_files("service"))
        | set(cronjobs())
        | set(deployments())
    )


def test_drift__every_scheduled_command__in_crontab_systemd_and_kubernetes() -> None:
    cron = {e.job for e in crontab_entries()}
    timers, services = set(unit_files("timer")), set(unit_files("service"))

    for job in scheduled_commands():
        if job in SERVICES:
            assert job in services and job in deployments(), f"{job}: service + Deployment"
            assert job not in cron | timers | set(cronjobs()), f"{job} is not a scheduled run"
        else:
            assert job in cron, f"{job}: no line in crontab/examctl"
            assert job in timers and job in services, f"{job}: no systemd timer + service"
            assert job in cronjobs(), f"{job}: no CronJob in deploy/kubernetes"


def test_drift__the_three_deploy_files__deploy_the_same_jobs() -> None:
    cron = {e.job for e in crontab_entries()}

    assert set(_timer_jobs()) == cron == set(cronjobs())
    assert set(unit_files("service")) == cron | SERVICES == set(cronjobs()) | set(deployments())


def test_drift__crontab_systemd_kubernetes__same_schedule_and_flags() -> None:
    timers, kube = _timer_jobs(), cronjobs()

    for entry in crontab_entries():
        calendar, timer_args = timers[entry.job]
        kube_job = kube[entry.job]
        cron = croniter(entry.schedule, BASE)
        expected = [cron.get_next(datetime).replace(tzinfo=UTC) for _ in range(RUNS)]

        assert kube_job["spec"]["schedule"] == entry.schedule, entry.job
        assert calendar_elapses(calendar, BASE, RUNS) == expected, entry.job
        assert timer_args == entry.args == k8s_command(kube_job)[1], entry.job


def test_drift__sweep__same_flags_in_systemd_and_kubernetes() -> None:
    for job in SERVICES:
        assert service_command(unit_files("service")[job]) == k8s_command(deployments()[job])


def _deployed_params() -> list[object]:
    return sorted(_deployed_jobs())


def _flags_of(job: str) -> set[tuple[str, ...]]:
    """Every flag list the deploy files give `examctl job`."""
    found = {e.args for e in crontab_entries() if e.job == job}
    services = unit_files("service")
    if job in services:
        found.add(service_command(services[job])[1])
    for resource in [*cronjobs().values(), *deployments().values()]:
        name, args = k8s_command(resource)
        if name == job:
            found.add(args)
    return found


@pytest.mark.parametrize("job", _deployed_params())
def test_drift__every_deployed_job__an_examctl_command_accepting_its_flags(job: str) -> None:
    commands = cli_commands()

    assert job in commands, f"deploy files run `examctl {job}`, which does not exist"
    assert job in scheduled_commands(), f"`examctl {job}` is not meant to be scheduled"
    for args in _flags_of(job):
        try:
            commands[job].make_context(job, list(args))
        except ClickUsageError as error:
            pytest.fail(f"`examctl {job} {' '.join(args)}`: {error.format_message()}")
