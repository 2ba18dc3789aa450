"""The install/test plumbing agrees with itself: pyproject.toml vs environment.yml,
README's test command vs Makefile vs .ci/run, and CI refusing an empty test run."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
CI_RUN = ROOT / ".ci" / "run"
README = ROOT / "README.md"

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _norm(name: str) -> str:
    """PEP 503 normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_map(lines: list[str], where: str) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for line in lines:
        req = Requirement(line)
        key = _norm(req.name)
        assert key not in out, f"{req.name} listed twice in {where}"
        out[key] = (str(req.specifier), tuple(sorted(req.extras)), str(req.marker or ""))
    return out


def _pyproject_requirements() -> dict[str, tuple]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"]) + list(project.get("optional-dependencies", {}).get("dev", []))
    return _requirement_map(lines, "pyproject.toml")


def _environment_yml() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _environment_pip_lines(env: dict) -> list[str]:
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one `pip:` section"
    # Lines starting with "-" are pip options (e.g. `-e .`), not requirements.
    return [str(x).strip() for x in pip_sections[0] if not str(x).strip().startswith("-")]


def test_environment_yml_lists_the_same_requirements_as_pyproject():
    py = _pyproject_requirements()
    env = _requirement_map(_environment_pip_lines(_environment_yml()), "environment.yml")
    missing = sorted(set(py) - set(env))
    extra = sorted(set(env) - set(py))
    assert not missing, f"in pyproject.toml but not in environment.yml's pip list: {missing}"
    assert not extra, f"in environment.yml's pip list but not in pyproject.toml: {extra}"
    differ = {name: {"pyproject.toml": py[name], "environment.yml": env[name]} for name in py if py[name] != env[name]}
    assert not differ, f"version specifiers/extras/markers differ: {differ}"


def test_environment_yml_has_python_and_pip():
    deps = [d for d in _environment_yml()["dependencies"] if isinstance(d, str)]
    assert "pip" in deps
    pythons = [d for d in deps if re.match(r"python\s*[=<>]", d)]
    assert pythons == ["python=3.11"], pythons
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    from packaging.specifiers import SpecifierSet

    assert "3.11" in SpecifierSet(requires), f"environment.yml's python=3.11 violates requires-python {requires}"


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", MAKEFILE.read_text(), flags=re.M))


def test_makefile_has_the_documented_targets():
    targets = _makefile_targets()
    for t in ("lab", "test", "sysdeps", "bench", "clean", "train-mini-mae", "install"):
        assert t in targets, f"Makefile has no `{t}` target"


def _ci_commands() -> list[str]:
    """Non-comment lines of .ci/run, stripped."""
    lines = []
    for raw in CI_RUN.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def test_ci_run_is_strict_bash_and_executable():
    text = CI_RUN.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    assert "set -euo pipefail" in text
    assert CI_RUN.stat().st_mode & stat.S_IXUSR, ".ci/run is not executable"


@needs_make
def test_make_test_dry_run_runs_pytest_offline():
    env = {**os.environ, "MAKEFLAGS": ""}
    out = subprocess.run(
        ["make", "-n", "test", "PYTEST_ARGS=-q --co"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    # one pytest-xdist worker per core, whole files per worker (module fixtures are built once)
    assert re.search(r"HF_HUB_OFFLINE=1 MPLBACKEND=Agg \S*\.venv/bin/python -m pytest -n auto --dist loadfile -q --co",
                     out.stdout), out.stdout
    serial = subprocess.run(["make", "-n", "pytest", "PYTEST_ARGS=-q", "PYTEST_WORKERS=0"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert re.search(r"\.venv/bin/python -m pytest +-q \|\|", serial.stdout), serial.stdout
    assert " -n " not in serial.stdout


def _readme_test_commands() -> list[str]:
    cmds = []
    for raw in README.read_text().splitlines():
        line = re.sub(r"^\s*(?:[$>]\s*)?", "", raw).split(" #", 1)[0].strip().strip("`").strip()
        if re.match(r"make\s+test\b", line):
            cmds.append(line)
    return cmds


def test_readme_makefile_and_ci_agree_on_the_test_command():
    if not README.exists():
        pytest.skip("README.md not written yet")
    cmds = _readme_test_commands()
    assert cmds, "README.md has no `make test` line: the documented test command must be `make test`"
    assert "test" in _makefile_targets(), "README says `make test` but the Makefile has no `test` target"
    ci = _ci_commands()
    for cmd in set(cmds):
        assert any(re.match(re.escape(cmd) + r"(\s|$|\s*\|\|)", line) for line in ci), (
            f"README's test command `{cmd}` is not what .ci/run runs; its make lines: {[x for x in ci if 'make' in x]}"
        )


# ---- pytest exit status 5 (no tests collected) must fail loudly ------------------------------------


def _write_exe(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@needs_make
def test_makefile_reports_pytest_exit_5(tmp_path):
    fake_python = _write_exe(tmp_path / "python", 'echo "fake pytest: collected 0 items"; exit 5\n')
    rc_file = tmp_path / "rc" / "pytest-exit-code"
    out = subprocess.run(
        ["make", "-s", "pytest", f"PY={fake_python}", f"PYTEST_EXIT_FILE={rc_file}"],
        cwd=ROOT,
        env={**os.environ, "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "collected no tests" in out.stderr, out.stderr
    assert rc_file.read_text().strip() == "5"


def _run_ci_with_fake_make(tmp_path: Path, make_body: str) -> subprocess.CompletedProcess:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _write_exe(bindir / "make", make_body)
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTEST_EXIT_FILE": str(tmp_path / "pytest-exit-code"),
        "CI": "true",
    }
    return subprocess.run(["bash", str(CI_RUN)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


@needs_bash
def test_ci_run_fails_clearly_when_pytest_collects_nothing(tmp_path):
    # A fake `make test` whose pytest collected nothing: the Makefile records 5, make exits 2.
    out = _run_ci_with_fake_make(
        tmp_path, '[ "$1" = "--version" ] && { echo "fake make"; exit 0; }\necho 5 > "$PYTEST_EXIT_FILE"; exit 2\n'
    )
    assert out.returncode != 0
    assert "collected no tests" in out.stderr, out.stderr
    assert "python" in out.stdout.lower() and "pip" in out.stdout.lower(), "tool versions not printed"


@needs_bash
def test_ci_run_passes_when_pytest_passes(tmp_path):
    out = _run_ci_with_fake_make(tmp_path, 'echo 0 > "$PYTEST_EXIT_FILE"; exit 0\n')
    assert out.returncode == 0, out.stdout + out.stderr
    assert "CI passed" in out.stdout


@needs_bash
def test_ci_run_fails_when_make_fails_before_pytest(tmp_path):
    out = _run_ci_with_fake_make(tmp_path, "exit 2\n")
    assert out.returncode != 0
    assert "before pytest ran" in out.stderr, out.stderr


@needs_bash
def test_ci_report_function_in_a_subshell():
    script = f'source "{CI_RUN}"; report_test_status 2 5'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 5
    assert "collected no tests" in out.stderr
