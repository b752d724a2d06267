from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin first on PATH."""
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on the project's Snakefile in ``workdir``."""
    exe = shutil.which("snakemake", path=env()["PATH"])
    assert exe, "snakemake is not installed in this environment"
    cmd = [exe, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        env=env(),
    )


def tiny_params(name: str) -> dict:
    """A case's tiny test settings as one flat parameter mapping."""
    from twostage.cases import get_case

    return get_case(name).tiny_params()


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
