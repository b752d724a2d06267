"""The errata table and the LaTeX tables: computed from results, never typed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from twostage import run_study, stages
from twostage.tables import errata, latex, write_table


@pytest.fixture(scope="module")
def factor_study():
    """Factor model at m = 2e4 (sufficient statistics), 600 replicates."""
    return run_study(
        {
            "case": "factor",
            "replicates": 600,
            "seed": 9,
            "sampling": "sufficient",
            "population": {"d": 8, "k": 2, "factor_strengths": [3.0, 0.8]},
            "n": 10000,
            "alpha": 2.0,
            "ks_bootstrap": 0,
        },
        "f",
    )


def test_errata_rejects_the_printed_factor_form_and_accepts_ours(factor_study):
    """Cor. 6.4 as printed misses a factor Sigma*^-1: its law is rejected by the Monte Carlo
    (KS above the 1% critical value for 600 replicates); the corrected form equals the
    numerical limit and both are consistent with the Monte Carlo."""
    risk, th = factor_study
    table = errata([(risk, th)])
    (row,) = table.itertuples()
    assert row.Index == ("f", "factor Cor. 6.4 (I.14-I.17): law of m Rep")
    assert row.replicates == 600 and row.m == 20000
    assert row.ks_printed > row.ks_critical_01 > max(row.ks_corrected, row.ks_numerical)
    assert row.verdict == "printed rejected; corrected consistent; numerical consistent"
    np.testing.assert_allclose(row.corrected, row.numerical, rtol=1e-6)
    np.testing.assert_allclose(row.mc_mean, risk["mean_m_rep"].values[0])


def test_errata_uses_the_summaries_replicates_and_scipys_ks_distance(factor_study):
    """The errata's KS distances are scipy.stats.kstest's statistic, computed without
    importing scipy.stats (the job's heaviest import); its replicates are those the study's
    summaries use: under ``flagged: drop`` the unflagged ones, with the critical value
    risk.nc stores for them."""
    from scipy import stats

    from twostage.gchisq import GeneralizedChiSquare

    risk, th = factor_study
    x = risk["m_rep"].values[0]
    (row,) = errata([(risk, th)]).itertuples()
    for role, var in (("corrected", "closed_form_corrected"), ("numerical", "limit_weights")):
        law = GeneralizedChiSquare(th[var].values[0])
        assert getattr(row, f"ks_{role}") == stats.kstest(x, law.cdf).statistic
    assert row.ks_critical_01 == float(risk["ks_critical_01"][0]) == stats.kstwo.ppf(0.99, 600)

    dropped = risk.copy(deep=True)
    dropped.attrs["flagged"] = "drop"
    dropped["flagged"].values[0, :150] = True  # as if 150 replicates had been flagged
    dropped["ks_critical_01"].values[0] = stats.kstwo.ppf(0.99, 450)  # as summarise stores
    (row,) = errata([(dropped, th)]).itertuples()
    kept = x[150:]
    law = GeneralizedChiSquare(th["closed_form_corrected"].values[0])
    assert row.replicates == 450 and row.mc_mean == pytest.approx(kept.mean(), rel=1e-12)
    assert row.ks_corrected == stats.kstest(kept, law.cdf).statistic
    assert row.ks_critical_01 == stats.kstwo.ppf(0.99, 450)


def test_errata_sets_values_read_off_a_figure_against_our_limit():
    sw = xr.Dataset(
        {"mean_L2": ("point", [1.0, 2.0, 4.0])},
        coords={"x": ("point", [2.0, 3.0, 4.0])},
        attrs={"swept": "K", "study": "s", "case": "gmm"},
    )
    reference = {"label": "paper Fig. X", "K": [2, 4, 9], "mean_L2": [1.05, 3.0, 7.0]}
    table = errata([], [(sw, reference)])
    assert list(table["verdict"]) == [
        "agrees within 10% (paper / ours = 1.05)",
        "differs (paper / ours = 0.75)",
    ]  # K = 9 is not a point of ours: no row
    assert list(table["printed"]) == [1.05, 3.0] and list(table["numerical"]) == [1.0, 4.0]


def test_tables_are_written_as_csv_and_booktabs_latex(factor_study, tmp_path):
    risk, th = factor_study
    csv_path, tex_path = write_table(errata([(risk, th)]), tmp_path / "errata.csv")
    assert csv_path.read_text().startswith("study,quantity,")
    tex = tex_path.read_text()
    assert all(rule in tex for rule in ("\\toprule", "\\midrule", "\\bottomrule"))
    assert "Cor. 6.4" in tex and "printed rejected" in tex
    assert "\\toprule" in latex(stages.summary_table(risk))


def test_errata_sets_values_read_off_limit_curves_against_our_limit(factor_study):
    """A Monte Carlo study's reference values of the limit curves (median of the total and
    of the pre-training law, the variance step) against ours at the largest n."""
    from twostage.gchisq import GeneralizedChiSquare

    risk, th = factor_study
    sigma2_k = float(th["noise_variance"][0]) * 2
    w = th["limit_weights"].values[0] / float(th["alpha_eff"][0])
    median_pre = float(GeneralizedChiSquare(w).ppf(0.5))
    reference = {"label": "fig", "limit_var": [sigma2_k], "limit_median_pre": [2 * median_pre]}
    table = errata([(risk, th)], references={"f": reference})
    rows = table.loc["f"]
    assert rows.loc["fig: limit of n Var (sigma^2 d_eff)", "verdict"].startswith("agrees")
    row = rows.loc["fig: median of the limit of n Rep"]
    assert row["verdict"] == "differs (paper / ours = 2)"
    np.testing.assert_allclose(row["numerical"], median_pre)
