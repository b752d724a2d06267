"""The manifold of symmetric PSD matrices of fixed rank k, embedded in R^{d x d}.

Descriptors M = A A^T (factor model) or M = A^T A (spectral pre-training) live on
M_{d,k} = {M >= 0, rank M = k} with the Frobenius metric. This module provides what the
generic limit computation needs at a point M: an orthonormal basis of the tangent space,
the tangent projection, a retraction, and the Riemannian Hessian, i.e. the projected
Euclidean Hessian plus the Weingarten (curvature) term that the normal component of the
Euclidean gradient contributes (Absil, Mahony & Trumpf 2013; Vandereycken, Absil &
Vandewalle 2009).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .linalg import eigh_descending, sym


class FixedRankPSD:
    """Geometry of M_{d,k} at a base point ``M`` (a symmetric PSD matrix of rank ``k``)."""

    def __init__(self, base: np.ndarray, k: int):
        base = sym(np.asarray(base, dtype=float))
        d = base.shape[0]
        if not 1 <= k < d:
            raise ValueError(f"rank k must satisfy 1 <= k < d = {d}; got {k}")
        w, v = eigh_descending(base)
        if w[k - 1] <= 1e-12 * max(w[0], 1.0):
            raise ValueError(f"base point has rank < {k} (eigenvalue {k} is {w[k - 1]:.3g})")
        self.base, self.d, self.k = base, d, k
        self.eigenvalues = w[:k]
        self.u1, self.u2 = v[:, :k], v[:, k:]
        self.projector = self.u1 @ self.u1.T
        self.base_pinv = (self.u1 / self.eigenvalues) @ self.u1.T

    @property
    def dim(self) -> int:
        """Dimension k(k+1)/2 + k(d-k) of the tangent space."""
        return self.k * (self.k + 1) // 2 + self.k * (self.d - self.k)

    def tangent_basis(self) -> np.ndarray:
        """Frobenius-orthonormal basis of the tangent space, shape (dim, d, d).

        The first k(k+1)/2 elements move the eigenvalues and rotate within range(M)
        (``U1 E U1^T`` with E a unit symmetric matrix); the remaining k(d-k) tilt the range
        (``(U2 e_a e_i^T U1^T + U1 e_i e_a^T U2^T) / sqrt 2``), ordered by (i, a).
        """
        u1, u2, k = self.u1, self.u2, self.k
        basis = []
        for i in range(k):
            for j in range(i, k):
                e = np.zeros((k, k))
                e[i, j] = e[j, i] = 1.0 if i == j else 1.0 / np.sqrt(2.0)
                basis.append(u1 @ e @ u1.T)
        for i in range(k):
            for a in range(self.d - k):
                t = np.outer(u2[:, a], u1[:, i])
                basis.append((t + t.T) / np.sqrt(2.0))
        return np.array(basis)

    def project(self, z: np.ndarray) -> np.ndarray:
        """Orthogonal projection onto the tangent space: P Z + Z P - P Z P (Z symmetrised)."""
        z, p = sym(z), self.projector
        return p @ z + z @ p - p @ z @ p

    def retract(self, xi: np.ndarray) -> np.ndarray:
        """Metric-projection retraction: the best rank-k PSD approximation of M + xi."""
        w, v = eigh_descending(self.base + sym(xi))
        return (v[:, : self.k] * w[: self.k]) @ v[:, : self.k].T

    def section(self, m: np.ndarray) -> np.ndarray:
        """A representative ``A`` (d x k) with ``A A^T = m`` for m near the base point.

        The columns are the top-k eigenvectors scaled by the square roots of the eigenvalues,
        rotated by the Procrustes factor that aligns them with the base point's, so that the
        section is smooth through the base point.
        """
        from .groups import procrustes

        w, v = eigh_descending(m)
        a = v[:, : self.k] * np.sqrt(np.clip(w[: self.k], 0.0, None))
        a0 = self.u1 * np.sqrt(self.eigenvalues)
        return a @ procrustes(a, a0)

    def riemannian_hessian(
        self, egrad: np.ndarray, ehess: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Matrix of the Riemannian Hessian in :meth:`tangent_basis`, shape (dim, dim).

        ``Hess f(M)[xi] = P_T(D grad f(M)[xi]) + P_T(M^+ xi N + N xi M^+)`` with
        ``N = (I - P) grad f (I - P)`` the normal component of the Euclidean gradient.
        """
        basis = self.tangent_basis()
        perp = np.eye(self.d) - self.projector
        normal = perp @ sym(egrad) @ perp
        images = []
        for xi in basis:
            curvature = self.base_pinv @ xi @ normal + normal @ xi @ self.base_pinv
            images.append(self.project(ehess(xi) + curvature))
        h = np.einsum("iab,jab->ij", basis, np.array(images))
        return sym(h)
