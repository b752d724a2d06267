"""Mixture case: the limit (Fisher information, the residual map L and its Gram matrix).

The quotient (R^d)^K / S_K is locally Euclidean (discrete group), so the tangent
coordinates are the Kd entries of U and the retraction is U + v. The MLE is well specified:
``V = I(U*)^{-1}``. ``L(v) = -(I - Pi_{U*}) h_v`` with ``h_v = <theta*, D psi_U[v]>``
(Prop. G.23), computed analytically and checked against central differences of the
population residual itself.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...limits import directional_derivatives, gram
from ...linalg import pinv_psd, sym
from .features import features_reduced, responsibilities
from .population import FISHER, population, population_fit, stratified_sample

#: Rows per chunk in the Monte Carlo loops of the theory.
CHUNK = 8192
#: Groups of the jackknife standard error of E ||L(Z)||^2.
JACKKNIFE_GROUPS = 20


# ---------------------------------------------------------------------------- theory
def _eigen(centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = centers - centers.mean(axis=0)
    lam, vec = np.linalg.eigh(c.T @ c)
    return lam[::-1], vec[:, ::-1]


def projector_derivatives(centers: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of the gating projector: ``DP_U[E_jk] = Q_t M_jk Q_b^T + Q_b M_jk^T Q_t^T``
    for every coordinate direction (centre j, coordinate k) of U.

    With S = sum_i c_i c_i^T (c_i = u_i - u_bar), ``DS[E_jk] = e_k c_j^T + c_j e_k^T``, and
    the eigenprojector onto the top-r eigenspace moves by
    ``sum_{a <= r < b} (q_a^T DS q_b) / (lam_a - lam_b) (q_a q_b^T + q_b q_a^T)``.

    Returns
    -------
    vec : ndarray of shape (d, d), eigenvectors of S(U) (decreasing eigenvalues): Q_t is the
        first r columns, Q_b the others
    m : ndarray of shape (K, d, r, d - r), ``m[j, k] = M_jk``
    """
    lam, vec = _eigen(centers)
    top, bot = vec[:, :r], vec[:, r:]
    c = centers - centers.mean(axis=0)
    ct, cb = c @ top, c @ bot  # (K, r), (K, d - r)
    gap = lam[:r, None] - lam[None, r:]
    # m[j, k, a, b] = (q_a[k] c~_j[b] + c~_j[a] q_b[k]) / (lam_a - lam_b)
    m = (
        top[None, :, :, None] * cb[:, None, None, :] + ct[:, None, :, None] * bot[None, :, None, :]
    ) / gap
    return vec, m


def _h_chunk(
    x: np.ndarray,
    centers: np.ndarray,
    vec: np.ndarray,
    r: int,
    theta_sp: np.ndarray,
    b: np.ndarray,
    mflat: np.ndarray,
    ca: np.ndarray,
    ct: np.ndarray,
    ptheta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``h_v(x) = <theta*, D psi_U(x)[v]>`` at U* for all Kd coordinate directions v, and the
    reduced features at U*, on one chunk of points.

    With ``z_i = x - u_i``, ``g_i = theta_i^T P z_i + b_i`` (so f* = sum pi_i g_i),
    ``rho_i = pi_i (g_i - f*)`` and the softmax arguments ``a_i = u_i^T P x - u_i^T P u_i/2``:
    ``h_v = sum_i rho_i D a_i[v] + sum_i pi_i theta_i^T DP[v] z_i - pi_j (P theta_j)_k``
    for v = E_jk, ``D a_i[v] = delta_ij (P z_j)_k + (DP[v] u_i)^T (x - u_i / 2)``. The
    terms in DP[v] x reduce, by the low rank of DP, to ``<M_v, a x_b^T + x_t b^T>`` with
    ``x_t = Q_t^T x``, ``x_b = Q_b^T x``, ``a = sum_i (rho_i Q_t^T u_i + pi_i Q_t^T theta_i)``
    and ``b`` the same with Q_b: one matrix product of size n x r(d-r) x Kd.

    Returns (h of shape (n, Kd), psi~ of shape (n, K(r+1))).
    """
    n, d = x.shape
    k = len(centers)
    q = vec[:, :r]
    psi, pi = features_reduced(x, centers, q)
    xt, xb = x @ q, x @ vec[:, r:]
    ut, ub = centers @ q, centers @ vec[:, r:]
    pzq = xt[:, None, :] - ut  # (n, K, r): Q^T z_i
    g = np.einsum("nkr,kr->nk", pzq, theta_sp @ q) + b
    f = np.sum(pi * g, axis=1, keepdims=True)
    rho = pi * (g - f)
    h = ((rho[..., None] * pzq) @ q.T).reshape(n, k * d)  # rho_j (P z_j)_k
    at = rho @ ut + pi @ (theta_sp @ q)  # (n, r)
    ab = rho @ ub + pi @ (theta_sp @ vec[:, r:])  # (n, d - r)
    xi = at[:, :, None] * xb[:, None, :] + xt[:, :, None] * ab[:, None, :]
    h += xi.reshape(n, -1) @ mflat
    h -= rho @ ca + pi @ ct
    h -= (pi[..., None] * ptheta).reshape(n, k * d)
    return h, psi


def residual_derivative_gram(
    truth: Mapping[str, np.ndarray], groups: int = JACKKNIFE_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums for G_L by the analytic derivative (paper Prop. G.23).

    For any theta with ``T_{U*} theta = f*`` (here the ambient theta* itself),
    ``e_U = (I - Pi_U)(T_{U*} - T_U) theta`` exactly, hence
    ``L(v) = -(I - Pi_{U*}) h_v`` with ``h_v = <theta*, D psi_U[v]>`` (see
    :func:`_h_chunk`). This equals the implicit-function derivative
    ``-D psi[v]^T beta - psi^T D beta[v]``, ``D beta = Sigma^+ (Dc - D Sigma beta)``,
    without forming D beta; Pi_{U*} is the least-squares projection on the same sample.

    Returns
    -------
    hh : (G, Kd, Kd) sums of h h^T per group
    ph : (G, p, Kd) sums of psi~ h^T
    pp : (G, p, p) sums of psi~ psi~^T
    counts : (G,) rows per group
    """
    centers = np.asarray(truth["centers"], dtype=float)
    theta = np.asarray(truth["theta"], dtype=float)
    r = int(truth["rank_S"])
    k, d = centers.shape
    kd = k * d
    x, _ = population(truth)
    vec, m = projector_derivatives(centers, r)
    q = vec[:, :r]
    blocks = theta.reshape(k, d + 1)
    theta_sp, b = blocks[:, :d], blocks[:, d]
    dp = q @ m @ vec[:, r:].T
    dp = (dp + np.swapaxes(dp, -1, -2)).reshape(kd, d, d)  # DP[E_jk], flat over (j, k)
    ca = 0.5 * np.einsum("vab,ia,ib->iv", dp, centers, centers)  # u_i^T DP_v u_i / 2
    ct = np.einsum("vab,ia,ib->iv", dp, theta_sp, centers)  # theta_i^T DP_v u_i
    mflat = m.reshape(kd, -1).T  # (r (d - r), Kd)
    ptheta = theta_sp @ (q @ q.T)  # (K, d): P theta_i
    p = k * (r + 1)
    hh = np.zeros((groups, kd, kd))
    ph = np.zeros((groups, p, kd))
    pp = np.zeros((groups, p, p))
    edges = np.linspace(0, len(x), groups + 1).astype(int)
    for g in range(groups):
        for start in range(edges[g], edges[g + 1], CHUNK):
            xc = x[start : min(start + CHUNK, edges[g + 1])]
            h, psi = _h_chunk(xc, centers, vec, r, theta_sp, b, mflat, ca, ct, ptheta)
            hh[g] += h.T @ h
            ph[g] += psi.T @ h
            pp[g] += psi.T @ psi
    return hh, ph, pp, np.diff(edges)


def fisher_sums(
    truth: Mapping[str, np.ndarray], groups: int = JACKKNIFE_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums of the score outer products ``s s^T`` (s_i = pi_i^full (x - u_i)),
    and of ``E[pi_i] I - E[pi_i z_i z_i^T]`` (the block-diagonal part of the expected
    Hessian minus the score covariance), on the Fisher sample."""
    centers = np.asarray(truth["centers"], dtype=float)
    k, d = centers.shape
    x = stratified_sample(truth, FISHER)
    ss = np.zeros((groups, k * d, k * d))
    extra = np.zeros((k, d, d))
    edges = np.linspace(0, len(x), groups + 1).astype(int)
    for g in range(groups):
        for start in range(edges[g], edges[g + 1], CHUNK):
            xc = x[start : min(start + CHUNK, edges[g + 1])]
            pi = responsibilities(xc, centers, None)
            z = xc[:, None, :] - centers
            s = (pi[..., None] * z).reshape(len(xc), k * d)
            ss[g] += s.T @ s
            zt = np.swapaxes(z, 0, 1)  # (K, n, d)
            extra += np.swapaxes(pi.T[..., None] * zt, -1, -2) @ zt
            extra -= pi.sum(axis=0)[:, None, None] * np.eye(d)
    return ss, -extra / len(x), np.diff(edges)


def _g_l(hh: np.ndarray, ph: np.ndarray, pp: np.ndarray, n: float) -> np.ndarray:
    """``G_L = (1/n) sum (I - Pi) h ((I - Pi) h)^T`` from sums over n points."""
    pinv, _ = pinv_psd(pp / n)
    return sym(hh / n - (ph / n).T @ pinv @ (ph / n))


def population_residual(truth: Mapping[str, np.ndarray], centers: np.ndarray) -> np.ndarray:
    """``e_U / sqrt(N)`` on the population sample: isometric coordinates of the population
    residual in L^2 of the sample (the function whose derivative is L)."""
    e = population_fit(truth, centers)["residual"]
    return e / np.sqrt(len(e))


def finite_difference_gram(
    truth: Mapping[str, np.ndarray], step: float | None = None
) -> np.ndarray:
    """G_L by central differences (Richardson) of :func:`population_residual` along the Kd
    coordinate directions; cost Kd x 4 population fits."""
    centers = np.asarray(truth["centers"], dtype=float)
    k, d = centers.shape
    basis = np.eye(k * d).reshape(k * d, k, d)
    if step is None:
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.eye(k) * 1e300
        step = 1e-3 * float(dist.min())
    jac = directional_derivatives(
        lambda u: population_residual(truth, u), basis, lambda t: centers + t, step
    )
    return gram(jac)
