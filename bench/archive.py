"""Benchmark of `examctl archive` (issue 6): export, verify and delete finished attempts.

    python bench/archive.py                       # 50,000 attempts x 30 answers x 20 events
    python bench/archive.py --attempts 200000     # the same per attempt: peak RSS must stay flat
    python bench/archive.py --attempts 5000 --no-s3 --no-python-json   # a quick check

It starts a durable PostgreSQL (fsync and synchronous_commit on) sized as in production
(bench/_common.py PRODUCTION_SETTINGS: at 200,000 attempts the deletes write some 1.5 GB of WAL,
and initdb's max_wal_size of 1 GB then forces checkpoints mid-run), builds the data once with
generate_series into a template database, and gives each contender a fresh copy of it:

- baseline: `psql -c "\\copy (SELECT <the same JSON lines> …) TO STDOUT" | gzip` (export only);
- examctl archive to a local directory (export, fsync, read back + SHA-256, delete, manifest);
- examctl archive to a moto S3 server over HTTP (upload, read back, delete, manifest);
- the same to a directory with each line built in Python from fetched rows instead of by
  PostgreSQL (the shape examctl uses on SQLite), to show why PostgreSQL builds them.

Each contender runs as a process of its own; its peak RSS comes from wait4(). Throughput is
attempts/s and MB/s of JSON (uncompressed) produced; the ratio is against the baseline's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python bench/archive.py` runs this checkout's code
    sys.path.insert(0, str(REPO_ROOT))

from _common import PRODUCTION_SETTINGS, configure  # noqa: E402

from tests.servers import MotoServer, PostgresServer  # noqa: E402

TEMPLATE = "bench_archive_template"
DUE = "status <> 'IN_PROGRESS' AND finished_at < now() - interval '180 days'"
BASELINE_SQL = f"""
SELECT json_build_object('attempt', row_to_json(a),
         'answers', coalesce((SELECT array_to_json(array_agg(x ORDER BY x.id))
                              FROM attempt_answers x WHERE x.attempt_id = a.id), '[]'::json),
         'proctoring_events', coalesce((SELECT array_to_json(array_agg(e ORDER BY e.id))
                              FROM proctoring_events e WHERE e.attempt_id = a.id), '[]'::json))
FROM exam_attempts a WHERE {DUE} ORDER BY a.finished_at, a.id
"""


def data_sql(attempts: int, answers: int, events: int, days: int) -> list[str]:
    """Finished attempts spread over `days` UTC days, 181+ days old, with answers and events."""
    exam = "'00000000-0000-0000-0000-0000000000e1'::uuid"
    return [
        f"""INSERT INTO exams (id, title, time_limit_minutes, passing_score, overdue_policy)
            VALUES ({exam}, 'Bench exam', 60, 60, 'autosubmit')""",
        f"""INSERT INTO questions (id, exam_id, position, kind, points, correct)
            SELECT gen_random_uuid(), {exam}, g,
                   (ARRAY['single','multiple','text','numeric'])[1 + g % 4], 1 + g % 3,
                   '{{"choice": "B"}}'::jsonb
            FROM generate_series(1, {answers}) g""",
        f"""INSERT INTO exam_attempts (id, exam_id, user_id, status, started_at, deadline_at,
                finished_at, finished_by, score, max_score, percent, passed, proctoring_summary)
            SELECT gen_random_uuid(), {exam}, gen_random_uuid(),
                   (ARRAY['SUBMITTED','EXPIRED','ABANDONED'])[1 + g % 3],
                   t - interval '45 minutes', t + interval '15 minutes', t,
                   CASE WHEN g % 3 = 1 THEN 'user' ELSE 'examctl' END,
                   round((random() * 30)::numeric, 2), 45.00,
                   round((random() * 100)::numeric, 4), random() > 0.4,
                   jsonb_build_object('total', {events}, 'by_kind',
                       jsonb_build_object('tab_switch', 12, 'face_missing', 8),
                       'first_at', t - interval '40 minutes', 'last_at', t)
            FROM generate_series(1, {attempts}) g,
                 LATERAL (SELECT now() - interval '181 days' - (g % {days}) * interval '1 day'
                                 - (g % 86400) * interval '1 second' AS t) x""",
        """INSERT INTO attempt_answers (attempt_id, question_id, answer, answered_at, is_correct,
                points_awarded)
            SELECT a.id, q.id,
                   CASE q.kind WHEN 'single' THEN '"B"' WHEN 'multiple' THEN '["A", "C"]'
                               WHEN 'text' THEN '"  Paris  "' ELSE '3.14' END::jsonb,
                   a.started_at + q.position * interval '1 minute', q.position % 2 = 0,
                   CASE WHEN q.position % 2 = 0 THEN q.points ELSE 0 END
            FROM exam_attempts a CROSS JOIN questions q""",
        f"""INSERT INTO proctoring_events (attempt_id, kind, occurred_at, payload)
            SELECT a.id,
                   (ARRAY['tab_switch','face_missing','copy_paste','fullscreen_exit'])[1 + e % 4],
                   a.started_at + e * interval '2 minutes',
                   jsonb_build_object('seq', e, 'confidence', round(random()::numeric, 3),
                                      'client', 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0')
            FROM exam_attempts a CROSS JOIN generate_series(1, {events}) e""",
    ]


@dataclass(frozen=True)
class Figures:
    name: str
    seconds: float
    attempts: int
    json_bytes: int
    stored_bytes: int
    peak_rss: int  # bytes

    def row(self, baseline: Figures | None) -> list[str]:
        rate = self.attempts / self.seconds
        ratio = f"{rate / (baseline.attempts / baseline.seconds):.2f}x" if baseline else "1.00x"
        return [
            self.name,
            f"{self.seconds:.1f}",
            f"{rate:,.0f}",
            f"{self.json_bytes / self.seconds / 1e6:.1f}",
            f"{self.stored_bytes / 1e6:.1f}",
            f"{self.peak_rss / 2**20:.0f}",
            ratio,
        ]


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def wait_rss(process: subprocess.Popen[bytes]) -> tuple[int, int]:
    """(exit status, peak RSS in bytes) of a child, from wait4()."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss * 1024


def clone(server: PostgresServer, name: str) -> str:
    server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    server.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    server.execute("CHECKPOINT")  # no dirty pages of the copy left for the contender to write
    return server.url(name)


def json_size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with gzip.open(path, "rb") as lines:
            while chunk := lines.read(1 << 20):
                total += len(chunk)
    return total


def run_baseline(url: str, out: Path, due: int) -> Figures:
    copy = "\\copy (" + " ".join(BASELINE_SQL.split()) + ") TO STDOUT"
    started = time.monotonic()
    with out.open("wb") as sink:
        psql = subprocess.Popen(["psql", "-X", "-q", "-d", url, "-c", copy], stdout=subprocess.PIPE)
        gz = subprocess.Popen(["gzip", "-6"], stdin=psql.stdout, stdout=sink)
        assert psql.stdout is not None
        psql.stdout.close()
        (code_psql, rss_psql), (code_gz, rss_gz) = wait_rss(psql), wait_rss(gz)
    seconds = time.monotonic() - started
    assert code_psql == 0 and code_gz == 0, "baseline failed"
    return Figures(
        "psql \\copy | gzip (baseline, export only)",
        seconds,
        due,
        json_size([out]),
        out.stat().st_size,
        rss_psql + rss_gz,
    )


def run_examctl(name: str, url: str, dest: str, args: list[str], env: dict[str, str]) -> Figures:
    command = [sys.executable, "-m", "examctl", "archive", "--dest", dest, "--json", *args]
    if name.endswith("(JSON built in Python)"):
        command = [sys.executable, __file__, "--child-python-json", *command[4:]]
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": url,
        "EXAMCTL_LOG_FORMAT": "json",
    }
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=full_env, stdout=out, stderr=err)
        code, rss = wait_rss(process)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        log = err.read().decode()
        if code != 0:
            raise SystemExit(f"{name} failed ({code}): {log[-2000:]}")
        if os.environ.get("BENCH_KEEP_LOG"):
            Path(os.environ["BENCH_KEEP_LOG"]).write_text(log)
        counts = json.loads(out.read())["counts"]
    return Figures(name, seconds, counts["attempts"], 0, counts["bytes"], rss)


def child_python_json(argv: list[str]) -> None:
    """examctl archive with each line built in Python from fetched rows (SQLite's shape)."""
    from examctl import cli
    from examctl.jobs import archive_export

    real = archive_export.is_postgres
    archive_export.is_postgres = lambda conn: False  # type: ignore[assignment]
    from examctl.jobs import archive_log

    archive_log.is_postgres = real  # deletes stay as on PostgreSQL
    sys.argv = ["examctl", "archive", *argv]
    cli.main()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attempts", type=int, default=50_000)
    parser.add_argument("--answers", type=int, default=30)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--days", type=int, default=20, help="UTC days the attempts spread over")
    parser.add_argument("--max-object-attempts", type=int, default=5000)
    parser.add_argument("--no-s3", action="store_true", help="skip the moto S3 contender")
    parser.add_argument("--no-python-json", action="store_true", help="skip the Python shape")
    args = parser.parse_args()
    from examctl.db.engine import make_engine
    from examctl.db.migrate import init_schema
    from examctl.settings import normalize_database_url

    server = PostgresServer(durable=True)
    moto = MotoServer()
    work = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        server.start()
        configure(server, PRODUCTION_SETTINGS)
        server.execute(f"CREATE DATABASE {TEMPLATE}")
        engine = make_engine(normalize_database_url(server.url(TEMPLATE)))
        init_schema(engine)
        engine.dispose()
        log(f"building {args.attempts:,} attempts x {args.answers} answers x {args.events} events")
        started = time.monotonic()
        for statement in [
            *data_sql(args.attempts, args.answers, args.events, args.days),
            "VACUUM ANALYZE",
        ]:
            server.execute(statement, TEMPLATE)
        log(f"built in {time.monotonic() - started:.0f}s")
        object_args = ["--days", "180", "--max-object-attempts", str(args.max_object_attempts)]
        results = [
            run_baseline(clone(server, "bench_baseline"), work / "baseline.jsonl.gz", args.attempts)
        ]
        log(f"baseline: {results[0].seconds:.1f}s")
        dest = work / "dir"
        figures = run_examctl(
            "examctl archive -> directory", clone(server, "bench_dir"), str(dest), object_args, {}
        )
        results.append(_with_json(figures, sorted(dest.rglob("*.jsonl.gz"))))
        log(f"directory: {figures.seconds:.1f}s")
        if not args.no_s3:
            moto.start()
            s3_env = {
                "AWS_ENDPOINT_URL": moto.endpoint_url,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench-secret",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            import boto3

            boto3.client("s3", endpoint_url=moto.endpoint_url, **_creds(s3_env)).create_bucket(
                Bucket="bench"
            )
            figures = run_examctl(
                "examctl archive -> moto S3",
                clone(server, "bench_s3"),
                "s3://bench/archive",
                object_args,
                s3_env,
            )
            results.append(_with_json(figures, [], results[1]))
            log(f"S3: {figures.seconds:.1f}s")
        if not args.no_python_json:
            dest = work / "py"
            figures = run_examctl(
                "examctl archive -> directory (JSON built in Python)",
                clone(server, "bench_py"),
                str(dest),
                object_args,
                {},
            )
            results.append(_with_json(figures, sorted(dest.rglob("*.jsonl.gz"))))
            log(f"python json: {figures.seconds:.1f}s")
        print_table(args, results)
    finally:
        moto.stop()
        server.destroy()
        shutil.rmtree(work, ignore_errors=True)


def _creds(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def _with_json(figures: Figures, objects: list[Path], same_as: Figures | None = None) -> Figures:
    size = same_as.json_bytes if same_as else json_size(objects)
    return Figures(
        figures.name,
        figures.seconds,
        figures.attempts,
        size,
        figures.stored_bytes,
        figures.peak_rss,
    )


def print_table(args: argparse.Namespace, results: list[Figures]) -> None:
    header = [
        "contender",
        "seconds",
        "attempts/s",
        "JSON MB/s",
        "stored MB",
        "peak RSS MiB",
        "vs baseline",
    ]
    rows = [header] + [r.row(None if i == 0 else results[0]) for i, r in enumerate(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    rows_total = args.attempts * (1 + args.answers + args.events)
    print(
        f"\narchive: {args.attempts:,} attempts x {args.answers} answers x {args.events} events "
        f"({rows_total:,} rows), {args.days} UTC days, objects of <= {args.max_object_attempts:,} "
        f"attempts; {os.cpu_count()} CPUs; durable PostgreSQL"
    )
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-python-json":
        child_python_json(sys.argv[2:])
    else:
        main()
