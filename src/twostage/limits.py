"""Generic limit machinery of Theorem 5.1: V, G_L and the generalized chi-square law.

For a pre-training M-estimator on a descriptor manifold, with orthonormal tangent
coordinates at the truth,

* ``V = H^{-1} S H^{-1}``: H the Riemannian Hessian of the population loss, S the
  covariance of the Riemannian score (manifold CLT, paper (4.2));
* ``G_L[i, j] = <L(b_i), L(b_j)>_{L^2(mu_down)}`` for the first-order residual map
  ``L(v) = d/dt e_{R(t v)}`` at t = 0, computed here by differentiating the case's own
  population residual (the same code that computes Rep in the simulation) along a
  retraction R;
* ``||L(Z)||^2 = sum_l nu_l chi2_1`` with ``nu = eig(V^{1/2} G_L V^{1/2})`` and mean
  ``tr(V G_L)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .linalg import psd_sqrt, sym

#: Relative size below which a generalized chi-square weight is numerical zero.
WEIGHT_RTOL = 1e-9


def pad_weights(weights: np.ndarray, size: int) -> np.ndarray:
    """Weights sorted in decreasing order and padded with zeros to ``size`` terms (a
    generalized chi-square is unchanged by zero weights; a case's weight vectors then
    share one ``term`` dimension)."""
    out = np.zeros(size)
    out[: len(weights)] = np.sort(weights)[::-1]
    return out


def sandwich(hessian: np.ndarray, score_cov: np.ndarray) -> np.ndarray:
    """``V = H^{-1} S H^{-1}`` (symmetrised), raising if H is singular."""
    cond = np.linalg.cond(hessian)
    if not np.isfinite(cond) or cond > 1e12:
        raise np.linalg.LinAlgError(
            f"Hessian of the population loss is singular on the tangent space (cond {cond:.3g})"
        )
    hinv_s = np.linalg.solve(hessian, score_cov)
    return sym(np.linalg.solve(hessian, hinv_s.T))


def directional_derivatives(
    fun: Callable[[np.ndarray], np.ndarray],
    basis: np.ndarray,
    retract: Callable[[np.ndarray], np.ndarray],
    step: float,
) -> np.ndarray:
    """``J[i] = d/dt fun(retract(t b_i))`` at t = 0 for every basis direction.

    Central differences with one Richardson extrapolation (error O(step^4)).

    Returns
    -------
    ndarray of shape (len(basis), *fun(...).shape)
    """

    def central(h: float, b: np.ndarray) -> np.ndarray:
        return (fun(retract(h * b)) - fun(retract(-h * b))) / (2.0 * h)

    return np.array([(4.0 * central(step / 2, b) - central(step, b)) / 3.0 for b in basis])


def gram(jacobian: np.ndarray) -> np.ndarray:
    """Gram matrix of the rows of a Jacobian whose columns are isometric L^2 coordinates."""
    j = jacobian.reshape(jacobian.shape[0], -1)
    return sym(j @ j.T)


def gchisq_weights(v: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Weights of ``||L(Z)||^2``, Z ~ N(0, V): eigenvalues of ``V^{1/2} G V^{1/2}``,
    in decreasing order; eigenvalues below ``WEIGHT_RTOL * max`` are set to 0.

    G_L comes from finite differences accurate to about 1e-10 relative, so eigenvalues of
    that relative size are numerical noise of a rank-deficient product; left in, they would
    also make the exact CDF (Ruben's series) needlessly long."""
    r = psd_sqrt(v)
    w = np.linalg.eigvalsh(sym(r @ g @ r))[::-1]
    return np.where(w > WEIGHT_RTOL * max(w[0], 0.0), w, 0.0)


def hessian_at_zero(fun: Callable[[np.ndarray], float], dim: int, step: float) -> np.ndarray:
    """Hessian of ``fun`` at the origin of R^dim: second central differences along
    ``e_i + e_j`` and ``e_i - e_j`` (polarization) with one Richardson extrapolation
    (error O(step^4)). With ``fun = f o R`` for a retraction R at a critical point of f,
    this is the Riemannian Hessian of f there (the retraction's second-order term pairs
    with the gradient, which vanishes)."""
    f0 = fun(np.zeros(dim))

    def second(v: np.ndarray) -> float:
        def d2(h: float) -> float:
            return (fun(h * v) + fun(-h * v) - 2.0 * f0) / h**2

        return (4.0 * d2(step / 2) - d2(step)) / 3.0

    eye = np.eye(dim)
    h = np.empty((dim, dim))
    for i in range(dim):
        for j in range(i, dim):
            h[i, j] = h[j, i] = 0.25 * (second(eye[i] + eye[j]) - second(eye[i] - eye[j]))
    return h
