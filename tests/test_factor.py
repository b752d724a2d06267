"""Factor-model case study: estimator, exact risk, invariance, and the limit theory.

Statistical tests use fixed seeds; every tolerance is stated where it is used. KS tests
compare with ``scipy.stats.kstwo.ppf(0.99, R)``, the 1% critical value for R replicates.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression

from twostage import run_point, stages
from twostage.api import study_spec
from twostage.cases.factor import CASE, features
from twostage.config import expand_study
from twostage.groups import random_orthogonal
from twostage.manifolds import FixedRankPSD

SMALL = {"d": 8, "k": 2, "factor_strengths": [3.0, 0.8], "beta": [1.0, -0.6], "sigma_nu2": 0.5}


def point(params, replicates=200, sampling="sufficient", seed=1):
    spec = study_spec("factor", params, replicates=replicates, sampling=sampling, seed=seed)
    (p,) = expand_study("t", spec)
    return p


def flat(p) -> dict:
    """The point's parameters as one flat mapping (as run_point takes them)."""
    return {**p.population, **p.estimator, "n": p.n, "alpha": p.alpha}


def crit(r: int) -> float:
    return float(stats.kstwo.ppf(0.99, r))


def test_ppca_is_a_critical_point_of_the_empirical_likelihood():
    """The closed form (Lemma I.1) zeroes the Riemannian gradient of
    L_m(M) = 1/2 [log det(I + M) + tr(S_m (I + M)^{-1})] and beats nearby points."""
    p = point({**SMALL, "n": 50, "alpha": 4.0}, replicates=5)
    sim = stages.simulate(p, 0, 5)
    pre = stages.pretrain(sim)
    for s, m_hat in zip(sim["S_pre"].values, pre["descriptor"].values, strict=True):
        a = np.linalg.inv(np.eye(8) + m_hat)
        grad = 0.5 * (a - a @ s @ a)
        geo = FixedRankPSD(m_hat, 2)
        assert np.linalg.norm(geo.project(grad)) < 1e-12

        def loss(m, s=s):
            return 0.5 * (
                np.linalg.slogdet(np.eye(8) + m)[1] + np.trace(s @ np.linalg.inv(np.eye(8) + m))
            )

        rng = np.random.default_rng(0)
        for _ in range(5):
            xi = geo.project(rng.standard_normal((8, 8))) * 1e-3
            assert loss(geo.retract(xi)) > loss(m_hat)


def test_exact_risk_decomposition_matches_a_direct_least_squares_computation():
    """Rep + Leak equals the excess risk of the noise-free min-norm OLS fit (scikit-learn's
    LinearRegression on the raw design); Var equals sigma^2 tr(Sigma (Phi^T Phi)^{-1})."""
    p = point({**SMALL, "n": 40, "alpha": 2.0}, replicates=6, sampling="raw")
    out = run_point("factor", flat(p), replicates=6, sampling="raw", seed=p.seed, ks_bootstrap=0)
    tr = stages.truth_of(out["downstream"])
    reps = out["pretrain"]["representation"].values
    for i, x in enumerate(out["simulate"]["x_down"].values):
        f = features(reps[i])
        phi = x @ f.T
        fit = LinearRegression(fit_intercept=False).fit(phi, x @ tr["w_star"])
        err = tr["w_star"] - f.T @ fit.coef_
        bias = err @ tr["Sigma_x"] @ err
        var = tr["sigma2"] * np.trace(f @ tr["Sigma_x"] @ f.T @ np.linalg.inv(phi.T @ phi))
        d = out["downstream"].isel(replicate=i)
        np.testing.assert_allclose(float(d.rep + d.leak), bias, rtol=1e-9)
        np.testing.assert_allclose(float(d["var"]), var, rtol=1e-9)
        np.testing.assert_allclose(d["coef"].values, fit.coef_, rtol=1e-8, atol=1e-12)


def test_orbit_invariance_of_every_risk_component():
    """Lemma 4.1: A -> A Q, Q Haar on O(k), changes n Rep, n Leak, n Var by < 1e-10."""
    p = point(
        {
            **SMALL,
            "d": 10,
            "k": 3,
            "factor_strengths": [4.0, 2.0, 1.0],
            "beta": None,
            "n": 300,
            "alpha": 2.0,
        },
        500,
    )
    sim = stages.simulate(p, 0, 500)
    al = stages.align(stages.pretrain(sim))
    down = stages.downstream(al, sim)
    assert float(down["orbit_invariance_error"].values.max()) < 1e-10
    rng = np.random.default_rng(5)
    rep = al["representation"].values
    q = np.array([random_orthogonal(3, rng) for _ in range(len(rep))])
    tr, design = stages.truth_of(al), {"S_down": sim["S_down"].values}
    base = CASE.downstream(tr, rep, design, p.n)
    moved = CASE.downstream(tr, rep @ q, design, p.n)
    for term in ("rep", "leak", "var"):
        assert np.max(np.abs(p.n * (base[term][1] - moved[term][1]))) < 1e-10


@pytest.mark.statistical
def test_procrustes_aligned_eigenvectors_follow_andersons_clt():
    """m ||U_hat Q - U1||_F^2 -> sum_i (1 + s_i)/s_i^2 chi2_{d-k} (derivation in the README);
    2000 replicates at m = 2e4: KS below the 1% critical value."""
    params = {"d": 10, "k": 3, "factor_strengths": [4.0, 2.0, 1.0], "n": 10000, "alpha": 2.0}
    out = run_point("factor", params, replicates=2000, seed=3, ks_bootstrap=0)
    r = out["risk"]
    assert int(r["m"][0]) == 20000
    assert float(r["ks_eigvec_error"][0]) < crit(2000), float(r["ks_eigvec_error"][0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_numerical_limit_equals_corrected_closed_form(seed):
    """The limit from V and G_L (first principles) equals the corrected Corollary 6.4
    (the section-derivative term kept) to 1e-6 relative, in mean and in every weight."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(4, 12))
    k = int(rng.integers(1, min(d - 1, 4) + 1))
    params = {
        "d": d,
        "k": k,
        "factor_strengths": sorted(rng.uniform(0.3, 5.0, k).tolist(), reverse=True),
        "beta": rng.standard_normal(k).tolist(),
        "n": 100,
        "alpha": 1.0,
    }
    th = stages.theory(point(params, seed=seed))
    num, cor = th["limit_weights"].values, th["closed_form_corrected"].values
    np.testing.assert_allclose(num.sum(), cor.sum(), rtol=1e-6)
    np.testing.assert_allclose(num, cor, rtol=1e-6, atol=1e-6 * cor.max())
    assert not np.allclose(num.sum(), th["closed_form_printed"].values.sum(), rtol=1e-2)


@pytest.mark.statistical
def test_monte_carlo_matches_numerical_limit_and_rejects_printed_form():
    """m = 2e4, alpha = 2, 2000 replicates: KS(n Rep, limit) below the 1% critical value,
    KS(m Rep, printed Cor. 6.4) above it."""
    params = {**SMALL, "n": 10000, "alpha": 2.0}
    r = run_point("factor", params, replicates=2000, seed=11, ks_bootstrap=0)["risk"]
    c = crit(2000)
    assert float(r["ks_pre"][0]) < c, float(r["ks_pre"][0])
    assert float(r["ks_m_rep_corrected"][0]) < c
    assert float(r["ks_m_rep_printed"][0]) > c, float(r["ks_m_rep_printed"][0])


@pytest.mark.statistical
def test_variance_and_leakage_terms_along_the_n_grid():
    """For a Gaussian design Sigma_n ~ W_k(Sigma, n)/n, so exactly
    E[n Var] = sigma^2 k n/(n-k-1) and E[n Leak] = E[Rep] k n/(n-k-1) (the residual is
    independent of the features). Checked within 4 Monte Carlo s.e. at every n; hence
    n Var -> sigma^2 k (within 0.5% at n = 1e4) and n Leak -> 0."""
    k, reps = 2, 2000
    means = []
    for n in (100, 1000, 10000):
        out = run_point(
            "factor", {**SMALL, "n": n, "alpha": 2.0}, replicates=reps, seed=21, ks_bootstrap=0
        )
        d, sigma2 = out["risk"], float(out["theory"]["noise_variance"])
        factor = k * n / (n - k - 1)
        nvar = d["n_var"].values[0]
        assert abs(nvar.mean() - sigma2 * factor) < 4 * nvar.std() / np.sqrt(reps)
        diff = d["n_leak"].values[0] - d["rep"].values[0] * factor
        assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(reps)
        means.append((nvar.mean(), d["n_leak"].values[0].mean()))
    assert abs(means[-1][0] / (sigma2 * k) - 1) < 0.005
    assert means[0][1] > means[1][1] > means[2][1] and means[2][1] < 1e-3 * sigma2 * k


@pytest.mark.statistical
def test_raw_samples_and_sufficient_statistics_give_the_same_law():
    """Two-sample KS tests (1500 replicates each, independent streams): p-value > 0.01 for
    the total, m Rep and n Var."""
    params = {**SMALL, "n": 60, "alpha": 3.0}
    raw = run_point("factor", params, replicates=1500, sampling="raw", seed=5, ks_bootstrap=0)[
        "risk"
    ]
    suf = run_point(
        "factor", params, replicates=1500, sampling="sufficient", seed=5, ks_bootstrap=0
    )["risk"]
    for var in ("scaled_excess_risk", "m_rep", "n_var"):
        res = stats.ks_2samp(raw[var].values[0], suf[var].values[0])
        assert res.pvalue > 0.01, (var, res)
