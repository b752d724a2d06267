"""The preflight check: a `python` on PATH that cannot import this twostage stops the run
once, before any job, naming both interpreters and the fix (workflow/rules/preflight.smk)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, env

from twostage import __version__
from twostage.preflight import rule_python_problem

SYSTEM_PYTHON = Path("/usr/bin/python3")


def _lacks_twostage(python: Path) -> bool:
    if not python.exists():
        return False
    res = subprocess.run(
        [str(python), "-c", "import twostage"], capture_output=True, env=env(), timeout=60
    )
    return res.returncode != 0


@pytest.fixture
def bad_bin(tmp_path) -> Path:
    """A directory whose `python` cannot import twostage: the system Python (which has no
    twostage, as a user's PATH without the activated .venv gives), else a stand-in."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python"
    if _lacks_twostage(SYSTEM_PYTHON):
        python.symlink_to(SYSTEM_PYTHON)
    else:
        python.write_text(
            "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'twostage'\" >&2\nexit 1\n"
        )
        python.chmod(0o755)
    return bin_dir


def _snakemake(workdir: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("snakemake", path=env()["PATH"])
    assert exe, "snakemake is not installed in this environment"
    cmd = [exe, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, env={**env(), "PATH": path}, cwd=ROOT, timeout=300
    )


def _snakemake_python() -> str:
    """The interpreter Snakemake runs under: its script's shebang."""
    exe = shutil.which("snakemake", path=env()["PATH"])
    return Path(exe).read_text().splitlines()[0].removeprefix("#!").strip()


@pytest.mark.workflow
def test_run_whose_python_lacks_twostage_fails_once_before_any_job(tmp_path, bad_bin):
    path = f"{bad_bin}{os.pathsep}{os.environ['PATH']}"
    res = _snakemake(tmp_path, path, "--cores", "1", "--configfile", str(TINY))
    text = res.stdout + res.stderr
    assert res.returncode != 0, text
    assert text.count("The workflow's rules call `python` from PATH") == 1, text
    assert "cannot import twostage" in text
    assert f"rules' python:      {bad_bin / 'python'}" in text
    assert f"Snakemake's python: {_snakemake_python()} (twostage {__version__})" in text
    assert "source .venv/bin/activate" in text and "make run" in text
    assert "ModuleNotFoundError" in text and "Finished jobid" not in text
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_dry_run_whose_python_lacks_twostage_warns(tmp_path, bad_bin):
    """A dry run cannot know the executor a real run would use (a cluster's jobs may have
    another environment), so it warns and succeeds."""
    path = f"{bad_bin}{os.pathsep}{os.environ['PATH']}"
    res = _snakemake(tmp_path, path, "-n", "--configfile", str(TINY))
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert text.count("Dry run: a local run") == 1 and "cannot import twostage" in text
    assert "source .venv/bin/activate" in text


@pytest.mark.workflow
def test_dry_run_with_the_normal_path_is_silent(tmp_path):
    res = _snakemake(tmp_path, env()["PATH"], "-n", "--configfile", str(TINY))
    text = res.stdout + res.stderr
    assert res.returncode == 0, text
    assert "simulate" in text and "rules call" not in text
    assert not (tmp_path / "results").exists()


def test_probe_accepts_this_environment_and_names_what_is_wrong(tmp_path):
    assert rule_python_problem(env()["PATH"]) is None

    missing = rule_python_problem(str(tmp_path / "empty"))
    assert "there is no `python` on PATH" in missing and "rules' python:      none" in missing

    old = tmp_path / "old"
    old.mkdir()
    (old / "python").write_text("#!/bin/sh\necho 0.0.1\necho /opt/old/bin/python\n")
    (old / "python").chmod(0o755)
    stale = rule_python_problem(str(old))
    assert f"imports twostage 0.0.1, not {__version__}" in stale
    assert f"{old / 'python'} (-> /opt/old/bin/python)" in stale
    assert f"Snakemake's python: {sys.executable}" in stale
