"""Spectral case: the geometry and the ingredients of the limit (App. H).

The limit is computed from first principles on the tangent space of the fixed-rank PSD
manifold at M* with the *Riemannian* Hessian (Euclidean Hessian ``2 Sigma H Sigma`` plus the
Weingarten term of the normal gradient ``2 (Sigma M* Sigma - Sigma_plus)``), which the
paper's Cor. H.14 / Cor. 6.3 omit; the printed closed form and the corrected one are
reported alongside.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...linalg import psd_sqrt, sym
from ...manifolds import FixedRankPSD
from .._linear import population_fit


def canonical_section(m: np.ndarray, u_star: np.ndarray, k: int) -> np.ndarray:
    """The local section of App. H.1, as a representative ``s(M)^T`` (d x k), batched:
    ``B = U*^T P U*``, ``U = P U* B^{-1/2}``, ``Lambda = U^T M U``,
    ``s(M) = Lambda^{1/2} U^T`` (P the projector onto range(M)), so ``s^T s = M`` and
    ``s(M*) = Lambda*^{1/2} U*^T``."""
    w, v = np.linalg.eigh(sym(m))
    top = v[..., -k:]
    p = top @ np.swapaxes(top, -1, -2)
    b = np.swapaxes(u_star, -1, -2) @ p @ u_star
    bw, bv = np.linalg.eigh(sym(b))
    # B is singular only when range(M) is orthogonal to a direction of range(M*) (far away)
    b_inv_half = (bv / np.sqrt(np.clip(bw, 1e-300, None))[..., None, :]) @ np.swapaxes(bv, -1, -2)
    u = p @ u_star @ b_inv_half
    lam = sym(np.swapaxes(u, -1, -2) @ m @ u)
    return u @ psd_sqrt(lam)


def projector_derivative(geo: FixedRankPSD, xi: np.ndarray) -> np.ndarray:
    """Lemma H.15 with Sigma_down = I: derivative of the projector onto range(M) at M*
    along a tangent vector xi: ``U2 (G / Delta) U1^T + U1 (G / Delta)^T U2^T`` with
    ``G = U2^T xi U1`` and ``Delta_ai = lambda_i - 0`` (M* has rank k)."""
    g = geo.u2.T @ xi @ geo.u1 / geo.eigenvalues[None, :]
    t = geo.u2 @ g @ geo.u1.T
    return t + t.T


def population_residual(
    truth: Mapping[str, np.ndarray], rep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Population fit of f* on ``phi = rep^T x``, x ~ N(0, I): residual ``(I - P) m*``
    (P the projector onto range(rep)), ``Sigma = rep^T rep``, its pseudo-inverse, theta."""
    m_star = truth["m_star"]
    return population_fit(np.eye(len(m_star)), m_star, np.swapaxes(rep, -1, -2))


def score_covariance(
    sigma: np.ndarray, sigma_plus: np.ndarray, m: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """Exact covariance of the scores ``<grad l(M; z), H_i>`` for jointly Gaussian
    ``(x, x+)`` (covariance ``[[S, S+], [S+, S]]``) and an independent ``x- ~ N(0, S)``.

    With ``s_H = -2 a_H + 2 b_H``, ``a_H = x^T H x+``, ``b_H = (x^T M x-)(x^T H x-)``,
    Isserlis' theorem gives (our derivation; it agrees with Prop. H.11)
    ``Cov(a1, a2) = tr(H1 S H2 S) + tr(H1 S+ H2 S+)``,
    ``Cov(a1, b2) = tr(K2 S H1 S+) + tr(K2 S+ H1 S)`` with ``K = M S H``,
    ``Cov(b1, b2) = tr(K1 S) tr(K2 S) + 2 tr(K1 S K2 S) + tr(Q S) tr(H1 S H2 S)
    + 4 tr(H1 S H2 S Q S)`` with ``Q = M S M``.

    Parameters
    ----------
    directions : ndarray of shape (q, d, d), symmetric

    Returns
    -------
    ndarray of shape (q, q)
    """
    s, sp = sigma, sigma_plus
    h = np.asarray(directions)
    hs = h @ s  # H S
    hsp = h @ sp  # H S+
    k_ = m @ s @ h  # K = M S H
    q = m @ s @ m
    tr_ks = np.einsum("iab,ba->i", k_, s)
    hshs = np.einsum("iab,jba->ij", hs, hs)  # tr(H1 S H2 S)
    c_aa = hshs + np.einsum("iab,jba->ij", hsp, hsp)
    # C_ab[i, j] = tr(K_j S H_i S+) + tr(K_j S+ H_i S)
    ks, ksp = k_ @ s, k_ @ sp
    c_ab = np.einsum("jab,iba->ij", ks, hsp) + np.einsum("jab,iba->ij", ksp, hs)
    qs = q @ s
    c_bb = (
        np.outer(tr_ks, tr_ks)
        + 2.0 * np.einsum("iab,jba->ij", ks, ks)
        + np.trace(qs) * hshs
        + 4.0 * np.einsum("iab,jbc,ca->ij", hs, hs, qs)
    )
    return sym(4.0 * (c_aa - c_ab - c_ab.T + c_bb))


def per_sample_scores(
    m: np.ndarray, directions: np.ndarray, x: np.ndarray, xplus: np.ndarray, xminus: np.ndarray
) -> np.ndarray:
    """Scores ``<grad l(M; z_j), H_i> = -2 x^T H x+ + 2 (x^T M x-)(x^T H x-)``, shape
    (rows, q) (for Monte Carlo checks of :func:`score_covariance`)."""
    a = np.einsum("ra,iab,rb->ri", x, directions, xplus)
    xmx = np.einsum("ra,ab,rb->r", x, m, xminus)
    b = np.einsum("ra,iab,rb->ri", x, directions, xminus)
    return -2.0 * a + 2.0 * xmx[:, None] * b


# ---------------------------------------------------------------------------- the case


def closed_forms(truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Weights (one per j = 1..d-k) of the block-diagonal closed forms (App. H.7):
    printed (H.39, Cor. 6.3) ``(2/b_j) sum_i beta_i^2 (1 + tau + lambda_i^2)/lambda_i``
    and corrected (the Riemannian Hessian adds the eigengap factor (1 - mu_j/lambda_i),
    and Var(Z12) is 4x smaller than printed)
    ``(1/(2 b_j)) sum_i beta_i^2 lambda_i (1 + tau + lambda_i^2)/(lambda_i - mu_j)^2``;
    and the per-entry variances of ``sqrt(m) B_hat`` (off-diagonal block), printed
    ``2 (1 + tau + lambda_i^2)/(a_i b_j)`` and corrected
    ``(1 + tau + lambda_i^2)/(2 a_i b_j (1 - mu_j/lambda_i)^2)``."""
    k = truth["A"].shape[1]
    diag = np.diag(truth["Sigma_pre"])
    a, b = diag[:k], diag[k:]
    lam, mu, beta = truth["lambda"], truth["mu"], truth["beta"]
    tau = float(np.sum(lam**2))
    core = 1.0 + tau + lam**2  # (k,)
    printed = (2.0 / b) * np.sum(beta**2 * core / lam)
    gap = lam[None, :] - mu[:, None]  # (d-k, k)
    corrected = np.sum(beta**2 * lam * core / gap**2, axis=1) / (2.0 * b)
    return {
        "printed": np.broadcast_to(printed, b.shape).copy(),
        "corrected": corrected,
        "offdiag_printed": 2.0 * core[None, :] / (a[None, :] * b[:, None]),
        "offdiag_corrected": core[None, :]
        / (2.0 * a[None, :] * b[:, None] * (1.0 - mu[:, None] / lam[None, :]) ** 2),
    }
