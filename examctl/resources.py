"""Open what a command needs (engine, Redis sessions) and close it again, whatever happens."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from examctl.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from examctl.runner import JobContext, JobReport
    from examctl.stores.redis_sessions import RedisSessions


@dataclass(frozen=True)
class Resources:
    settings: Settings
    engine: Engine
    sessions: RedisSessions | None

    def run_job(
        self,
        job: str,
        work: Callable[[], object],
        *,
        dry_run: bool = False,
        exclusive: bool = False,
        notes: Sequence[str] = (),
    ) -> JobReport:
        """Run `work` in the job frame (history, lock, metrics) with this command's settings."""
        from examctl.runner import run_job

        context = self.job_context(notes)
        return run_job(context, job, work, dry_run=dry_run, exclusive=exclusive)

    def job_context(self, notes: Sequence[str] = ()) -> JobContext:
        """What the job frame needs: where to record, what to hide, where metrics go."""
        from examctl.runner import JobContext

        return JobContext(
            engine=self.engine,
            secrets=self.settings.secrets(),
            metrics_dir=self.settings.metrics_dir,
            notes=tuple(n for n in notes if n),
        )


@contextlib.contextmanager
def open_resources(settings: Settings, *, use_redis: bool = True) -> Iterator[Resources]:
    """The engine and, if configured, Redis sessions. Nothing connects yet: a job's first contact
    is recording its run (runner.run_job), which also writes the metrics file when the database
    cannot be reached; any query that cannot reach it ends the command with exit 3."""
    from examctl.db.engine import make_engine, translate_db_errors

    engine = make_engine(settings.database_url)
    sessions = None
    try:
        if use_redis and settings.redis_url:
            from examctl.stores.redis_sessions import RedisSessions

            sessions = RedisSessions(settings.redis_url, settings.redis_prefix)
        with translate_db_errors(engine):
            yield Resources(settings, engine, sessions)
    finally:
        if sessions is not None:
            sessions.close()
        engine.dispose()
