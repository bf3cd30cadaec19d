"""db init, db check and demo: the database examctl works on, its schema and a sample in it.

Registered in examctl/cli/__init__.py, in the order `examctl --help` lists them.
"""

from __future__ import annotations

import typer

from examctl.cli.frame import (
    DatabaseUrl,
    JsonFlag,
    LogFormat,
    RedisPrefix,
    RedisUrl,
    Verbose,
    opened,
    reported_errors,
    resolve,
)


def db_init_command(
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Create every missing table, column and index (safe to run again).

    Example: examctl db init --database-url postgresql://examctl@db/exams
    """
    with reported_errors():
        settings = resolve(database_url, log_format=log_format, verbose=verbose)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.db.migrate import init_schema

        created = init_schema(res.engine)
    typer.echo("\n".join(f"created {item}" for item in created) or "schema complete: nothing to do")


def db_check_command(
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Report missing tables, columns and indexes; exit 1 if anything is missing.

    Example: examctl db check --json
    """
    with reported_errors():
        settings = resolve(database_url, log_format=log_format, verbose=verbose)
    with reported_errors(settings.secrets), opened(settings, use_redis=False) as res:
        from examctl.db.migrate import check_schema

        missing = check_schema(res.engine)
    if as_json:
        from examctl.render import print_json

        print_json({"ok": not missing, "missing": missing})
    else:
        typer.echo("\n".join(f"missing {item}" for item in missing) or "schema complete")
    raise typer.Exit(code=1 if missing else 0)


def demo_command(
    database_url: DatabaseUrl = None,
    redis_url: RedisUrl = None,
    redis_prefix: RedisPrefix = None,
    log_format: LogFormat = None,
    verbose: Verbose = False,
) -> None:
    """Fill the database with a realistic sample and run the jobs on it once.

    Example: examctl demo   (uses ./examctl.db, no server needed)
    """
    with reported_errors():
        settings = resolve(database_url, redis_url, redis_prefix, log_format, None, verbose)
    with reported_errors(settings.secrets), opened(settings) as res:
        from examctl.demo import run_demo

        code = run_demo(res)
    raise typer.Exit(code=code)
