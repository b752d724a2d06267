from __future__ import annotations

import numpy as np

from twostage.limits import directional_derivatives, gchisq_weights, sandwich
from twostage.manifolds import FixedRankPSD


def random_base(d=6, k=2, seed=0):
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((d, d)))[0]
    lam = np.r_[rng.uniform(1, 3, k), np.zeros(d - k)]
    return u, lam, (u * lam) @ u.T


def test_tangent_basis_is_orthonormal_and_tangent():
    _, _, m = random_base()
    geo = FixedRankPSD(m, 2)
    b = geo.tangent_basis()
    assert b.shape == (geo.dim, 6, 6) and geo.dim == 3 + 8
    gram = np.einsum("iab,jab->ij", b, b)
    np.testing.assert_allclose(gram, np.eye(geo.dim), atol=1e-12)
    for xi in b:
        np.testing.assert_allclose(geo.project(xi), xi, atol=1e-12)


def test_retraction_is_second_order_and_section_is_a_lift():
    _, _, m = random_base()
    geo = FixedRankPSD(m, 2)
    rng = np.random.default_rng(1)
    xi = geo.project(rng.standard_normal((6, 6)))
    for t in (1e-2, 1e-3):
        r = geo.retract(t * xi)
        assert np.linalg.matrix_rank(r, tol=1e-10) == 2
        assert np.linalg.norm(r - m - t * xi) < 10 * t**2 * np.linalg.norm(xi) ** 2
        a = geo.section(r)
        np.testing.assert_allclose(a @ a.T, r, atol=1e-12)


def test_riemannian_hessian_has_the_curvature_term():
    """f(M) = 1/2 ||M - C||^2 on rank-k PSD matrices, C = diag(c): at the truncation M of C
    the Hessian along the tilt e_i <-> e_a is 1 - c_a / c_i (the Euclidean part alone gives 1)."""
    c = np.array([4.0, 2.0, 1.0, 0.5])
    m = np.diag(np.r_[c[:2], 0, 0])
    geo = FixedRankPSD(m, 2)
    h = geo.riemannian_hessian(m - np.diag(c), lambda xi: xi)
    diag = np.diag(h)
    # basis order: 3 in-range elements, then tilts (i, a) for i in 0..1, a in 0..1
    np.testing.assert_allclose(diag[:3], 1.0)
    c_null = np.diag(geo.u2.T @ np.diag(c) @ geo.u2)  # c of the null directions, in basis order
    expected = [1 - c_null[a] / c[i] for i in range(2) for a in range(2)]
    np.testing.assert_allclose(diag[3:], expected, rtol=1e-12)
    np.testing.assert_allclose(h - np.diag(diag), 0, atol=1e-12)


def test_directional_derivatives_are_accurate():
    _, _, m = random_base()
    geo = FixedRankPSD(m, 2)
    b = geo.tangent_basis()

    def fun(x):
        return np.array([np.trace(x @ x), x[0, 1]])

    j = directional_derivatives(fun, b, geo.retract, 1e-3)
    exact = np.array([[2 * np.trace(m @ xi), xi[0, 1]] for xi in b])
    np.testing.assert_allclose(j, exact, atol=1e-9)


def test_sandwich_and_weights():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 4))
    h = a @ a.T + 4 * np.eye(4)
    s = np.eye(4)
    v = sandwich(h, s)
    np.testing.assert_allclose(v, np.linalg.inv(h) @ np.linalg.inv(h), atol=1e-12)
    g = np.diag([1.0, 0, 0, 0])
    w = gchisq_weights(v, g)
    np.testing.assert_allclose(w.sum(), np.trace(v @ g), rtol=1e-12)
    assert w[0] > 0 and np.all(w[1:] < 1e-12)
