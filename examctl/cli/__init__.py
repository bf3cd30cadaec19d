"""The command line: parse, resolve Settings, open resources, run a job, render, exit.

Only typer and the standard library are imported at module level, so `examctl --help` and every
`--help` stay instant: database drivers, Redis and boto3 load inside the command that needs them.

frame.py holds what every command shares; each other module holds the commands of one noun.
"""

from examctl.cli import archiving, finishing, inspecting, retention, schema
from examctl.cli.frame import app, db_app, main

__all__ = ["app", "main"]

# Typer lists commands in the order they are registered, so this list is the order of
# `examctl --help` (the `db` group comes after the commands whatever its place here).
app.command("finish-expired")(finishing.finish_expired_command)
app.command("history")(inspecting.history_command)
app.command("remind")(finishing.remind_command)
app.command("sweep")(finishing.sweep_command)
app.command("purge-proctoring")(retention.purge_proctoring_command)
app.command("clean-redis")(retention.clean_redis_command)
app.command("status")(inspecting.status_command)
app.command("archive")(archiving.archive_command)
app.command("restore")(archiving.restore_command)
app.command("demo")(schema.demo_command)
db_app.command("init")(schema.db_init_command)
db_app.command("check")(schema.db_check_command)
