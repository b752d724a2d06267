"""Kill a run mid-study with SIGKILL, resume it as the README says, get the same results.

A run killed outright (SIGKILL to Snakemake and its jobs: the OOM killer, a closed
session, `kill -9`) has no chance to clean up. What must hold afterwards:

* no file under its final name is half-written (outputs are written to a temporary
  ``.<name>.*.tmp`` beside the output and renamed; such leftovers are allowed);
* the README's remedy works: rerun the same command; if Snakemake reports a locked
  directory, run it once with ``--unlock``, then again (Snakemake 9 leaves its lock files
  behind after a SIGKILL, so it does report it);
* the resumed run's ``risk.nc`` and ``theory.nc`` equal an uninterrupted run's, bit for bit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import ROOT, TINY, TINY_AGGREGATES, env, load_nc

pytestmark = pytest.mark.workflow

#: the README's run command after ``snakemake`` (Set-up: "Other entry points")
RUN = ("--cores", "all")
LOCKED = "Directory cannot be locked"
#: attributes that legitimately differ between two runs of the same study
VOLATILE = ("created", "git_commit")
POLL, TIMEOUT = 0.05, 300.0


def _config(path: Path) -> Path:
    """The tiny study cut to one point and two shards of 10 replicates: quick, and still
    several shard jobs to be killed in the middle of."""
    cfg = yaml.safe_load(TINY.read_text())
    (study,) = cfg["studies"].values()
    study.update(replicates=20, shard_size=10, grid={"n": [50]})
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cmd(workdir: Path, config: Path, *extra: str) -> list[str]:
    """The README's command for ``config``, run on this Snakefile in ``workdir``."""
    exe = shutil.which("snakemake", path=env()["PATH"])
    assert exe, "snakemake is not installed in this environment"
    return [exe, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)] + [
        *extra,
        *RUN,
        "--configfile",
        str(config),
    ]


class Procs:
    """Snakemake runs, each in its own process group; whatever is left is killed."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen:
        with log.open("w") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env(),
                cwd=ROOT,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def run(self, cmd: list[str], log: Path) -> tuple[int, str]:
        proc = self.start(cmd, log)
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(cmd)} still running after {TIMEOUT:.0f} s:\n{_tail(log)}")
        return rc, log.read_text()

    def kill_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                _killpg(proc.pid)
                proc.wait()


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text()[-chars:] if log.exists() else "(no log)"


def _survivors(pgid: int, workdir: Path) -> list[str]:
    """Live processes of the killed group, or working in ``workdir`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if state == "Z":  # dead, waiting to be reaped
                continue
            if int(group) == pgid or Path(os.readlink(entry / "cwd")).is_relative_to(workdir):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):  # gone meanwhile, or not ours to inspect
            continue
    return found


def _shard_outputs(results: Path) -> list[Path]:
    return [
        p
        for stage in ("pretrain", "align", "downstream")
        for p in results.glob(f"*/shards/batch*/{stage}/*.nc")
    ]


def _stable(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k not in VOLATILE}
    return ds


def test_killed_run_resumes_as_the_readme_says_with_identical_results(tmp_path, record_property):
    readme = (ROOT / "README.md").read_text()
    assert "snakemake --cores all --configfile" in readme and "--unlock" in readme
    config = _config(tmp_path / "study.yaml")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    procs = Procs()
    t0 = time.monotonic()
    timeline: list[str] = []

    def mark(what: str) -> None:
        timeline.append(f"{what} {time.monotonic() - t0:.1f} s")

    try:
        # A: uninterrupted, its aggregates only (figures are not compared); it runs beside
        # B's first attempt, on the same cores.
        run_a = procs.start(_cmd(a, config, *TINY_AGGREGATES), tmp_path / "a.log")

        # B: the README command, SIGKILLed (with all its jobs) in the middle of the study.
        run_b = procs.start(_cmd(b, config), tmp_path / "b1.log")
        results = b / "results"
        deadline = time.monotonic() + TIMEOUT
        while not _shard_outputs(results):
            if run_b.poll() is not None:
                pytest.fail(
                    f"the run ended (status {run_b.returncode}) before any shard output "
                    f"appeared, so it could not be killed mid-study:\n{_tail(tmp_path / 'b1.log')}"
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no shard output under {results} after {TIMEOUT:.0f} s:\n"
                    f"{_tail(tmp_path / 'b1.log')}"
                )
            time.sleep(POLL)
        _killpg(run_b.pid)
        run_b.wait()
        mark("killed at")
        assert not (results / "tiny/risk.nc").exists(), "killed too late: risk.nc was written"
        for _ in range(100):  # killed jobs are reaped by init: give it a moment
            left = _survivors(run_b.pid, b)
            if not left:
                break
            time.sleep(POLL)
        assert not left, f"processes survived the SIGKILL of the group: {left}"

        # Nothing under its final name is half-written; the writers' temporaries may remain.
        for nc in sorted(results.rglob("*.nc")):
            try:
                stage = load_nc(nc).attrs.get("stage")
            except Exception as exc:  # any failure to read is the finding
                pytest.fail(f"{nc.relative_to(b)} is unreadable after the kill: {exc!r}")
            assert stage, f"{nc.relative_to(b)} has no 'stage' attribute"
        for hidden in results.rglob(".*"):
            name = hidden.name
            if name == ".snakemake_timestamp":  # Snakemake's marker in a directory() output
                continue
            assert name.endswith(".tmp") and ".nc." in name, f"unexpected leftover {hidden}"
        leftovers = [p.name for p in results.rglob(".*.tmp")]

        # Resume exactly as the README says.
        rc, out = procs.run(_cmd(b, config), tmp_path / "b2.log")
        unlock_needed = rc != 0 and LOCKED in out
        if unlock_needed:
            mark("rerun refused (locked) at")
            rc_unlock, out_unlock = procs.run(_cmd(b, config, "--unlock"), tmp_path / "b3.log")
            assert rc_unlock == 0, out_unlock[-3000:]
            mark("unlocked at")
            rc, out = procs.run(_cmd(b, config), tmp_path / "b4.log")
        assert rc == 0, f"the resumed run failed:\n{out[-4000:]}"
        mark("resumed run done at")

        assert run_a.wait(timeout=TIMEOUT) == 0, _tail(tmp_path / "a.log")
        mark("uninterrupted run done at")
    finally:
        procs.kill_all()

    record_property("unlock_needed", unlock_needed)
    print(f"{'; '.join(timeline)}; tmp leftovers {leftovers}; --unlock needed: {unlock_needed}")
    assert (b / "results/tiny/figures").is_dir()
    for name in ("risk.nc", "theory.nc"):
        want = _stable(load_nc(a / "results/tiny" / name))
        got = _stable(load_nc(b / "results/tiny" / name))
        xr.testing.assert_identical(got, want)
        for var in [*want.data_vars, *want.coords]:  # bit for bit (NaN and -0.0 included)
            x, y = got[var].values, want[var].values
            same = x.tobytes() == y.tobytes() if x.dtype.kind in "fiucb" else np.array_equal(x, y)
            assert x.dtype == y.dtype and x.shape == y.shape and same, f"{name}: {var} differs"


def test_adding_replicates_reruns_only_the_new_shards(tmp_path):
    """Raising `replicates` from 20 to 30 (shards of 10): shards 0 and 1 and the limit are
    kept (same files, untouched), only shard 2's four jobs and the aggregation run, and the
    first 20 replicates of the new risk.nc equal the old ones bit for bit."""
    from conftest import snakemake

    config = _config(tmp_path / "study.yaml")
    snakemake(tmp_path, "results/tiny/risk.nc", "--configfile", str(config))
    old = load_nc(tmp_path / "results/tiny/risk.nc")
    kept = sorted((tmp_path / "results/tiny/shards").rglob("*.nc"))
    kept += sorted((tmp_path / "results/tiny/limits").rglob("*.nc"))
    assert len(kept) == 2 * 4 + 1  # two shards of four stages, and the point's limit
    stamps = {p: p.stat().st_mtime_ns for p in kept}

    cfg = yaml.safe_load(config.read_text())
    cfg["studies"]["tiny"]["replicates"] = 30
    config.write_text(yaml.safe_dump(cfg))
    plan = snakemake(tmp_path, "results/tiny/risk.nc", "-n", "--configfile", str(config)).stdout
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in plan.splitlines()
        if len(line.split()) == 2
        and line.split()[1].isdigit()
        and not line.endswith(":")
        and not line.split()[0].endswith(":")
    }
    want = {"simulate": 1, "pretrain": 1, "align": 1, "downstream": 1, "risk": 1, "total": 5}
    assert counts == want, plan[-2000:]
    snakemake(tmp_path, "results/tiny/risk.nc", "--configfile", str(config))
    assert {p: p.stat().st_mtime_ns for p in kept} == stamps
    new = load_nc(tmp_path / "results/tiny/risk.nc")
    assert new.sizes["replicate"] == 30
    for var in ("scaled_excess_risk", "n_rep", "n_var", "m_rep"):
        assert new[var].values[:, :20].tobytes() == old[var].values.tobytes(), var
