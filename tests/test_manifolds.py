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


def test_grassmannian_hessian_is_the_second_derivative_along_geodesics():
    """For f(P) = tr(A P) + tr(P B P C) at a random (non-critical) point, z^T H z equals the
    second derivative of f along the geodesic exp(t W) P exp(-t W), W = [xi, P], whose
    acceleration is the normal 2 (I - 2P) xi^2 (second fundamental form), to 1e-6."""
    from scipy.linalg import expm

    from twostage.manifolds import Grassmannian

    rng = np.random.default_rng(3)
    d, k = 6, 2
    geo = Grassmannian(np.linalg.qr(rng.standard_normal((d, k)))[0])
    a, b, c = (m + m.T for m in rng.standard_normal((3, d, d)))
    p0 = geo.projector

    def f(p):
        return np.trace(a @ p) + np.trace(p @ b @ p @ c)

    hess = geo.riemannian_hessian(a + b @ p0 @ c + c @ p0 @ b, lambda xi: b @ xi @ c + c @ xi @ b)
    basis = geo.tangent_basis()
    np.testing.assert_allclose(np.einsum("iab,jab->ij", basis, basis), np.eye(geo.dim), atol=1e-13)
    v, w = geo.tangent_factors()
    np.testing.assert_allclose(
        (np.einsum("la,lb->lab", v, w) + np.einsum("la,lb->lab", w, v)) / np.sqrt(2), basis
    )
    for _ in range(3):
        z = rng.standard_normal(geo.dim)
        xi = np.einsum("i,iab->ab", z, basis)
        gen = xi @ p0 - p0 @ xi

        def along(t, gen=gen):
            return f(expm(t * gen) @ p0 @ expm(-t * gen))

        h = 1e-3
        second = [(along(s) + along(-s) - 2 * along(0.0)) / s**2 for s in (h, h / 2)]
        richardson = (4 * second[1] - second[0]) / 3
        np.testing.assert_allclose(z @ hess @ z, richardson, rtol=1e-6)
    # the section is a smooth lift: orthonormal, B B^T = P, B(P*) = U1
    p = geo.retract(0.05 * xi)
    s = geo.section(p)
    np.testing.assert_allclose(s @ s.T, p, atol=1e-13)
    np.testing.assert_allclose(geo.section(p0), geo.u1, atol=1e-13)


def test_gaussian_linear_form_moments_are_exact():
    """Isserlis: E[(a^T g)^4] = 3 (a^T S a)^2; odd products vanish; an 8-factor moment
    equals the Monte Carlo average (4e6 draws) within 5 batch standard errors."""
    from twostage.gaussian import linear_form_moment, perfect_matchings

    assert sum(1 for _ in perfect_matchings(range(8))) == 105
    rng = np.random.default_rng(4)
    g = rng.standard_normal((3, 3))
    cov = g @ g.T / 3 + 0.2 * np.eye(3)
    a = rng.standard_normal(3)
    np.testing.assert_allclose(linear_form_moment([a] * 4, cov), 3 * (a @ cov @ a) ** 2)
    assert linear_form_moment([a] * 3, cov) == 0.0
    vecs = rng.standard_normal((8, 3))
    exact = float(linear_form_moment(list(vecs), cov))
    chol = np.linalg.cholesky(cov)
    batches = []
    for _ in range(40):
        x = rng.standard_normal((100_000, 3)) @ chol.T
        batches.append(np.mean(np.prod(x @ vecs.T, axis=1)))
    batches = np.array(batches)
    se = batches.std(ddof=1) / np.sqrt(len(batches))
    assert abs(batches.mean() - exact) < 5 * se, (batches.mean(), exact, se)
