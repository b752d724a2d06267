"""The default workflow through the Snakemake SLURM executor plugin (marked ``hpc``).

Needs a SLURM cluster: CI starts a single-node one with ``tests/hpc/slurm-local.sh``.
Without ``sbatch`` the tests are skipped, unless TWOSTAGE_REQUIRE_SLURM=1 (set by
``.ci/run``), which turns the skip into a failure so that CI always exercises SLURM.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

import pytest
import xarray as xr
from conftest import ROOT, TINY, TINY_AGGREGATES, env, load_nc, snakemake

pytestmark = pytest.mark.hpc

if shutil.which("sbatch") is None:
    reason = (
        "no sbatch on PATH: the SLURM tests need a cluster (tests/hpc/slurm-local.sh starts one)"
    )
    if os.environ.get("TWOSTAGE_REQUIRE_SLURM") == "1":
        raise RuntimeError(f"TWOSTAGE_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason, allow_module_level=True)

SLURM = (
    "--workflow-profile",
    str(ROOT / "profiles/slurm"),
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
)
LOCAL_RULES = {"all", "figures"}
STAGE_RULES = {"simulate", "pretrain", "align", "downstream", "theory", "risk", "plot"}


def _config(tmp_path):
    cfg = tmp_path / "hpc.yaml"
    # one point in two shards: 2 shard jobs, 1 theory, risk, plot
    text = TINY.read_text()
    cfg.write_text(text.replace("shard_size: 25", "shard_size: 30").replace("[50, 400]", "[400]"))
    return cfg


@pytest.fixture(scope="module")
def local_risk(tmp_path_factory):
    """The local reference run, of the aggregates only (as the cancel-and-rerun test; the
    figures' and errata's SLURM jobs are covered by the first test)."""
    work = tmp_path_factory.mktemp("local")
    snakemake(work, *TINY_AGGREGATES, "--cores", "2", "--configfile", str(_config(work)))
    return load_nc(work / "results/tiny/risk.nc"), load_nc(work / "results/tiny/theory.nc")


def _submissions(text: str) -> list[tuple[str, str]]:
    """(SLURM job id, rule or group) of every job the plugin submitted."""
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\S+?)/", text)
    return [(jid, what) for jid, what in found]


def test_every_stage_runs_as_a_slurm_job_with_identical_results(tmp_path, local_risk):
    res = snakemake(tmp_path, *SLURM, "--configfile", str(_config(tmp_path)))
    subs = _submissions(res.stdout + res.stderr)
    kinds = {what for _, what in subs}
    # one job per batch of shards (1 point x 2 shards: a batch per shard index), one theory
    # job, risk, plot, and the run's errata table (provenance is a local rule)
    assert kinds == {
        "group_shard_align_downstream_pretrain_simulate",
        "rule_theory",
        "rule_risk",
        "rule_plot",
        "rule_errata",
    }, subs
    assert [w for _, w in subs].count("group_shard_align_downstream_pretrain_simulate") == 2
    covered = {
        r for w in kinds for r in w.removeprefix("group_shard_").removeprefix("rule_").split("_")
    }
    assert covered == STAGE_RULES | {"errata"}, covered
    risk, theory = local_risk
    xr.testing.assert_equal(load_nc(tmp_path / "results/tiny/risk.nc"), risk)
    xr.testing.assert_equal(load_nc(tmp_path / "results/tiny/theory.nc"), theory)


def test_cancelled_job_then_rerun_finishes_with_identical_results(tmp_path, local_risk):
    cmd = [
        shutil.which("snakemake", path=env()["PATH"]),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        *TINY_AGGREGATES,
        *SLURM,
        "--configfile",
        str(_config(tmp_path)),
    ]
    first = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env()
    )
    cancelled = None
    deadline = time.monotonic() + 300
    while cancelled is None and time.monotonic() < deadline and first.poll() is None:
        running = subprocess.run(
            ["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True
        )
        ids = running.stdout.split()
        if ids:
            cancelled = ids[0]
            subprocess.run(["scancel", cancelled], check=True)
        time.sleep(0.5)
    out, _ = first.communicate(timeout=600)
    assert cancelled is not None, "no SLURM job was seen running\n" + out[-3000:]
    assert first.returncode != 0, "the run survived the cancelled job\n" + out[-3000:]
    again = snakemake(tmp_path, *TINY_AGGREGATES, *SLURM, "--configfile", str(_config(tmp_path)))
    assert _submissions(again.stdout + again.stderr), "the re-run submitted nothing"
    # no corrupt or half-written file: every netCDF opens, no temporary file is left
    for path in (tmp_path / "results").rglob("*.nc"):
        load_nc(path)
    assert not list((tmp_path / "results").rglob(".*.tmp"))
    risk, theory = local_risk
    xr.testing.assert_equal(load_nc(tmp_path / "results/tiny/risk.nc"), risk)
    xr.testing.assert_equal(load_nc(tmp_path / "results/tiny/theory.nc"), theory)
