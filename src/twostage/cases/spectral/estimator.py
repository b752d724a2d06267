"""Spectral case: the empirical loss and its batched multi-start Newton minimisation.

``L_m(M) = -2 <M, S+> + vec(M)^T T vec(M)`` over ``M = W W^T`` (W = A^T, d x k); the
population loss is ``L(M) = -2 tr(M Sigma_plus) + tr(M Sigma M Sigma)`` (Lemma H.1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ...linalg import sym
from ...optim import newton

#: Seed of the fixed perturbation directions of the extra starts when no per-replicate
#: streams are given (the same for every replicate, so results do not depend on shards).
_START_SEED = 20260605
#: Relative size of the perturbation of the extra starts.
_START_SPREAD = 0.5
#: Eigenvalues of the Hessian in A below this (relative) are the O(k) gauge directions.
_GAUGE_RTOL = 1e-10


# ---------------------------------------------------------------------------- losses
def empirical_loss(m: np.ndarray, s_plus: np.ndarray, t_hat: np.ndarray) -> np.ndarray:
    """``L_m(M) = -2 <M, S+> + vec(M)^T T vec(M)``, batched over leading axes."""
    v = m.reshape(*m.shape[:-2], -1)
    tv = np.einsum("...ij,...j->...i", t_hat, v)
    return -2.0 * np.einsum("...ij,...ij->...", m, s_plus) + np.einsum("...i,...i->...", v, tv)


def population_loss(truth: Mapping[str, np.ndarray], m: np.ndarray) -> np.ndarray:
    """``L(M) = -2 tr(M Sigma_plus) + tr(M Sigma M Sigma)`` (Lemma H.1), batched."""
    sigma, sp = truth["Sigma_pre"], truth["Sigma_plus"]
    ms = m @ sigma
    return -2.0 * np.einsum("...ij,ji->...", m, sp) + np.einsum("...ij,...ji->...", ms, ms)


def excess_population_loss(truth: Mapping[str, np.ndarray], m: np.ndarray) -> np.ndarray:
    """``L(M) - L(M*)`` without cancellation: ``<grad L(M*), D> + tr(D Sigma D Sigma)``,
    ``D = M - M*`` (exact, L is quadratic)."""
    sigma, sp, m_star = truth["Sigma_pre"], truth["Sigma_plus"], truth["M_star"]
    grad = 2.0 * (sigma @ m_star @ sigma - sp)
    delta = m - m_star
    ds = delta @ sigma
    return np.einsum("...ij,ij->...", delta, grad) + np.einsum("...ij,...ji->...", ds, ds)


def _objective(
    w: np.ndarray, s_plus: np.ndarray, t_hat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Loss at ``M = W W^T`` and the symmetric Euclidean gradient G in M."""
    m = w @ np.swapaxes(w, -1, -2)
    d = m.shape[-1]
    v = m.reshape(len(m), d * d)
    tv = np.einsum("bij,bj->bi", t_hat, v)
    f = -2.0 * np.einsum("bij,bij->b", m, s_plus) + np.einsum("bi,bi->b", v, tv)
    g = -2.0 * s_plus + 2.0 * sym(tv.reshape(len(m), d, d))
    return f, g


def _hessian_in_a(w: np.ndarray, t_hat: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Hessian of ``f(W) = L_m(W W^T)`` in row-major vec(W) coordinates:
    ``2 J^T T J + 2 G kron I_k`` with ``J = d vec(M) / d vec(W)``."""
    b, d, k = w.shape
    eye_d, eye_k = np.eye(d), np.eye(k)
    jac = np.einsum("pi,bqa->bpqia", eye_d, w) + np.einsum("bpa,qi->bpqia", w, eye_d)
    jac = jac.reshape(b, d * d, d * k)
    curv = (g[:, :, None, :, None] * eye_k[None, None, :, None, :]).reshape(b, d * k, d * k)
    h = 2.0 * np.swapaxes(jac, -1, -2) @ t_hat @ jac + 2.0 * curv
    return sym(h)


def minimise(
    s_plus: np.ndarray,
    t_hat: np.ndarray,
    w0: np.ndarray,
    gtol: float = 1e-12,
    max_iter: int = 100,
) -> dict[str, np.ndarray]:
    """Batched saddle-free Newton with backtracking on ``f(W) = L_m(W W^T)``, W d x k
    (:func:`twostage.optim.newton`).

    The Newton direction uses ``|eigenvalues|`` of the Hessian in W and drops the k(k-1)/2
    gauge directions ``W Omega`` (Omega skew) of the O(k) orbit, to which the gradient is
    orthogonal (eigenvalues below ``_GAUGE_RTOL`` of the largest). A replicate stops when
    ``||grad_W f||_F <= gtol`` (converged), when no step decreases the loss beyond
    round-off (stalled), or after ``max_iter`` iterations.

    Returns
    -------
    dict with ``w`` (B, d, k), ``objective`` (B,), ``grad_norm`` (B,), ``n_iter`` (B,)
    and ``converged`` (B,) bool.
    """
    nb, d, k = np.shape(w0)

    def value(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _objective(x.reshape(-1, d, k), s_plus[idx], t_hat[idx])[0]

    def derivatives(x: np.ndarray, idx: np.ndarray, hessian: bool) -> tuple:
        w = x.reshape(-1, d, k)
        f, g = _objective(w, s_plus[idx], t_hat[idx])
        grad = (2.0 * g @ w).reshape(len(w), -1)
        return f, grad, _hessian_in_a(w, t_hat[idx], g) if hessian else None

    x0 = np.reshape(w0, (nb, d * k))
    res = newton(x0, value, derivatives, gtol, max_iter, _GAUGE_RTOL, "spectral Newton")
    return {"w": res.pop("x").reshape(nb, d, k), **res}


def spectral_start(s_plus: np.ndarray, t_hat: np.ndarray, k: int) -> np.ndarray:
    """Start ``W0 = U_k diag(t)^{1/2}`` from the top-k eigenvectors U_k of S+, with the
    scales t minimising L_m over ``M = U_k diag(t) U_k^T`` (a k x k linear system
    ``Q t = s``, ``Q_ij = (u_i kron u_i)^T T (u_j kron u_j)``, s the top eigenvalues);
    non-positive scales are replaced by 1e-3 times the largest."""
    lam, vec = np.linalg.eigh(s_plus)
    lam, u = lam[..., ::-1][..., :k], vec[..., ::-1][..., :k]
    d = u.shape[-2]
    uu = np.einsum("bpi,bqi->bipq", u, u).reshape(len(u), k, d * d)
    q = np.einsum("bip,bpq,bjq->bij", uu, t_hat, uu)
    t = (np.linalg.pinv(q, hermitian=True) @ lam[..., None])[..., 0]  # Q is a Gram matrix
    floor = 1e-3 * np.maximum(np.abs(t).max(axis=-1, keepdims=True), 1e-300)
    t = np.where(t > floor, t, floor)
    return u * np.sqrt(t)[..., None, :]


def canonical_representative(w: np.ndarray) -> np.ndarray:
    """Deterministic representative of the orbit of each W: ``U_k diag(s)`` from the SVD
    ``W = U S V^T`` (so its columns are scaled eigenvectors of ``M = W W^T``), with the
    largest-magnitude entry of every column positive (scikit-learn's ``svd_flip``)."""
    u, s, _ = np.linalg.svd(w, full_matrices=False)
    rep = u * s[..., None, :]
    idx = np.argmax(np.abs(rep), axis=-2)[..., None, :]
    signs = np.sign(np.take_along_axis(rep, idx, axis=-2))
    signs[signs == 0] = 1.0
    return rep * signs


# ---------------------------------------------------------------------------- geometry


def starts(
    s_plus: np.ndarray,
    t_hat: np.ndarray,
    k: int,
    n_starts: int,
    rngs: Sequence[np.random.Generator] | None = None,
) -> np.ndarray:
    """Starts of shape (R, n_starts, d, k): the spectral start, then the spectral start
    plus random perturbations of relative size 0.5 (Frobenius), drawn from each
    replicate's stream ``rngs[r]``; without ``rngs``, fixed directions (the same for
    every replicate) are used."""
    w0 = spectral_start(s_plus, t_hat, k)
    r, d, _ = w0.shape
    out = np.empty((r, n_starts, d, k))
    out[:, 0] = w0
    if n_starts > 1:
        shape = (n_starts - 1, d, k)
        if rngs is None:
            fixed = np.random.default_rng(_START_SEED).standard_normal(shape)
            dirs = np.broadcast_to(fixed, (r, *shape)).copy()
        else:
            if len(rngs) != r:
                raise ValueError(f"expected {r} random streams (one per replicate)")
            dirs = np.array([rng.standard_normal(shape) for rng in rngs])
        dirs /= np.linalg.norm(dirs, axis=(-2, -1), keepdims=True)
        size = _START_SPREAD * np.linalg.norm(w0, axis=(-2, -1))
        out[:, 1:] = w0[:, None] + size[:, None, None, None] * dirs
    return out
