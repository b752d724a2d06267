"""Numerical trouble is counted and said: per-replicate flags (rank-deficient fits, failed
convergence), the per-point regime diagnostic, the study key ``flagged: keep | drop``,
and the warning at the end of a run."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import snakemake

from twostage import run_point
from twostage.stages import SUMMARISED, flag_report, summary_table

FACTOR = {"d": 10, "k": 2, "factor_strengths": [3.0, 1.0], "n": 1000, "alpha": 2}


def test_a_point_far_from_its_regime_is_marked_and_a_regular_one_is_not():
    """A factor of strength 1e-6 makes the limit's E||L||^2 huge (its eigengap is ~0)
    while the finite-m error stays O(1): the ratio of the Monte Carlo mean of n Rep to the
    limit's mean is ~1e-3, far outside 1 +- 0.25 and its s.e. The regular point's ratio is
    within 3 s.e. of 1 or within the tolerance (300 replicates: s.e. ~ 0.08 of the mean)."""
    weak = run_point("factor", {**FACTOR, "factor_strengths": [3.0, 1e-6]}, replicates=300,
                     ks_bootstrap=0)["risk"]  # fmt: skip
    assert weak["off_regime"].values[0] == 1 and weak["regime_ratio"].values[0] < 0.01
    (line,) = flag_report(weak)
    assert "not yet asymptotic" in line and weak["point_id"].values[0] in line
    fine = run_point("factor", FACTOR, replicates=300, ks_bootstrap=0)["risk"]
    ratio, se = fine["regime_ratio"].values[0], fine["regime_ratio_se"].values[0]
    assert fine["off_regime"].values[0] == 0 and abs(ratio - 1) < max(0.25, 3 * se)
    assert flag_report(fine) == []


def test_rank_deficient_replicates_are_counted_and_dropped_on_request():
    """n = 1 < d_eff = k = 2: every downstream fit is rank-deficient (rank Sigma_n = 1)."""
    params = {**FACTOR, "n": 1, "alpha": 200}
    keep = run_point("factor", params, replicates=20, ks_bootstrap=0)["risk"]
    assert keep["n_rank_deficient"].values[0] == 20 and keep["n_flagged"].values[0] == 20
    assert keep["rank_deficient"].values.all() and keep.attrs["flagged"] == "keep"
    assert keep["n_used"].values[0] == 20 and np.isnan(keep["mean_n_rep_unflagged"].values[0])
    drop = run_point("factor", params, replicates=20, ks_bootstrap=0, flagged="drop")["risk"]
    assert drop["n_used"].values[0] == 0 and np.isnan(drop["mean_scaled_excess_risk"].values[0])
    # the means over every replicate are still reported, equal to keep's
    for v in SUMMARISED:
        assert drop[f"mean_{v}_all"].values[0] == keep[f"mean_{v}"].values[0]
    assert "20 of 20 replicates flagged (20 rank deficient; dropped from" in flag_report(drop)[0]


def test_non_converged_em_is_flagged_and_both_means_are_reported():
    """The mixture's EM capped at 14 iterations (3 of these 12 replicates need more):
    replicates that did not converge are
    counted (n_not_converged), the summary with 'keep' averages all and reports the
    unflagged mean beside; 'drop' swaps them. Same replicates, same numbers."""
    params = {"n": 2000, "alpha": 1, "em_max_iter": 14}
    keep = run_point("gmm", params, replicates=12, ks_bootstrap=0)["risk"]
    drop = run_point("gmm", params, replicates=12, ks_bootstrap=0, flagged="drop")["risk"]
    bad = int(keep["n_not_converged"].values[0])
    assert 0 < bad < 12 and keep["n_flagged"].values[0] >= bad
    flagged = keep["flagged"].values[0]
    x = keep["scaled_excess_risk"].values[0]
    assert keep["mean_scaled_excess_risk"].values[0] == pytest.approx(x.mean(), rel=1e-12)
    assert keep["mean_scaled_excess_risk_unflagged"].values[0] == pytest.approx(
        x[~flagged].mean(), rel=1e-12
    )
    assert drop["mean_scaled_excess_risk"].values[0] == pytest.approx(x[~flagged].mean(), rel=1e-12)
    assert drop["mean_scaled_excess_risk_all"].values[0] == pytest.approx(x.mean(), rel=1e-12)
    assert drop["n_used"].values[0] == 12 - keep["n_flagged"].values[0]
    table = summary_table(keep)
    assert {"n_flagged", "n_not_converged", "n_rank_deficient", "off_regime"} <= set(table)


@pytest.mark.workflow
def test_the_run_ends_with_a_warning_naming_the_flagged_point(tmp_path):
    """A Snakemake run whose study has a point far from its regime says so at the end,
    in the risk log and in summary.csv (off_regime = 1)."""
    study = {
        "case": "factor",
        "replicates": 40,
        "shard_size": 40,
        "ks_bootstrap": 0,
        "n": 200,
        "alpha": 2,
        "population": {"d": 6, "k": 2},
        "grid": {"factor_strengths": [[3.0, 1.0], [3.0, 1e-6]]},
    }
    cfg = tmp_path / "flags.yaml"
    cfg.write_text(yaml.safe_dump({"studies": {"flags": study}}))
    res = snakemake(tmp_path, "results/flags/risk.nc", "--cores", "2", "--configfile", str(cfg))
    out = res.stdout + res.stderr
    warned = [ln for ln in out.splitlines() if "not yet asymptotic" in ln]
    assert len(warned) == 1 and "study flags, point" in warned[0], out[-3000:]
    log = (tmp_path / "results/flags/logs/risk.log").read_text()
    assert "warning: study flags" in log and "not yet asymptotic" in log
