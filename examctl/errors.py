"""The errors examctl reports, each with the exit code SPEC §9 gives it."""

from __future__ import annotations


class ExamctlError(Exception):
    """An expected failure: reported as one line on stderr, never with a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, partial: object | None = None) -> None:
        super().__init__(message)
        # What the job had committed before it failed (a result object), for history and --json.
        self.partial = partial

    def with_partial(self, partial: object) -> ExamctlError:
        """The same error, carrying what the job committed before it."""
        return type(self)(str(self), partial=partial)


class JobFailed(ExamctlError):
    """The job failed part way; what it committed is consistent."""

    exit_code = 1


class UsageError(ExamctlError):
    """Bad flag, malformed URL, corrupt input: nothing was changed."""

    exit_code = 2


class ServiceUnavailable(ExamctlError):
    """PostgreSQL, Redis or S3 could not be reached."""

    exit_code = 3


class JobSkipped(Exception):
    """Nothing the job may work on (e.g. no Redis configured): recorded `skipped`, exit 0."""


def first_line(reason: object) -> str:
    """The first line of a message (no SQL, parameters or tracebacks); the type's name if empty."""
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(reason).__name__
