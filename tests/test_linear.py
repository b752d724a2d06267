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
