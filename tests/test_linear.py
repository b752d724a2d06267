"""The batched Bartlett sampler of Wishart sample covariances shared by the linear cases."""

from __future__ import annotations

import numpy as np

from twostage.cases._linear import covariance_draws


def test_bartlett_draws_have_the_wishart_moments():
    """S ~ W_d(Sigma, n)/n: E S = Sigma and Var S_ij = (Sigma_ij^2 + Sigma_ii Sigma_jj)/n,
    entrywise within 5 Monte Carlo standard errors over 4000 replicates, for a non-diagonal
    Sigma; each replicate's draw depends only on its own generator."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((4, 4))
    sigma = g @ g.T / 4 + 0.5 * np.eye(4)
    n, r = 12, 4000
    rngs = [np.random.default_rng([7, i]) for i in range(r)]
    s = covariance_draws(sigma, n, rngs)
    mean_se = np.sqrt((sigma**2 + np.outer(np.diag(sigma), np.diag(sigma))) / n / r)
    assert np.all(np.abs(s.mean(axis=0) - sigma) < 5 * mean_se)
    var = s.var(axis=0, ddof=1)
    expected = (sigma**2 + np.outer(np.diag(sigma), np.diag(sigma))) / n
    # the variance of a sample variance: its s.e. is estimated from the fourth moments
    dev = (s - s.mean(axis=0)) ** 2
    var_se = dev.std(axis=0, ddof=1) / np.sqrt(r)
    assert np.all(np.abs(var - expected) < 5 * var_se)
    again = covariance_draws(sigma, n, [np.random.default_rng([7, i]) for i in (5, 3)])
    np.testing.assert_array_equal(again, s[[5, 3]])
    small = covariance_draws(sigma, 2, [np.random.default_rng(1)])  # size < d: the rows
    assert np.linalg.matrix_rank(small[0]) == 2


def _run(study: dict):
    from twostage import run_study

    return run_study({**study, "ks_bootstrap": 0}, "s")


def test_downstream_only_baseline_has_its_exact_finite_n_mean():
    """OLS on the raw x (Gaussian design, d = 6, n = 30): Rep = Leak = 0 and
    E[n Var_base] = sigma^2 d n / (n - d - 1) exactly; checked within 4 Monte Carlo
    standard errors over 3000 replicates."""
    risk, th = _run(
        {
            "case": "factor",
            "replicates": 3000,
            "seed": 4,
            "sampling": "sufficient",
            "population": {"d": 6, "k": 2, "factor_strengths": [3.0, 1.0]},
            "n": 30,
            "alpha": 4.0,
        }
    )
    sigma2, d, n = float(th["noise_variance"][0]), 6, 30
    expected = sigma2 * d * n / (n - d - 1)
    mean, se = float(risk["mean_n_base"][0]), float(risk["se_n_base"][0])
    assert abs(mean - expected) < 4 * se, (mean, expected, se)
    beats = risk["beats_base"].values[0]
    assert set(np.unique(beats)) <= {0, 1}
    assert float(risk["p_beats_base"][0]) == beats.mean()


def test_monte_carlo_crossing_brackets_the_theoretical_alpha0():
    """The alpha where the paired mean of n(R_base - R_twostage) changes sign, with its
    +-2 s.e. interval (400 replicates per alpha, n = 2e4 so m >= 1000), contains
    alpha0 = E||L(Z)||^2 / (sigma^2 (d - k)) of the numerical limit (factor, d = 8, k = 2)."""
    from twostage.plots import crossing

    risk, th = _run(
        {
            "case": "factor",
            "replicates": 400,
            "seed": 11,
            "sampling": "sufficient",
            "population": {"d": 8, "k": 2, "factor_strengths": [3.0, 1.0]},
            "n": 20000,
            "grid": {"alpha": [0.05, 0.1, 0.2, 0.3, 0.5, 1.0]},
        }
    )
    alpha0 = float(th["alpha0"][0])
    np.testing.assert_allclose(th["alpha0"].values, alpha0)  # one model: one alpha0
    ac, lo, hi = crossing(
        th["alpha_eff"].values, risk["mean_gain_base"].values, risk["se_gain_base"].values
    )
    assert lo <= alpha0 <= hi, (alpha0, ac, lo, hi)
    assert hi / lo < 1.3  # the interval is informative
