"""One loop of `sweep`: do a round of work, record it if it mattered, wait for the next one.

What an operator of a long-running process expects, in one place:
- the wait is until the next item falls due (`next_due_s`), at most `interval_s`, and ends at
  once when `stop` is set (a signal), so a round in hand always completes;
- a failure (database restarted, Redis down, webhook unreachable) is logged once when it starts
  and once when it is over, not every round, and rounds back off (1 s, 2 s, 4 s … up to the
  interval) until it recovers by itself;
- history gets a row for rounds that did work and for the start of each failure, never for an
  idle round; busy stretches are coalesced into at most one row per interval (a row per round
  of a self-paced exam platform would be a row per attempt).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from examctl.db.engine import translate_db_errors
from examctl.errors import ExamctlError, JobFailed
from examctl.logs import scrub
from examctl.runner import JobContext, JobReport, _counts, record_run

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S = 1.0
# Wake a hair after the due time, so the database clock is surely past it.
DUE_MARGIN_S = 0.005


def backoff_s(failures: int, interval_s: float) -> float:
    """The wait after `failures` consecutive failed rounds: 1, 2, 4 … seconds, capped."""
    return min(interval_s, FIRST_BACKOFF_S * 2.0 ** max(0, failures - 1))


@dataclass
class _Pending:
    report: JobReport
    started: float  # time.monotonic() when its first round began


class HistoryRows:
    """Rounds worth a history row, at most one row per `window_s`: busy rounds are merged."""

    def __init__(self, ctx: JobContext, window_s: float) -> None:
        self.ctx = ctx
        self.window_s = window_s
        self.pending: list[_Pending] = []
        self.last_write = -math.inf

    def add(self, report: JobReport, started: float, *, now: bool = False) -> None:
        last = self.pending[-1] if self.pending else None
        if last is not None and last.report.status == report.status:
            last.report = _merged(last.report, report)
        else:
            self.pending.append(_Pending(report, started))
        if now or time.monotonic() - self.last_write >= self.window_s:
            self.flush()

    def flush(self) -> None:
        """Write what is pending; if the database is gone, keep it for the next try."""
        while self.pending:
            entry = self.pending[0]
            try:
                record_run(self.ctx.engine, entry.report, span_s=time.monotonic() - entry.started)
            except ExamctlError:
                return
            self.pending.pop(0)
            self.last_write = time.monotonic()


def _merged(a: JobReport, b: JobReport) -> JobReport:
    counts = {k: a.counts.get(k, 0) + b.counts.get(k, 0) for k in {**a.counts, **b.counts}}
    return replace(
        a,
        counts=counts,
        duration_s=a.duration_s + b.duration_s,
        exit_code=max(a.exit_code, b.exit_code),
    )


class RoundLoop:
    """Run `work` in rounds until `stop` is set; see the module docstring."""

    def __init__(
        self,
        job: str,
        work: Callable[[], object],
        next_due_s: Callable[[], float | None],
        *,
        ctx: JobContext,
        interval_s: float,
        stop: threading.Event,
        after_round: Callable[[JobReport], None] = lambda report: None,
    ) -> None:
        self.job = job
        self.work = work
        self.next_due_s = next_due_s
        self.ctx = ctx
        self.interval_s = interval_s
        self.stop = stop
        self.after_round = after_round
        self.history = HistoryRows(ctx, interval_s)
        self.totals: dict[str, int] = {}
        self.rounds = self.failed_rounds = self.failures = 0
        self.failing_since = 0.0
        self.last_error: ExamctlError | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                report = self.run_round()
                self.stop.wait(self.pause_after(report))
        finally:
            self.history.flush()

    def run_round(self) -> JobReport:
        """One round: do the work, account for it, log a failure once per episode."""
        started = time.monotonic()
        try:
            with translate_db_errors(self.ctx.engine):
                report = self._report(started, "ok", self.work())
        except ExamctlError as error:
            report = self._failed(started, error)
        except Exception as error:  # a bug: keep the traceback, keep sweeping
            if self.failures == 0:
                logger.exception("%s round crashed", self.job, extra={"job": self.job})
            report = self._failed(started, JobFailed(f"{type(error).__name__}: {error}"))
        self.rounds += 1
        for key, value in report.counts.items():
            self.totals[key] = self.totals.get(key, 0) + int(value)
        if report.status == "ok":
            self._recovered()
        did_work = any(report.counts.values())
        if did_work or (report.status == "failed" and self.failures == 1):
            self.history.add(report, started, now=report.status == "failed")
        elif report.status == "ok":
            self.history.flush()  # an idle round: a busy stretch is over
        self.after_round(report)
        return report

    def pause_after(self, report: JobReport) -> float:
        """Seconds to wait: until the next item is due (≤ interval), or the back-off."""
        if report.status != "ok":
            return backoff_s(self.failures, self.interval_s)
        try:
            with translate_db_errors(self.ctx.engine):
                due = self.next_due_s()
        except Exception as error:  # the next round will meet (and report) the same problem
            logger.debug("could not compute the next due time: %s", error)
            return backoff_s(1, self.interval_s)
        if due is None:
            return self.interval_s
        return min(self.interval_s, max(0.0, due) + DUE_MARGIN_S)

    def _report(self, started: float, status: str, result: object, **extra: Any) -> JobReport:
        return JobReport(
            job=self.job,
            status=status,
            dry_run=False,
            counts=_counts(result),
            duration_s=time.monotonic() - started,
            **extra,
        )

    def _failed(self, started: float, error: ExamctlError) -> JobReport:
        message = scrub(str(error), self.ctx.secrets)
        self.failed_rounds += 1
        self.failures += 1
        self.last_error = error
        if self.failures == 1:
            self.failing_since = started
            logger.error(
                "%s round failed: %s; retrying with back-off up to %gs (logged once until it "
                "recovers)",
                self.job,
                message,
                self.interval_s,
                extra={"job": self.job, "action": "round_failed", "exit_code": error.exit_code},
            )
        else:
            logger.debug("%s round failed again: %s", self.job, message, extra={"job": self.job})
        return self._report(
            started, "failed", error.partial, error=message, exit_code=error.exit_code
        )

    def _recovered(self) -> None:
        if self.failures:
            logger.info(
                "%s recovered after %d failed round(s) over %.1fs",
                self.job,
                self.failures,
                time.monotonic() - self.failing_since,
                extra={"job": self.job, "action": "round_recovered"},
            )
        self.failures = 0
        self.last_error = None
