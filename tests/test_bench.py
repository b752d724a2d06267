"""The benchmark's quick mode runs and writes its files (no timing is asserted: these
machines are shared and noisy; the numbers live in the README)."""

from __future__ import annotations

import csv
import subprocess
import sys

from conftest import ROOT, env


def test_benchmark_quick_mode_writes_its_table_and_figure(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/run.py"), "--quick", "--no-workflow"]
        + ["--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    with open(tmp_path / "bench.csv") as fh:
        rows = list(csv.DictReader(fh))
    cases = {r["case"] for r in rows}
    assert {"factor", "gmm (EM)", "multitask (erm)"} <= cases and any(
        "spectral" in c for c in cases
    )
    assert {"naive", "raw", "exact", "floor", "required"} == {r["path"] for r in rows}
    assert {r["case"] for r in rows if r["path"] == "required"} == {"factor"}
    assert all(float(r["replicates_per_s"]) > 0 for r in rows)
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    assert "exact/floor" in res.stdout and "raw/naive" in res.stdout
    assert "exact/required" in res.stdout and "required/floor" in res.stdout
    with open(tmp_path / "startup.csv") as fh:
        jobs = list(csv.DictReader(fh))
    assert {j["stage"] for j in jobs} == {
        "pretrain --help",
        "simulate",
        "pretrain",
        "align",
        "downstream",
        "theory",
    }
    assert all(float(j["seconds"]) > 0 for j in jobs)
