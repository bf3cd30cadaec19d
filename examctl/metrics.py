"""Prometheus textfile metrics (SPEC §9), for node_exporter's textfile collector.

One file per job, `examctl_<job>.prom`, replaced atomically by prometheus_client, so an alert can
fire on `time() - examctl_last_success_timestamp_seconds > 26 * 3600`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from examctl.runner import JobReport


def metrics_path(metrics_dir: Path, job: str) -> Path:
    return metrics_dir / f"examctl_{job.replace('-', '_')}.prom"


def previous_last_success(metrics_dir: Path, job: str) -> datetime | None:
    """The last success the job's file holds, for a run that cannot ask the database."""
    try:
        families = list(text_string_to_metric_families(metrics_path(metrics_dir, job).read_text()))
    except (OSError, ValueError):  # no file yet, or not one of ours
        return None
    for family in families:
        for sample in family.samples:
            if sample.name == "examctl_last_success_timestamp_seconds" and sample.value > 0:
                return datetime.fromtimestamp(sample.value, UTC)
    return None


def write_job_metrics(
    metrics_dir: Path, report: JobReport, finished_at: datetime, last_success: datetime | None
) -> Path:
    """Write the job's metrics file and return its path."""
    registry = CollectorRegistry()
    labels = {"job": report.job}

    def gauge(name: str, doc: str, value: float, **extra: str) -> None:
        g = Gauge(name, doc, [*labels, *extra], registry=registry)
        g.labels(**labels, **extra).set(value)

    gauge("examctl_last_run_timestamp_seconds", "End of the last run.", finished_at.timestamp())
    # 0 when the job never succeeded: the staleness alert then fires at once instead of
    # silently lacking a series to compare.
    gauge(
        "examctl_last_success_timestamp_seconds",
        "End of the last successful (not dry) run; 0 if none.",
        last_success.timestamp() if last_success is not None else 0,
    )
    gauge("examctl_last_run_duration_seconds", "Duration of the last run.", report.duration_s)
    gauge("examctl_last_run_exit_code", "Exit code of the last run.", report.exit_code)
    gauge("examctl_last_run_dry_run", "1 if the last run was a dry run.", int(report.dry_run))
    status = Gauge(
        "examctl_last_run_status",
        "1 for the status of the last run.",
        ["job", "status"],
        registry=registry,
    )
    for name in ("ok", "failed", "skipped"):
        status.labels(job=report.job, status=name).set(1 if report.status == name else 0)
    counts = Gauge(
        "examctl_last_run_count", "Counts of the last run.", ["job", "count"], registry=registry
    )
    for name, value in report.counts.items():
        if isinstance(value, int | float):
            counts.labels(job=report.job, count=name).set(value)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    path = metrics_path(metrics_dir, report.job)
    write_to_textfile(str(path), registry)
    return path
