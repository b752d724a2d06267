"""Exact risk of min-norm OLS on linear features ``phi(x) = F x`` for Gaussian designs.

Shared by the case studies whose representation is linear (factor model, spectral
pre-training): with ``x ~ N(0, Sigma_x)``, ``f*(x) = w*^T x`` and the downstream design
entering only through ``S_n = X^T X / n``, the exact conditional risk decomposition of
Prop. B.1 is

* population fit: ``Sigma = F Sigma_x F^T``, ``theta = Sigma^+ F Sigma_x w*``, residual
  ``r = w* - F^T theta`` (``e(x) = r^T x``), ``Rep = r^T Sigma_x r``;
* ``Sigma_n = F S_n F^T``, ``theta_e = Sigma_n^+ F S_n r``, ``Leak = theta_e^T Sigma theta_e``;
* ``Var = sigma^2 tr(Sigma Sigma_n^+) / n``.

Pseudo-inverses and ``d_eff_n = rank Sigma_n`` share numpy's rank tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..linalg import pinv_psd, sym
from ._base import Variables

C, F, F_ = "component", "feature", "feature_"


def covariance_draws(
    sigma_x: np.ndarray, size: int, rngs: Sequence[np.random.Generator]
) -> np.ndarray:
    """Uncentred sample covariances of ``size`` draws of N(0, Sigma_x), one per generator,
    shape (R, d, d): exact ``W_d(Sigma_x, size) / size`` by the Bartlett decomposition
    ``L A A^T L^T`` (L the Cholesky factor of Sigma_x; A lower triangular with
    ``A_ii^2 ~ chi2(size - i)``, i = 0..d-1, and standard normal entries below the diagonal)
    when ``size >= d``, else the ``size`` Gaussian rows themselves (a singular Wishart).
    Each replicate draws its d chi-squares, then its d(d-1)/2 normals, from its own
    generator; the products run batched. The cost does not grow with ``size``."""
    d = sigma_x.shape[0]
    chol = np.linalg.cholesky(sigma_x)
    identity = np.array_equal(sigma_x, np.eye(d))
    if size < d:
        s = np.empty((len(rngs), d, d))
        for i, rng in enumerate(rngs):
            z = rng.standard_normal((size, d))
            z = z if identity else z @ chol.T
            s[i] = z.T @ z / size
        return s
    rows, cols = np.tril_indices(d, -1)
    dof = size - np.arange(d)
    chi = np.empty((len(rngs), d))
    normal = np.empty((len(rngs), len(rows)))
    for i, rng in enumerate(rngs):  # per replicate, from its own stream: d + d(d-1)/2 draws
        chi[i] = rng.chisquare(dof)
        normal[i] = rng.standard_normal(len(rows))
    a = np.zeros((len(rngs), d, d))
    a[:, np.arange(d), np.arange(d)] = np.sqrt(chi)
    a[:, rows, cols] = normal
    if not identity:
        a = chol @ a
    s = a @ np.swapaxes(a, -1, -2)
    s /= size
    return s


def isotropic_design(
    d: int, size: int, rngs: Sequence[np.random.Generator], sampling: str
) -> Variables:
    """A downstream design x ~ N(0, I_d) of ``size`` rows per replicate: the rows
    (``x_down``, raw) or the exact Wishart draw of their covariance (``S_down``)."""
    if sampling == "raw":
        x = np.empty((len(rngs), size, d))
        for i, rng in enumerate(rngs):
            x[i] = rng.standard_normal((size, d))
        return {"x_down": (("replicate", "sample", F), x, {"long_name": "downstream design"})}
    return {
        "S_down": (
            ("replicate", F, F_),
            covariance_draws(np.eye(d), size, rngs),
            {"long_name": "downstream design uncentred sample covariance (exact Wishart)"},
        )
    }


def design_covariance(design: Mapping[str, np.ndarray], tag: str = "down") -> np.ndarray:
    """``S = X^T X / rows`` of a design given raw (``x_<tag>``) or as ``S_<tag>``."""
    if f"S_{tag}" in design:
        return design[f"S_{tag}"]
    x = design[f"x_{tag}"]
    return np.swapaxes(x, -1, -2) @ x / x.shape[-2]


def population_fit(
    sigma_x: np.ndarray, w_star: np.ndarray, feat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Population least-squares fit of ``f*(x) = w*^T x`` on the features ``F x``.

    Parameters
    ----------
    sigma_x : ndarray of shape (d, d)
    w_star : ndarray of shape (d,)
    feat : ndarray of shape (..., k, d)

    Returns
    -------
    residual : ndarray of shape (..., d), r with ``e(x) = r^T x``
    sigma : ndarray of shape (..., k, k), ``F Sigma_x F^T``
    sigma_pinv : ndarray of shape (..., k, k)
    theta : ndarray of shape (..., k)
    """
    sigma = sym(feat @ sigma_x @ np.swapaxes(feat, -1, -2))
    sigma_pinv, _ = pinv_psd(sigma)
    theta = (sigma_pinv @ (feat @ (sigma_x @ w_star))[..., None])[..., 0]
    residual = w_star - (np.swapaxes(feat, -1, -2) @ theta[..., None])[..., 0]
    return residual, sigma, sigma_pinv, theta


def risk_variables(
    sigma_x: np.ndarray,
    w_star: np.ndarray,
    sigma2: float,
    feat: np.ndarray,
    s_n: np.ndarray,
    n: int,
    rep_name: str = "representation error Rep(Omega_hat)",
) -> Variables:
    """``coef``, ``rep``, ``leak``, ``var``, ``d_eff_n`` per replicate (see module doc)."""
    residual, sigma, _, theta = population_fit(sigma_x, w_star, feat)
    rep = np.einsum("ri,ij,rj->r", residual, sigma_x, residual)
    sigma_n = sym(feat @ s_n @ np.swapaxes(feat, -1, -2))
    sigma_n_pinv, rank_n = pinv_psd(sigma_n)
    theta_e = (sigma_n_pinv @ feat @ s_n @ residual[..., None])[..., 0]
    leak = np.einsum("ri,rij,rj->r", theta_e, sigma, theta_e)
    var = float(sigma2) / n * np.einsum("rij,rji->r", sigma, sigma_n_pinv)
    return {
        "coef": (
            ("replicate", C),
            theta + theta_e,
            {"long_name": "min-norm OLS coefficient averaged over label noise"},
        ),
        "rep": (("replicate",), rep, {"long_name": rep_name}),
        "leak": (("replicate",), leak, {"long_name": "leakage term Leak_n(Omega_hat)"}),
        "var": (("replicate",), var, {"long_name": "variance term sigma^2 tr(Sigma Sigma_n^+)/n"}),
        "d_eff_n": (("replicate",), rank_n.astype(np.int64), {"long_name": "rank Sigma_n"}),
    }


def baseline_variables(
    sigma_x: np.ndarray, w_star: np.ndarray, sigma2: float, s_n: np.ndarray, n: int
) -> Variables:
    """The downstream-only baseline for linear f*: min-norm OLS on the raw x (d_base = d),
    i.e. :func:`risk_variables` with the identity as features. The features hold f*
    exactly (residual 0), so ``rep`` = ``leak`` = 0 and ``var = sigma^2 tr(Sigma_x S_n^+)/n``
    (``E[n var] = sigma^2 d n / (n - d - 1)`` for a Gaussian design). When every ``S_n`` is
    positive definite (n >= d, almost surely) ``S_n^+ = S_n^-1`` and the trace comes from
    one batched solve, a few times cheaper than the eigendecompositions of the general
    path, which serves the rank-deficient designs (n < d)."""
    r, d = s_n.shape[0], s_n.shape[-1]
    if n >= d:
        try:
            np.linalg.cholesky(s_n)  # every S_n positive definite, else the general path
            trace = np.einsum("rii->r", np.linalg.solve(s_n, np.broadcast_to(sigma_x, s_n.shape)))
            zero = np.zeros(r)
            return {
                "rep": (("replicate",), zero, {"long_name": "Rep of the baseline (0)"}),
                "leak": (("replicate",), zero.copy(), {"long_name": "Leak of the baseline (0)"}),
                "var": (
                    ("replicate",),
                    float(sigma2) / n * trace,
                    {"long_name": "variance term sigma^2 tr(Sigma_x S_n^-1)/n"},
                ),
            }
        except np.linalg.LinAlgError:
            pass
    eye = np.broadcast_to(np.eye(d), s_n.shape)
    out = risk_variables(sigma_x, w_star, sigma2, eye, s_n, n, "Rep of the baseline (0)")
    return {k: out[k] for k in ("rep", "leak", "var")}
