"""The one description of the schema (SPEC §3): the platform's tables and examctl's own."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    literal,
    text,
)

from examctl.db.types import BigId, JsonDocument, Money, UtcDateTime

metadata = MetaData()

STATUS_IN_PROGRESS = "IN_PROGRESS"
FINISHED_STATUSES = ("SUBMITTED", "EXPIRED", "ABANDONED")
OVERDUE_POLICIES = ("autosubmit", "graceperiod", "autoabandon")

# --- the platform's tables ------------------------------------------------------------------

exams = Table(
    "exams",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("title", Text),
    Column("time_limit_minutes", Integer),
    Column("passing_score", Money, server_default=text("60")),
    Column("overdue_policy", Text, server_default=text("'autosubmit'")),
    Column("grace_minutes", Integer, server_default=text("0")),
    Column("closes_at", UtcDateTime, nullable=True),
)

# An exam's policy as examctl reads it: a NULL takes the column's default, as NULL passing_score,
# grace_minutes and points take theirs.
overdue_policy = func.coalesce(exams.c.overdue_policy, literal(OVERDUE_POLICIES[0]))

questions = Table(
    "questions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("exam_id", Uuid, ForeignKey("exams.id")),
    Column("position", Integer),
    Column("kind", Text),
    Column("points", Money, server_default=text("1")),
    Column("correct", JsonDocument),
)

exam_attempts = Table(
    "exam_attempts",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("exam_id", Uuid, ForeignKey("exams.id")),
    Column("user_id", Uuid),
    Column("status", Text),
    Column("started_at", UtcDateTime),
    Column("deadline_at", UtcDateTime),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("finished_by", Text, nullable=True),
    Column("score", Money, nullable=True),
    Column("max_score", Money, nullable=True),
    Column("percent", Money, nullable=True),
    Column("passed", Boolean, nullable=True),
    Column("proctoring_summary", JsonDocument, nullable=True),
    Index(
        "ix_exam_attempts_deadline_in_progress",
        "deadline_at",
        postgresql_where=text("status = 'IN_PROGRESS'"),
        sqlite_where=text("status = 'IN_PROGRESS'"),
    ),
    Index(
        "ix_exam_attempts_finished_done",
        "finished_at",
        postgresql_where=text("status <> 'IN_PROGRESS'"),
        sqlite_where=text("status <> 'IN_PROGRESS'"),
    ),
)

attempt_answers = Table(
    "attempt_answers",
    metadata,
    Column("id", BigId, Identity(), primary_key=True),
    Column("attempt_id", Uuid, ForeignKey("exam_attempts.id")),
    Column("question_id", Uuid, ForeignKey("questions.id")),
    Column("answer", JsonDocument),
    Column("answered_at", UtcDateTime),
    Column("is_correct", Boolean, nullable=True),
    Column("points_awarded", Money, nullable=True),
    UniqueConstraint("attempt_id", "question_id", name="uq_attempt_answers_attempt_question"),
    Index("ix_attempt_answers_attempt_id", "attempt_id"),
)

proctoring_events = Table(
    "proctoring_events",
    metadata,
    Column("id", BigId, Identity(), primary_key=True),
    Column("attempt_id", Uuid, ForeignKey("exam_attempts.id")),
    Column("kind", Text),
    Column("occurred_at", UtcDateTime),
    Column("payload", JsonDocument, nullable=True),
    Index("ix_proctoring_events_occurred_at", "occurred_at"),
    Index("ix_proctoring_events_attempt_id", "attempt_id"),
)

PLATFORM_TABLES = (exams, questions, exam_attempts, attempt_answers, proctoring_events)

# --- examctl's own tables -------------------------------------------------------------------

job_runs = Table(
    "examctl_job_runs",
    metadata,
    Column("id", BigId, Identity(), primary_key=True),
    Column("job", Text, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("status", Text, nullable=False),  # running | ok | failed | skipped
    Column("dry_run", Boolean, nullable=False),
    Column("counts", JsonDocument, nullable=True),
    Column("error", Text, nullable=True),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Index("ix_examctl_job_runs_job_started", "job", "started_at"),
)

# One row per (attempt, threshold) ever: the unique pair is what makes a reminder go out at most
# once, whatever number of `remind` / `sweep` processes race for it (SPEC §8).
REMINDER_STATES = ("sending", "sent", "failed", "skipped")

reminders = Table(
    "examctl_reminders",
    metadata,
    Column("id", BigId, Identity(), primary_key=True),
    # No foreign key: archiving an attempt must not be blocked by its reminder log.
    Column("attempt_id", Uuid, nullable=False),
    Column("minutes_before", Integer, nullable=False),
    Column("state", Text, nullable=False),  # sending | sent | failed | skipped
    Column("claimed_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("tries", Integer, nullable=False, server_default=text("0")),
    Column("error", Text, nullable=True),
    UniqueConstraint("attempt_id", "minutes_before", name="uq_examctl_reminders_attempt_minutes"),
)

# --- archive: the manifest log (SPEC §7) ------------------------------------------------------
# One row per archive run and one per data object it planned. An object's rows are deleted from
# the live tables in the same transaction that marks it `deleted`, so these tables always say
# which attempts left the database and in which object; a rerun completes what a killed run left.

archive_runs = Table(
    "examctl_archive_runs",
    metadata,
    Column("id", Text, primary_key=True),  # the run id in object keys and the manifest's name
    Column("dest", Text, nullable=False),  # s3://bucket/prefix or an absolute directory
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("cutoff", UtcDateTime, nullable=False),  # archived: finished_at before this
    Column("status", Text, nullable=False),  # running | complete | failed | recovered
    Column("manifest_key", Text, nullable=True),  # set once the manifest is written and verified
    Column("manifest_sha256", Text, nullable=True),
    Column("error", Text, nullable=True),
)

archived_objects = Table(
    "examctl_archived_objects",
    metadata,
    Column("id", BigId, Identity(), primary_key=True),
    Column("run_id", Text, ForeignKey("examctl_archive_runs.id"), nullable=False),
    Column("key", Text, nullable=False, unique=True),  # relative to the destination
    Column("day", Text, nullable=False),  # YYYY-MM-DD (UTC) of the attempts' finished_at
    Column("state", Text, nullable=False),  # planned | deleted | discarded
    Column("attempt_ids", JsonDocument, nullable=False),  # planned, then exactly those stored
    Column("attempts", Integer, nullable=False),
    Column("answers", Integer, nullable=True),
    Column("events", Integer, nullable=True),
    Column("bytes", BigId, nullable=True),
    Column("sha256", Text, nullable=True),
    Column("planned_at", UtcDateTime, nullable=False),
    Column("deleted_at", UtcDateTime, nullable=True),
    Index("ix_examctl_archived_objects_run", "run_id", "id"),
)
