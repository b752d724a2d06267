from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the tiny test study, and its two aggregated files (what the runs compare)
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
TINY_AGGREGATES = ("results/tiny/risk.nc", "results/tiny/theory.nc")
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


def pytest_collection_modifyitems(config, items):
    """Hand the slowest test files out first (with ``--dist loadfile
    --no-loadscope-reorder``, xdist sends files to workers in this order): the SLURM tests
    (marked ``hpc``: mostly waiting on the cluster's status polls, so one worker can wait
    while the others compute), then the files with the most Snakemake runs (marked
    ``workflow``), then the rest, most tests first. Within a file the order is kept."""
    weight: dict[str, list[int]] = {}
    for item in items:
        w = weight.setdefault(item.nodeid.split("::")[0], [0, 0, 0])
        w[0] += item.get_closest_marker("hpc") is not None
        w[1] += item.get_closest_marker("workflow") is not None
        w[2] += 1
    items.sort(key=lambda item: [-x for x in weight[item.nodeid.split("::")[0]]])


def load_nc(path: Path):
    """A netCDF file read whole by xarray (h5netcdf) and closed."""
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def snakemake_jobs(res: subprocess.CompletedProcess) -> set[str]:
    """The rules of the jobs a Snakemake run planned (from its job-stats table)."""
    import re

    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, flags=re.M))
    return set(jobs) - {"total", "job"}
