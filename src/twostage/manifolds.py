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


class Grassmannian:
    """Geometry of the Grassmannian Gr(d, k) at a base point, embedded as the rank-k
    orthogonal projectors ``P`` in the symmetric d x d matrices with the Frobenius metric
    (the descriptor ``P = B B^T`` of a representation B with orthonormal columns, up to
    B -> B Q, Q in O(k)).

    Tangent vectors at P are ``xi = U2 X U1^T + U1 X^T U2^T`` (X of shape (d - k, k));
    geodesics are ``exp(t W) P exp(-t W)`` with ``W = [xi, P]``, whose acceleration
    ``2 (I - 2P) xi^2`` is normal: the second fundamental form is
    ``II(xi, eta) = (I - 2P)(xi eta + eta xi)``, so
    ``Hess f(P)[xi, eta] = <D grad f[xi], eta> + <grad f, (I - 2P)(xi eta + eta xi)>``
    with the Euclidean gradient and Hessian of any smooth extension of f.
    """

    def __init__(self, basis: np.ndarray):
        u1 = np.asarray(basis, dtype=float)
        d, k = u1.shape
        if not 1 <= k < d:
            raise ValueError(f"k must satisfy 1 <= k < d = {d}; got {k}")
        if not np.allclose(u1.T @ u1, np.eye(k), atol=1e-10):
            raise ValueError("the basis of the base point must have orthonormal columns")
        full = np.linalg.svd(u1, full_matrices=True)[0]
        self.d, self.k = d, k
        self.u1, self.u2 = u1, full[:, k:]
        self.projector = sym(u1 @ u1.T)

    @property
    def dim(self) -> int:
        """Dimension k(d - k)."""
        return self.k * (self.d - self.k)

    def tangent_basis(self) -> np.ndarray:
        """Frobenius-orthonormal basis ``(U2 e_a e_i^T U1^T + U1 e_i e_a^T U2^T) / sqrt 2``,
        ordered by (i, a) as the tilt directions of :class:`FixedRankPSD`; shape
        (dim, d, d). Its coordinates z relate to X by ``X = sum z_ia E_ai / sqrt 2``."""
        out = []
        for i in range(self.k):
            for a in range(self.d - self.k):
                t = np.outer(self.u2[:, a], self.u1[:, i])
                out.append((t + t.T) / np.sqrt(2.0))
        return np.array(out)

    def tangent_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(v, w)`` of shape (dim, d) with basis element l equal to
        ``(v_l w_l^T + w_l v_l^T) / sqrt 2`` (``v = u1_i``, ``w = u2_a``)."""
        d_k = self.d - self.k
        return np.repeat(self.u1.T, d_k, axis=0), np.tile(self.u2.T, (self.k, 1))

    def project(self, z: np.ndarray) -> np.ndarray:
        """Orthogonal projection onto the tangent space: ``P Z (I - P) + (I - P) Z P``."""
        z, p = sym(z), self.projector
        return p @ z + z @ p - 2.0 * p @ z @ p

    def retract(self, xi: np.ndarray) -> np.ndarray:
        """Projector onto the top-k eigenspace of ``P + xi`` (metric-projection retraction)."""
        _, v = eigh_descending(self.projector + sym(xi))
        top = v[:, : self.k]
        return top @ top.T

    def section(self, p: np.ndarray) -> np.ndarray:
        """A smooth local section ``B(P) = P U1 (U1^T P U1)^{-1/2}`` (orthonormal columns,
        ``B B^T = P``, ``B(P*) = U1``), the representative aligned with the base point."""
        b = p @ self.u1
        w, v = np.linalg.eigh(sym(self.u1.T @ b))
        return b @ ((v / np.sqrt(w)) @ v.T)

    def riemannian_hessian(
        self, egrad: np.ndarray, ehess: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Matrix of the Riemannian Hessian in :meth:`tangent_basis`, shape (dim, dim):
        ``<ehess(xi_i), xi_j> + <egrad, (I - 2P)(xi_i xi_j + xi_j xi_i)>``."""
        basis = self.tangent_basis()
        flat = basis.reshape(len(basis), -1)
        g = sym(egrad)
        reflect = np.eye(self.d) - 2.0 * self.projector
        images = np.array([ehess(xi) for xi in basis]).reshape(len(basis), -1)
        # <G, R (xi eta + eta xi)> = tr(xi (G R + R G) eta) for symmetric xi, eta
        curved = (basis @ (g @ reflect + reflect @ g)).reshape(len(basis), -1)
        return sym(images @ flat.T + curved @ flat.T)
