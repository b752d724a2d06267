"""Mixture case: the instance and the subspace-aware features (paper (6.3)-(6.4)).

``S(U) = sum_i (u_i - u_bar)(u_i - u_bar)^T``, ``r* = rank S(U*)``, ``P_U`` the projector
onto the top-r* eigenspace of ``S(U)`` (orthonormal basis ``Q_U``, d x r*), projected
responsibilities ``pi_i(x; U) = softmax_i(<P u_i, P x> - |P u_i|^2 / 2)`` and
``psi_U(x) = (pi_1 P(x - u_1), pi_1, ..., pi_K P(x - u_K), pi_K)`` in R^{K(d+1)}; the
reduced coordinates ``psi~_U(x) = (pi_i Q_U^T (x - u_i), pi_i)_i`` in R^{K(r*+1)} satisfy
``psi_U = B_U psi~_U`` with ``B_U`` of orthonormal columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .em import LOG2E

#: Relative eigenvalue size below which S(U*) is singular (defines r* = rank S(U*)).
RANK_RTOL = 1e-9
#: Rows per chunk of the sweeps over a sample (:func:`residual_sums`, :func:`feature_map`):
#: a chunk's features are formed and reduced while in cache, never the whole N x K(r+1)
#: matrix. Fixed: the sums' round-off depends on it (never change it).
SWEEP_ROWS = 8192


# ---------------------------------------------------------------------------- instance
def true_centers(params: Mapping[str, Any]) -> np.ndarray:
    """U* of shape (K, d): ``params['centers']`` or ``separation * I_{K,d}``."""
    k, d = int(params["K"]), int(params["d"])
    if params.get("centers") is not None:
        return np.array(params["centers"], dtype=float).reshape(k, d)
    return float(params["separation"]) * np.eye(k, d)


def true_theta(k: int, d: int, norm: float) -> np.ndarray:
    """theta* in R^{K(d+1)}: block i (= (theta_i, b_i)) proportional to (1/i) 1_{d+1},
    normalised to ``norm`` (paper App. K; the authors' code uses norm 10)."""
    theta = np.repeat(1.0 / np.arange(1, k + 1), d + 1)
    return norm * theta / np.linalg.norm(theta)


def scatter_rank(centers: np.ndarray) -> int:
    """r* = numerical rank of S(U) (eigenvalues above ``RANK_RTOL`` times the largest)."""
    c = centers - centers.mean(axis=0)
    s = np.linalg.svd(c, compute_uv=False) ** 2
    return int(np.sum(s > RANK_RTOL * s.max())) if s.max() > 0 else 0


# ---------------------------------------------------------------------------- features
def gate_basis(centers: np.ndarray, r: int) -> np.ndarray:
    """Orthonormal basis Q_U of the top-r eigenspace of S(U), shape (..., d, r)."""
    c = centers - centers.mean(axis=-2, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return np.swapaxes(vt[..., :r, :], -1, -2)


def _softmax(logits: np.ndarray, axis: int = -1, base2: bool = False) -> np.ndarray:
    """Softmax along ``axis``, computed in place in ``logits`` (which it returns); with
    ``base2`` the logits are in base-2 units (``2^l`` normalised: ``exp2`` is the cheaper
    exponential in numpy)."""
    logits -= logits.max(axis=axis, keepdims=True)
    (np.exp2 if base2 else np.exp)(logits, out=logits)
    logits /= logits.sum(axis=axis, keepdims=True)
    return logits


def responsibilities(x: np.ndarray, centers: np.ndarray, q: np.ndarray | None) -> np.ndarray:
    """Projected responsibilities (6.3) ``softmax_i(<Pu_i, Px> - |Pu_i|^2/2)``, or the full
    posterior when ``q`` is None. x of shape (..., N, d), centers (..., K, d); returns
    (..., N, K)."""
    if q is None:
        xp, up = x, centers
    else:
        xp, up = x @ q, centers @ q
    logits = xp @ np.swapaxes(up, -1, -2)
    logits -= 0.5 * np.sum(up**2, axis=-1)[..., None, :]
    return _softmax(logits)


def features_t(x: np.ndarray, centers: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced features, transposed (feature-major, the fast layout): psi~ of shape
    (K (r + 1), N) and pi of shape (K, N), for x (N, d), centers (K, d), q (d, r). The
    projected data are formed feature-major by one GEMM (``Q^T X^T``), the logits in base-2
    units (one GEMM with ``log2(e) U Q``)."""
    xq = q.T @ x.T  # (r, N), C-contiguous
    uq = centers @ q  # (K, r)
    logits = (LOG2E * uq) @ xq
    logits -= (0.5 * LOG2E) * np.sum(uq**2, axis=-1)[:, None]
    pi = _softmax(logits, axis=0, base2=True)
    k, r = uq.shape
    psi = np.empty((k, r + 1, xq.shape[1]))
    np.subtract(xq[None], uq[:, :, None], out=psi[:, :r])
    psi[:, :r] *= pi[:, None, :]
    psi[:, r] = pi
    return psi.reshape(k * (r + 1), -1), pi


def feature_map(x: np.ndarray, centers: np.ndarray, q: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``<coef, psi~_U(x)>`` for each row of x (N,), by chunks of :data:`SWEEP_ROWS` rows."""
    out = np.empty(len(x))
    for a in range(0, len(x), SWEEP_ROWS):
        psi, _ = features_t(x[a : a + SWEEP_ROWS], centers, q)
        out[a : a + SWEEP_ROWS] = coef @ psi
    return out


def residual_sums(
    x: np.ndarray, centers: np.ndarray, q: np.ndarray, f: np.ndarray, beta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """``sum psi~ psi~^T``, ``sum psi~ g`` and ``sum g^2`` over the rows of x, with
    ``g = f - psi~^T beta`` and psi~ the reduced features of ``centers`` (basis q), in one
    sweep by chunks of :data:`SWEEP_ROWS` rows."""
    p = len(centers) * (q.shape[1] + 1)
    gram, psi_g, g2 = np.zeros((p, p)), np.zeros(p), 0.0
    for a in range(0, len(x), SWEEP_ROWS):
        psi, _ = features_t(x[a : a + SWEEP_ROWS], centers, q)
        g = f[a : a + SWEEP_ROWS] - beta @ psi
        gram += psi @ psi.T
        psi_g += psi @ g
        g2 += g @ g
    return gram, psi_g, float(g2)


def features(x: np.ndarray, centers: np.ndarray, r: int) -> np.ndarray:
    """The ambient feature map (6.4), shape (N, K (d + 1)), written literally (used to
    check the reduced coordinates)."""
    q = gate_basis(centers, r)
    p = q @ q.T
    pi = responsibilities(x, centers, q)
    z = (x[:, None, :] - centers) @ p
    psi = np.concatenate([pi[..., None] * z, pi[..., None]], axis=-1)
    return psi.reshape(len(x), -1)


def reduce_theta(theta: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """``B_U^T theta`` for an ambient coefficient vector of length K(d+1)."""
    blocks = theta.reshape(k, -1)
    return np.concatenate([blocks[:, :-1] @ q, blocks[:, -1:]], axis=1).ravel()


def embed_theta(coef: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """``B_U coef``: reduced coefficients of length K(r+1) to ambient R^{K(d+1)}."""
    blocks = coef.reshape(k, -1)
    return np.concatenate([blocks[:, :-1] @ q.T, blocks[:, -1:]], axis=1).ravel()
