"""Tests of the generalized chi-square law ``offset + sum_l w_l chi2(k_l)``.

Every tolerance is stated where it is used and comes from one of:

* the implementation's accuracy claim: Ruben's series neglects a mixture mass below 1e-12
  (an absolute CDF error of at most that plus rounding), Imhof's quadratures are asked for
  1e-13 absolute; the package documents ``~1e-10`` absolute, which is what the
  method-vs-method and method-vs-reference tests assert (measured agreement is ~1e-13);
* the reference's own accuracy (closed forms: rounding only; quadratures: their error
  estimate, asserted below the tolerance);
* Monte Carlo: an empirical fraction over N independent draws has standard error
  ``sqrt(p (1 - p) / N)``; a tolerance of 5 standard errors fails by chance with
  probability < 6e-7 per comparison (seeds are fixed anyway, so the tests are
  deterministic; the 5 sigma margin is what makes the fixed seeds not cherry-picked).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special
from scipy.stats import chi2, norm

from twostage.gchisq import GeneralizedChiSquare

#: Accuracy the package promises for cdf/sf (absolute).
CDF_TOL = 1e-10
#: Monte Carlo sample size and the number of standard errors allowed.
N_MC = 2_000_000
N_SIGMA = 5.0


def binomial_tol(p: float, n: int = N_MC) -> float:
    """5 standard errors of an empirical fraction with success probability p."""
    return N_SIGMA * math.sqrt(p * (1.0 - p) / n)


def random_weights(seed: int, n: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Log-uniform positive weights in [1, spread] (both ends present) and dof in 1..3."""
    rng = np.random.default_rng(seed)
    w = np.exp(rng.uniform(0.0, math.log(spread), n))
    w[0], w[-1] = 1.0, spread
    return w, rng.integers(1, 4, n)


def exp_minus_chi2_1_cdf(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Exact CDF of ``a chi2_2 + s b chi2_1`` (s = sign(b)), from E over Z of an exponential.

    ``a chi2_2`` is exponential with mean 2a, so P(. <= t) = 1 - exp(-t / 2a) for t >= 0,
    and ``E[exp(-c Z^2) 1{Z^2 >= z0^2}] = (1 + 2c)^(-1/2) 2 (1 - Phi(z0 sqrt(1 + 2c)))``.
    """
    x = np.asarray(x, dtype=float)
    r = b / a  # 2c with c = b / (2a)
    if b < 0:  # Q = a chi2_2 - |b| Z^2
        bb = -b
        z0 = np.sqrt(np.maximum(-x, 0.0) / bb)
        tail = 2.0 * norm.sf(z0)  # P(|b| Z^2 >= -x)
        rr = bb / a
        return tail - 2.0 * np.exp(-x / (2 * a)) * norm.sf(z0 * math.sqrt(1 + rr)) / math.sqrt(
            1 + rr
        )
    # 0 < b < a: Q = a chi2_2 + b Z^2, integrate over |Z| <= z1 = sqrt(x / b)
    z1 = np.sqrt(np.maximum(x, 0.0) / b)
    inner = norm.cdf(z1 * math.sqrt(1 - r)) - 0.5
    out = 2.0 * norm.cdf(z1) - 1.0 - 2.0 * np.exp(-x / (2 * a)) * inner / math.sqrt(1 - r)
    return np.where(x > 0, out, 0.0)


def convolution_cdf(x: float, w1: float, k1: int, w2: float, k2: int) -> tuple[float, float]:
    """P(w1 chi2_k1 + w2 chi2_k2 <= x) = int_0^{x/w1} f_k1(t) F_k2((x - w1 t)/w2) dt.

    The end-point behaviours ``t^(k1/2-1)`` (density) and ``(b-t)^(k2/2)`` (CDF near 0) are
    handed to QUADPACK's algebraic weight, so the remaining factor is smooth.
    Returns (value, quad's error estimate).
    """
    b = x / w1
    a1, a2 = k1 / 2.0, k2 / 2.0
    lim0 = 0.5**a2 / special.gamma(a2 + 1.0)  # gammainc(a2, s/2) / s^a2 as s -> 0

    def smooth(t: float) -> float:
        s = (x - w1 * t) / w2
        h = special.gammainc(a2, s / 2.0) / s**a2 if s > 1e-100 else lim0
        dens = math.exp(-t / 2.0) / (2.0**a1 * special.gamma(a1))
        return dens * (w1 / w2) ** a2 * h

    val, err = integrate.quad(
        smooth, 0.0, b, weight="alg", wvar=(a1 - 1.0, a2), epsabs=1e-14, epsrel=1e-13
    )
    return val, err


# --------------------------------------------------------------------------- exact cases


@pytest.mark.parametrize(("w", "k"), [(1.0, 1), (2.5, 3), (0.01, 7), (40.0, 1), (3.0, 2)])
def test_single_weight_is_scaled_chi2(w: float, k: int) -> None:
    """w chi2_k: Ruben's series has one term, so equality holds to rounding (1e-12)."""
    g = GeneralizedChiSquare([w], dof=[k])
    x = w * np.array([0.0, 1e-9, 1e-3, 0.1, 1.0, k, 3.0 * k + 5, 10.0 * k + 50])
    ref = chi2.cdf(x / w, k)
    np.testing.assert_allclose(g.cdf(x), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.sf(x), chi2.sf(x / w, k), rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.cdf(x, method="imhof"), ref, rtol=0, atol=CDF_TOL)
    # The offset only shifts the law.
    # (Compared at the rounded shifted points: x - 3.25 + 3.25 != x near 0.)
    h = GeneralizedChiSquare([w], dof=[k], offset=-3.25)
    xs = x - 3.25
    ref_h = chi2.cdf((xs + 3.25) / w, k)
    np.testing.assert_allclose(h.cdf(xs), ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.cdf(xs, method="imhof"), ref_h, rtol=0, atol=CDF_TOL)
    assert h.cdf(-3.25 - 1e-9) == 0.0


def test_single_negative_weight_reflects() -> None:
    """-2 chi2_3 + 1: P(Q <= x) = P(chi2_3 >= (1 - x)/2), by Ruben (reflected) and Imhof."""
    g = GeneralizedChiSquare([-2.0], dof=[3], offset=1.0)
    x = np.array([-30.0, -5.0, 0.0, 0.99, 1.0, 2.0])
    ref = chi2.sf((1.0 - x) / 2.0, 3)
    assert g.default_method == "ruben"
    np.testing.assert_allclose(g.cdf(x), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g.cdf(x, method="imhof"), ref, rtol=0, atol=CDF_TOL)
    assert g.support == (-math.inf, 1.0)


@pytest.mark.parametrize(("a", "b"), [(2.0, 0.6), (1.0, 0.999), (5.0, 0.05)])
def test_two_terms_closed_form(a: float, b: float) -> None:
    """a chi2_2 + b chi2_1 against its closed form (rounding-level reference)."""
    g = GeneralizedChiSquare([a, b], dof=[2, 1])
    x = np.concatenate([[1e-12, 1e-6, 1e-3], g.ppf([0.001, 0.1, 0.5, 0.9, 0.999]), [80 * a]])
    ref = exp_minus_chi2_1_cdf(x, a, b)
    np.testing.assert_allclose(g.cdf(x, method="ruben"), ref, rtol=0, atol=CDF_TOL)
    np.testing.assert_allclose(g.cdf(x, method="imhof"), ref, rtol=0, atol=CDF_TOL)


@pytest.mark.parametrize(
    ("w1", "k1", "w2", "k2"),
    [(2.0, 1, 0.5, 3), (1.3, 1, 0.7, 1), (0.2, 4, 3.0, 1), (1.0, 3, 1e-2, 2)],
)
def test_two_terms_numerical_convolution(w1: float, k1: int, w2: float, k2: int) -> None:
    """Two terms against the convolution integral (quad's estimate < 1e-11 is checked)."""
    g = GeneralizedChiSquare([w1, w2], dof=[k1, k2])
    for x in np.concatenate([[1e-4], g.ppf([0.001, 0.3, 0.7, 0.999])]):
        ref, err = convolution_cdf(float(x), w1, k1, w2, k2)
        assert err < 1e-11
        assert abs(float(g.cdf(x)) - ref) < 1e-8  # tolerance of the brief; measured ~1e-14
        assert abs(float(g.cdf(x, method="imhof")) - ref) < 1e-8


# --------------------------------------------------------------------- Ruben vs Imhof


@pytest.mark.parametrize(
    ("seed", "n", "spread"), [(1, 3, 5.0), (2, 8, 30.0), (3, 12, 100.0), (4, 40, 10.0)]
)
def test_ruben_and_imhof_agree(seed: int, n: int, spread: float) -> None:
    """Two independent exact methods agree to the promised 1e-10 (measured ~1e-13).

    Points: just above the lower end of the support (where naive Imhof loses
    accuracy), the 0.001 ... 0.999 quantiles, and far in the upper tail.
    """
    w, k = random_weights(seed, n, spread)
    g = GeneralizedChiSquare(w, dof=k, offset=0.7)
    assert g.default_method == "ruben"
    near0 = g.offset + np.array([1e-10, 1e-6, 1e-3, 0.1])
    quant = g.ppf([0.001, 0.01, 0.5, 0.99, 0.999])
    far = [g.mean() + 15 * g.std()]
    x = np.concatenate([near0, quant, far])
    r, i = g.cdf(x, method="ruben"), g.cdf(x, method="imhof")
    np.testing.assert_allclose(r, i, rtol=0, atol=CDF_TOL)
    np.testing.assert_allclose(
        g.sf(x, method="ruben"), g.sf(x, method="imhof"), rtol=0, atol=CDF_TOL
    )
    np.testing.assert_allclose(r[4:9], [0.001, 0.01, 0.5, 0.99, 0.999], rtol=0, atol=1e-12)


def test_many_terms_tiny_a0() -> None:
    """1000 weights: a_0 = prod (beta/w_l)^(k_l/2) underflows; the rescaled recursion copes."""
    w, k = random_weights(5, 1000, 20.0)
    g = GeneralizedChiSquare(w, dof=k)
    assert float(np.sum(0.5 * k * np.log(w.min() / w))) < -745  # exp of it is 0.0
    assert g.default_method == "ruben"
    x = g.ppf([0.001, 0.5, 0.999])
    np.testing.assert_allclose(g.cdf(x, method="imhof"), [0.001, 0.5, 0.999], atol=CDF_TOL)


def test_widely_spread_weights_use_imhof() -> None:
    """Weights 1e6 apart would need ~3e7 Ruben terms: auto falls back to Imhof (exact form)."""
    a, b = 1.0, 1e-6
    g = GeneralizedChiSquare([a, b], dof=[2, 1])
    assert g.default_method == "imhof"
    with pytest.raises(RuntimeError, match="Ruben's series"):
        g.cdf(1.0, method="ruben")
    x = np.array([1e-9, 1e-6, 1e-4, 0.01, 1.0, 5.0, 30.0])
    np.testing.assert_allclose(g.cdf(x), exp_minus_chi2_1_cdf(x, a, b), rtol=0, atol=CDF_TOL)


# ------------------------------------------------------------------------ mixed signs


@pytest.mark.parametrize(("a", "b"), [(2.0, -1.5), (1.0, -0.01), (0.5, -4.0)])
def test_mixed_signs_closed_form(a: float, b: float) -> None:
    """a chi2_2 - |b| chi2_1 (Imhof) against the closed form, including x = 0 exactly."""
    g = GeneralizedChiSquare([a, b], dof=[2, 1])
    assert g.default_method == "imhof"
    with pytest.raises(ValueError, match="one sign"):
        g.cdf(0.0, method="ruben")
    x = np.array([-40 * abs(b), -3.0, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 1.0, 10.0, 60 * a])
    np.testing.assert_allclose(g.cdf(x), exp_minus_chi2_1_cdf(x, a, b), rtol=0, atol=CDF_TOL)
    np.testing.assert_allclose(g.sf(x), 1 - exp_minus_chi2_1_cdf(x, a, b), rtol=0, atol=CDF_TOL)


def test_difference_of_two_chi2_1() -> None:
    """Z1^2 - Z2^2 (Imhof) has density K0(|t|/2) / (2 pi): symmetric, log-singular at 0.

    The reference integrates that density with quad after t = u^2 (its error estimate,
    asserted below 1e-12, is far inside the 1e-10 tolerance); cdf(0) = 1/2 exactly.
    """
    g = GeneralizedChiSquare([1.0, -1.0])
    assert float(g.cdf(0.0)) == pytest.approx(0.5, abs=1e-14)
    for x in [-12.0, -2.0, -1e-9, 1e-12, 1e-6, 0.3, 2.0, 12.0]:
        half, err = integrate.quad(  # t = u^2 tames the log singularity
            lambda u: special.k0(u * u / 2.0) * u / math.pi, 0.0, math.sqrt(abs(x)), epsabs=1e-15
        )
        assert err < 1e-12
        ref = 0.5 + math.copysign(half, x)
        assert abs(float(g.cdf(x)) - ref) < CDF_TOL, x


@pytest.mark.statistical
def test_mixed_signs_vs_monte_carlo() -> None:
    """Imhof vs the fraction of 2e6 exact draws, within 5 binomial standard errors."""
    g = GeneralizedChiSquare([2.0, 1.0, -1.5, -0.3], dof=[1, 2, 1, 3], offset=0.5)
    sample = g.rvs(N_MC, np.random.default_rng(20260101))
    x = np.quantile(sample, [0.005, 0.05, 0.3, 0.5, 0.7, 0.95, 0.995])
    x = np.append(x, g.offset)
    cdf = g.cdf(x)
    for xi, fi in zip(x, cdf, strict=True):
        emp = float(np.mean(sample <= xi))
        assert abs(emp - fi) < binomial_tol(fi), (xi, emp, fi)
    # ppf inverts the Imhof cdf as well.
    q = np.array([0.05, 0.5, 0.95])
    np.testing.assert_allclose(g.cdf(g.ppf(q)), q, rtol=0, atol=1e-12)
    assert g.support == (-math.inf, math.inf)
    assert g.ppf(0.0) == -math.inf and g.ppf(1.0) == math.inf


# ---------------------------------------------------------------------- Monte Carlo


@pytest.fixture(scope="module")
def law_and_sample() -> tuple[GeneralizedChiSquare, np.ndarray]:
    w, k = random_weights(7, 8, 25.0)
    g = GeneralizedChiSquare(w, dof=k, offset=-2.0)
    return g, g.rvs(N_MC, np.random.default_rng(12345))


@pytest.mark.statistical
def test_cdf_vs_monte_carlo(law_and_sample: tuple[GeneralizedChiSquare, np.ndarray]) -> None:
    """CDF vs the fraction of 2e6 exact draws, within 5 binomial standard errors."""
    g, sample = law_and_sample
    x = np.concatenate([g.ppf([0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999]), [g.mean()]])
    for xi, fi in zip(x, g.cdf(x), strict=True):
        emp = float(np.mean(sample <= xi))
        assert abs(emp - fi) < binomial_tol(fi), (xi, emp, fi)


@pytest.mark.statistical
def test_moments(law_and_sample: tuple[GeneralizedChiSquare, np.ndarray]) -> None:
    """Closed forms, and the sample mean / variance within 5 standard errors.

    se(mean) = sqrt(kappa2 / N); se(sample variance) ~ sqrt((kappa4 + 2 kappa2^2) / N),
    with cumulants kappa_r = 2^(r-1) (r-1)! sum_l k_l w_l^r.
    """
    g, sample = law_and_sample
    w, k = g.weights, g.dof
    assert g.mean() == pytest.approx(-2.0 + float(np.sum(w * k)), rel=1e-14)
    assert g.var() == pytest.approx(2.0 * float(np.sum(w**2 * k)), rel=1e-14)
    kappa2, kappa4 = g.cumulant(2), g.cumulant(4)
    assert kappa2 == pytest.approx(g.var(), rel=1e-14)
    assert kappa4 == pytest.approx(48.0 * float(np.sum(w**4 * k)), rel=1e-14)
    se_mean = math.sqrt(kappa2 / N_MC)
    se_var = math.sqrt((kappa4 + 2 * kappa2**2) / N_MC)
    assert abs(sample.mean() - g.mean()) < N_SIGMA * se_mean
    assert abs(sample.var(ddof=1) - g.var()) < N_SIGMA * se_var
    # A hand-computed case: 1 + 2 chi2_1 + 0.5 chi2_3 has mean 4.5 and variance 9.5.
    h = GeneralizedChiSquare([2.0, 0.5], dof=[1, 3], offset=1.0)
    assert (h.mean(), h.var()) == (4.5, 9.5)


# ------------------------------------------------------------------ ppf, monotonicity


def test_ppf_inverts_cdf() -> None:
    """ppf(cdf(x)) = x to 1e-8 on the bulk, cdf(ppf(q)) = q to 1e-12, ends of the support."""
    w, k = random_weights(11, 6, 15.0)
    g = GeneralizedChiSquare(w, dof=k, offset=3.0)
    x = np.linspace(*g.ppf([0.001, 0.999]), 25)
    np.testing.assert_allclose(g.ppf(g.cdf(x)), x, rtol=0, atol=1e-8)
    q = np.array([[1e-6, 0.25], [0.5, 1 - 1e-6]])
    xq = g.ppf(q)
    assert xq.shape == (2, 2)
    np.testing.assert_allclose(g.cdf(xq), q, rtol=0, atol=1e-12)
    assert g.ppf(0.0) == 3.0 and g.ppf(1.0) == math.inf
    assert np.isnan(g.ppf(np.nan))
    with pytest.raises(ValueError, match=r"q must be in \[0, 1\]; got 1.5"):
        g.ppf([0.5, 1.5])


@pytest.mark.parametrize("spread", [1.0, 10.0, 1000.0])
def test_cdf_monotone_in_unit_interval(spread: float) -> None:
    """On a dense grid the CDF stays in [0, 1] and never decreases by more than rounding
    (1e-14: the sums have O(1e3) terms of size <= 1), and cdf + sf = 1 to 1e-12."""
    w, k = random_weights(13, 10, spread)
    g = GeneralizedChiSquare(w, dof=k, offset=-1.0)
    x = np.linspace(g.offset - 1.0, g.ppf(1 - 1e-12), 5001)
    f = g.cdf(x)
    assert np.all((f >= 0.0) & (f <= 1.0))
    assert np.all(np.diff(f) >= -1e-14)
    assert f[0] == 0.0 and f[-1] == pytest.approx(1.0, abs=2e-12)
    np.testing.assert_allclose(f + g.sf(x), 1.0, rtol=0, atol=1e-12)
    assert g.cdf(math.inf) == 1.0 and g.cdf(-math.inf) == 0.0


def test_cdf_is_vectorised_and_keeps_shape() -> None:
    g = GeneralizedChiSquare([1.0, 0.5], dof=[2, 1])
    x = np.array([[0.5, 1.0, np.nan], [2.0, 3.0, 4.0]])
    f = g.cdf(x)
    assert f.shape == (2, 3) and np.isnan(f[0, 2])
    assert np.array_equal(f[~np.isnan(x)], [float(g.cdf(v)) for v in x[~np.isnan(x)]])
    assert np.ndim(g.cdf(1.0)) == 0
    gi = GeneralizedChiSquare([1.0, -0.5])
    assert gi.cdf(x).shape == (2, 3) and np.isnan(gi.cdf(x)[0, 2])


# ------------------------------------------------------------------ inputs, edge cases


def test_tiny_weights_are_dropped() -> None:
    """|w| <= rtol max|w| are numerical zeros of an eigendecomposition: dropped, counted."""
    w = [1.0, 0.5, 1e-18, -3e-17, 0.0]
    g = GeneralizedChiSquare(w, dof=[1, 2, 3, 1, 4], offset=0.25)
    assert g.n_dropped == 3
    np.testing.assert_array_equal(g.weights, [1.0, 0.5])
    np.testing.assert_array_equal(g.dof, [1, 2])
    ref = GeneralizedChiSquare([1.0, 0.5], dof=[1, 2], offset=0.25)
    x = np.array([0.3, 1.0, 4.0])
    np.testing.assert_array_equal(g.cdf(x), ref.cdf(x))
    assert g.default_method == "ruben"  # the tiny negative weight no longer forces Imhof
    kept = GeneralizedChiSquare(w, dof=[1, 2, 3, 1, 4], rtol=0.0)
    assert kept.n_dropped == 1 and kept.weights.size == 4  # only the exact zero goes
    with pytest.raises(ValueError, match="read-only"):
        g.weights[0] = 2.0


def test_all_zero_weights_are_a_point_mass() -> None:
    g = GeneralizedChiSquare([0.0, 0.0, 0.0], offset=2.0)
    assert g.n_dropped == 3 and g.weights.size == 0
    assert g.default_method == "point_mass"
    x = np.array([1.9, 2.0, 2.1, np.nan])
    np.testing.assert_array_equal(g.cdf(x), [0.0, 1.0, 1.0, np.nan])
    np.testing.assert_array_equal(g.sf(x), [1.0, 0.0, 0.0, np.nan])
    assert (g.mean(), g.var()) == (2.0, 0.0)
    np.testing.assert_array_equal(g.rvs(5, np.random.default_rng(0)), np.full(5, 2.0))
    np.testing.assert_array_equal(g.ppf([0.0, 0.3, 1.0]), [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": [1.0, 2.0, 3.0, np.nan]}, "weights must be finite; got nan at index 3"),
        ({"weights": [1.0, np.inf]}, "weights must be finite; got inf at index 1"),
        ({"weights": []}, "weights must contain at least one weight"),
        ({"weights": [[1.0, 2.0], [3.0, 4.0]]}, r"weights must be a 1-D array; got 2-D"),
        ({"weights": 1.0}, r"weights must be a 1-D array; got 0-D"),
        ({"weights": ["a", "b"]}, "weights must be real numbers"),
        (
            {"weights": [1.0, 2.0], "dof": [1, -2]},
            "dof must be positive integers; got -2 at index 1",
        ),
        ({"weights": [1.0, 2.0], "dof": [0, 1]}, "dof must be positive integers; got 0 at index 0"),
        ({"weights": [1.0, 2.0], "dof": [1, 1.5]}, "dof must be positive integers; got 1.5"),
        ({"weights": [1.0, 2.0], "dof": [1, 2, 3]}, r"dof must have the same shape"),
        ({"weights": [1.0], "offset": np.nan}, "offset must be finite"),
        ({"weights": [1.0], "rtol": -1e-3}, r"rtol must be in \[0, 1\)"),
    ],
)
def test_bad_inputs_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneralizedChiSquare(**kwargs)


def test_bad_call_arguments_raise() -> None:
    g = GeneralizedChiSquare([1.0, 2.0])
    with pytest.raises(ValueError, match="method must be"):
        g.cdf(1.0, method="davies")
    with pytest.raises(ValueError, match="size must be an integer >= 0; got -1"):
        g.rvs(-1, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        g.rvs(3, 0)
    with pytest.raises(ValueError, match="cumulant order"):
        g.cumulant(0)


def test_rvs_shape_and_reproducibility() -> None:
    g = GeneralizedChiSquare([3.0, 1.0, 0.2], dof=[1, 4, 2], offset=-1.0)
    a = g.rvs(1000, np.random.default_rng(5))
    b = g.rvs(1000, np.random.default_rng(5))
    c = g.rvs(1000, np.random.default_rng(6))
    assert a.shape == (1000,) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a > -1.0)
    assert g.rvs(0, np.random.default_rng(5)).shape == (0,)


def test_repr() -> None:
    g = GeneralizedChiSquare([2.0, 1e-20, 0.5], dof=[1, 1, 3], offset=1.5)
    r = repr(g)
    assert r.startswith("GeneralizedChiSquare(weights=[2. , 0.5], dof=[1, 3]")
    assert "offset=1.5" in r and "n_dropped=1" in r
    long = repr(GeneralizedChiSquare(np.arange(1.0, 101.0)))
    assert "..." in long and len(long) < 200


def test_nearly_equal_weights_use_rubens_series():
    """Weights equal up to round-off (eigenvalues of a sandwich matrix) give a short series."""
    w = 0.2 * (1.0 + 1e-12 * np.arange(17))
    law = GeneralizedChiSquare(w)
    assert law.default_method == "ruben"
    x = np.array([1.0, 3.4, 6.0])
    np.testing.assert_allclose(law.cdf(x), chi2.cdf(x / 0.2, 17), atol=1e-10)
