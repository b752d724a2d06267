"""Mixture case: the limit (Fisher information, the residual map L and its Gram matrix).

The quotient (R^d)^K / S_K is locally Euclidean (discrete group), so the tangent
coordinates are the Kd entries of U and the retraction is U + v. The MLE is well specified:
``V = I(U*)^{-1}``. ``L(v) = -(I - Pi_{U*}) h_v`` with ``h_v = <theta*, D psi_U[v]>``
(Prop. G.23), computed analytically and checked against central differences of the
population residual itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np

from ...limits import directional_derivatives, gram
from ...linalg import pinv_psd, sym
from ...progress import Progress
from .features import _softmax, features_t
from .population import FISHER, fit_residual, population, stratified_sample

#: Rows per chunk in the Monte Carlo loops of the theory.
CHUNK = 8192
#: Groups of the jackknife standard error of E ||L(Z)||^2.
JACKKNIFE_GROUPS = 20

_LOG = logging.getLogger(__name__)


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


def _row_blocks(start: int, stop: int) -> list[tuple[int, int]]:
    """Consecutive row ranges of equal length (within one), at most ``CHUNK`` rows each,
    covering ``[start, stop)``."""
    parts = max(1, -(-(stop - start) // CHUNK))
    edges = np.linspace(start, stop, parts + 1).astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _blockdiag_rows(v: np.ndarray) -> np.ndarray:
    """(K, Kd) matrix whose row i holds ``v[i]`` (length d) in columns i d .. (i + 1) d."""
    k, d = v.shape
    out = np.zeros((k, k, d))
    out[np.arange(k), np.arange(k)] = v
    return out.reshape(k, k * d)


def _h_chunk(
    x: np.ndarray,
    centers: np.ndarray,
    vec: np.ndarray,
    r: int,
    theta_sp: np.ndarray,
    b: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """``h_v(x) = <theta*, D psi_U(x)[v]>`` at U* for all Kd coordinate directions v, and the
    reduced features at U*, on one chunk of points, feature-major.

    With ``z_i = x - u_i``, ``g_i = theta_i^T P z_i + b_i`` (so f* = sum pi_i g_i),
    ``rho_i = pi_i (g_i - f*)`` and the softmax arguments ``a_i = u_i^T P x - u_i^T P u_i/2``:
    ``h_v = sum_i rho_i D a_i[v] + sum_i pi_i theta_i^T DP[v] z_i - pi_j (P theta_j)_k``
    for v = E_jk, ``D a_i[v] = delta_ij (P z_j)_k + (DP[v] u_i)^T (x - u_i / 2)``. The
    terms in DP[v] x reduce, by the low rank of DP, to ``<M_v, a x_b^T + x_t b^T>`` with
    ``x_t = Q_t^T x``, ``x_b = Q_b^T x``, ``a = sum_i (rho_i Q_t^T u_i + pi_i Q_t^T theta_i)``
    and ``b`` the same with Q_b. Every term is linear in the per-point coordinates
    ``(xi, rho, pi, rho (x) x_t)`` with ``xi = a x_b^T + x_t b^T`` (r(d - r) numbers) and
    ``rho (x) x_t`` the products ``rho_j (x_t)_a`` (since ``(P z_j)_k = (Q_t x_t)_k -
    (P u_j)_k``), so h is one matrix product of size Kd x (r(d - r) + 2K + Kr) x n with
    ``weights`` (built in :func:`residual_derivative_gram`).

    Returns ``[h; psi~]`` of shape (Kd + K(r+1), n) (h first).
    """
    n, d = x.shape
    k = len(centers)
    kd = k * d
    q = vec[:, :r]
    psi, pi = features_t(x, centers, q)  # (K(r+1), n), (K, n)
    xv = np.matmul(vec.T, x.T)  # (d, n): x_t then x_b
    xt, xb = xv[:r], xv[r:]
    tq = theta_sp @ q
    g = tq @ xt
    g += (b - np.sum(tq * (centers @ q), axis=-1))[:, None]  # g_i = <Q^T theta_i, Q^T z_i> + b_i
    f = np.sum(pi * g, axis=0)
    nxi = r * (d - r)
    lhs = np.empty((nxi + 2 * k + k * r, n))
    rho, pis = lhs[nxi : nxi + k], lhs[nxi + k : nxi + 2 * k]
    np.subtract(g, f, out=rho)
    rho *= pi
    pis[:] = pi
    ab = (np.concatenate([centers, theta_sp]) @ vec).T @ lhs[nxi : nxi + 2 * k]  # (d, n)
    for a in range(r):
        xi = lhs[a * (d - r) : (a + 1) * (d - r)]
        np.multiply(xb, ab[a], out=xi)
        xi += ab[r:] * xt[a]
    for j in range(k):
        np.multiply(xt, rho[j], out=lhs[nxi + 2 * k + j * r : nxi + 2 * k + (j + 1) * r])
    out = np.empty((kd + len(psi), n))
    np.matmul(weights.T, lhs, out=out[:kd])
    out[kd:] = psi
    return out


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
    The population sample is split into ``groups`` consecutive groups (for the jackknife),
    each processed in chunks of at most ``CHUNK`` rows: per chunk one matrix product gives
    h and one symmetric product ``[h; psi~] [h; psi~]^T`` (feature-major) all three sums.

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
    proj = q @ q.T
    # rows: the coordinates of xi = a x_b^T + x_t b^T, rho_i, pi_i, rho_i (x_t)_a
    weights = np.concatenate(
        [
            m.reshape(kd, r * (d - r)).T,
            -(ca + _blockdiag_rows(centers @ proj)),  # - rho_j (P u_j)_k
            -(ct + _blockdiag_rows(theta_sp @ proj)),  # - pi_j (P theta_j)_k
            np.kron(np.eye(k), q.T),  # rho_j (Q_t x_t)_k
        ]
    )
    p = k * (r + 1)
    sums = np.zeros((groups, kd + p, kd + p))
    edges = np.linspace(0, len(x), groups + 1).astype(int)
    progress = Progress("G_L sums", len(x), "population rows", logger=_LOG)
    for g in range(groups):
        for start, stop in _row_blocks(edges[g], edges[g + 1]):
            hp = _h_chunk(x[start:stop], centers, vec, r, theta_sp, b, weights)
            sums[g] += hp @ hp.T
            progress.update(stop)
    progress.done()
    hh = np.ascontiguousarray(sums[:, :kd, :kd])
    ph = np.ascontiguousarray(sums[:, kd:, :kd])
    pp = np.ascontiguousarray(sums[:, kd:, kd:])
    return hh, ph, pp, np.diff(edges)


def fisher_sums(
    truth: Mapping[str, np.ndarray], groups: int = JACKKNIFE_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums of the score outer products ``s s^T`` (s_i = pi_i^full (x - u_i)),
    and of ``E[pi_i] I - E[pi_i z_i z_i^T]`` (the block-diagonal part of the expected
    Hessian minus the score covariance), on the Fisher sample.

    Per chunk of at most ``CHUNK`` rows, feature-major: the scores s (Kd, n), one symmetric
    product ``s s^T``, and one product ``s x`` for ``sum_j pi_ij z_ij z_ij^T = sum_j s_ij
    x_j^T - (sum_j s_ij) u_i^T`` (z = x - u)."""
    centers = np.asarray(truth["centers"], dtype=float)
    k, d = centers.shape
    x = stratified_sample(truth, FISHER)
    ss = np.zeros((groups, k * d, k * d))
    cross = np.zeros((k * d, d))
    s_sum = np.zeros(k * d)
    mass = np.zeros(k)
    edges = np.linspace(0, len(x), groups + 1).astype(int)
    progress = Progress("Fisher sums", len(x), "Fisher rows", logger=_LOG)
    for g in range(groups):
        for start, stop in _row_blocks(edges[g], edges[g + 1]):
            xc = x[start:stop]
            xt = np.ascontiguousarray(xc.T)  # (d, n)
            logits = centers @ xt
            logits -= 0.5 * np.sum(centers**2, axis=-1)[:, None]
            pi = _softmax(logits, axis=0)  # full posterior, (K, n)
            s = np.empty((k, d, len(xc)))
            np.subtract(xt, centers[:, :, None], out=s)
            s *= pi[:, None, :]
            s = s.reshape(k * d, len(xc))
            ss[g] += s @ s.T
            cross += s @ xc
            s_sum += s.sum(axis=1)
            mass += pi.sum(axis=1)
            progress.update(stop)
    progress.done()
    extra = cross.reshape(k, d, d) - s_sum.reshape(k, d, 1) * centers[:, None, :]
    extra -= mass[:, None, None] * np.eye(d)
    return ss, -extra / len(x), np.diff(edges)


def _g_l(hh: np.ndarray, ph: np.ndarray, pp: np.ndarray, n: float) -> np.ndarray:
    """``G_L = (1/n) sum (I - Pi) h ((I - Pi) h)^T`` from sums over n points."""
    pinv, _ = pinv_psd(pp / n)
    return sym(hh / n - (ph / n).T @ pinv @ (ph / n))


def population_residual(truth: Mapping[str, np.ndarray], centers: np.ndarray) -> np.ndarray:
    """``e_U / sqrt(N)`` on the population sample: isometric coordinates of the population
    residual in L^2 of the sample (the function whose derivative is L)."""
    e = fit_residual(truth, centers)
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
