"""Multi-task pre-training case: data, both estimators, exact risk, the limit from first
principles against the closed forms derived by hand, and Monte Carlo acceptance.

Statistical tests use fixed seeds; every tolerance is stated where it is used. KS tests
compare with ``scipy.stats.kstwo.ppf(0.99, R)``, the 1% critical value for R replicates.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import optimize, stats

from twostage import run_point, stages
from twostage.cases import fragment
from twostage.cases._base import arrays
from twostage.cases.multitask import CASE
from twostage.cases.multitask.data import statistics_from_samples
from twostage.cases.multitask.estimator import erm, method_of_moments, split_scatter
from twostage.cases.multitask.theory import (
    _augmented,
    _in_g,
    closed_forms,
    erm_population_loss,
    erm_sandwich,
    limit,
    mom_sandwich,
    population_moment,
    task_second_moment,
)
from twostage.errors import ConfigError
from twostage.limits import hessian_at_zero
from twostage.manifolds import Grassmannian

POP = {k: v["default"] for k, v in fragment("multitask")["population"]["properties"].items()}
EST = {k: v["default"] for k, v in fragment("multitask")["estimator"]["properties"].items()}


def truth(seed: int = 0, **kw) -> dict[str, np.ndarray]:
    pop = {**copy.deepcopy(POP), **kw}
    CASE.check(pop, EST, lambda key: f"population.{key}")
    return arrays(CASE.truth(pop, np.random.default_rng(seed)))


def crit(r: int) -> float:
    return float(stats.kstwo.ppf(0.99, r))


def streams(n: int, seed: int = 1) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, i]) for i in range(n)]


# ---------------------------------------------------------------------------- truth, data
def test_truth_and_task_diversity():
    tr = truth(task_diversity=0.25, d=7, k=3, n_tasks=5)
    b = tr["B"]
    np.testing.assert_allclose(b.T @ b, np.eye(3), atol=1e-13)
    lam = task_second_moment(tr["tasks"])
    np.testing.assert_allclose(lam, np.diag([1.0, 0.5, 0.25]), atol=1e-13)
    np.testing.assert_allclose(tr["w_star"], b @ (np.ones(3) / np.sqrt(3)), rtol=1e-14)
    explicit = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    tr2 = truth(d=4, k=2, n_tasks=3, tasks=explicit, subspace="canonical")
    np.testing.assert_array_equal(tr2["tasks"], np.array(explicit))
    np.testing.assert_array_equal(tr2["B"], np.eye(4)[:, :2])
    a, b2 = truth(seed=1)["tasks"], truth(seed=2)["tasks"]  # random tasks: from the stream
    assert a.shape == (6, 3) and not np.allclose(a, b2)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"k": 10}, "k"),
        ({"beta": [1.0]}, "beta"),
        ({"n_tasks": 2}, "n_tasks"),
        ({"tasks": [[1.0, 0.0, 0.0]], "n_tasks": 1}, "tasks"),  # one task: Lambda singular
        ({"tasks": [[1.0, 0.0, 0.0]] * 2, "n_tasks": 3}, "tasks"),  # wrong count
        (
            {"tasks": [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], "n_tasks": 3, "task_diversity": 0.5},
            "task_diversity",
        ),
    ],
)
def test_check_names_the_bad_key(change, key):
    with pytest.raises(ConfigError, match=rf"'population\.{key}'"):
        truth(**change)


def test_raw_and_sufficient_paths_give_the_same_statistics_and_estimates():
    tr = truth(d=5, k=2, n_tasks=3)
    m = 2 * 4096 + 77  # several chunks
    raw = arrays(CASE.sample(tr, m, streams(3), "pretrain", "raw"))
    suf = arrays(CASE.sample(tr, m, streams(3), "pretrain", "sufficient"))
    counts, scatter, moment = statistics_from_samples(
        raw["task_pre"], raw["x_pre"], raw["y_pre"], 3
    )
    np.testing.assert_array_equal(counts, suf["task_counts"])
    np.testing.assert_array_equal(scatter, suf["scatter"])
    np.testing.assert_array_equal(moment, suf["moment"])
    assert (suf["task_counts"].sum(axis=1) == m).all()
    x, y = raw["x_pre"][0], raw["y_pre"][0]
    np.testing.assert_allclose(moment[0], (x * y[:, None] ** 2).T @ x / m, rtol=1e-12)
    for method in ("mom", "erm"):
        a = CASE.pretrain(tr, raw, {**EST, "method": method}, None)
        b = CASE.pretrain(tr, suf, {**EST, "method": method}, None)
        np.testing.assert_array_equal(a["representation"][1], b["representation"][1])


def test_population_moment_is_the_closed_form():
    """M = E[y^2 x x^T] = (mean ||theta_t||^2 + sigma2_pre) I + 2 B Lambda B^T (Isserlis)."""
    tr = truth(seed=3, sigma2_pre=0.7)
    b, th = tr["B"], tr["tasks"]
    expected = (np.mean(np.sum(th**2, 1)) + 0.7) * np.eye(10) + 2 * b @ task_second_moment(th) @ b.T
    np.testing.assert_allclose(population_moment(tr), expected, atol=1e-12)


# ---------------------------------------------------------------------------- estimators
def test_estimators_on_population_statistics_recover_the_subspace():
    """Oracle: with the population statistics (per-task E[z z^T] / T and M), both estimators
    return span(B*) to 1e-10."""
    tr = truth(seed=4)
    b, th, s2 = tr["B"], tr["tasks"], float(tr["sigma2_pre"])
    n_tasks, d = len(th), b.shape[0]
    scatter = np.empty((1, n_tasks, d + 1, d + 1))
    for t, theta in enumerate(th):
        w = b @ theta
        cov = np.block([[np.eye(d), w[:, None]], [w[None, :], np.array([[w @ w + s2]])]])
        scatter[0, t] = cov / n_tasks
    p_star = b @ b.T
    for res in (erm(scatter, 3), method_of_moments(population_moment(tr)[None], 3)):
        bh = res["b"][0]
        np.testing.assert_allclose(bh @ bh.T, p_star, atol=1e-10)
    assert erm(scatter, 3)["converged"][0]


def test_erm_is_the_least_squares_minimiser():
    """At the returned span, the profiled least-squares loss is minimal: scipy's BFGS on the
    profile from nearby starts finds no lower value (beyond 1e-12), and the gradient norm in
    the chart is below gtol."""
    tr = truth(seed=5)
    data = arrays(CASE.sample(tr, 3000, streams(4, seed=2), "pretrain", "sufficient"))
    res = erm(data["scatter"], 3)
    assert res["converged"].all() and (res["grad_norm"] <= 1e-10).all()
    s, c, yy = split_scatter(data["scatter"][0])

    def profile(flat):
        q = np.linalg.qr(flat.reshape(10, 3))[0]
        return sum(
            yy[t] - c[t] @ q @ np.linalg.solve(q.T @ s[t] @ q, q.T @ c[t]) for t in range(len(s))
        )

    start = res["b"][0].ravel()
    np.testing.assert_allclose(profile(start), res["objective"][0], rtol=1e-12)
    rng = np.random.default_rng(0)
    for _ in range(3):
        found = optimize.minimize(profile, start + 0.05 * rng.standard_normal(30), method="BFGS")
        assert found.fun >= res["objective"][0] - 1e-12


def test_exact_risk_decomposition_matches_a_direct_least_squares_fit():
    out = run_point(
        "multitask",
        {"d": 6, "k": 2, "n_tasks": 3, "sigma2": 0.6, "n": 30, "alpha": 10.0},
        replicates=4,
        sampling="raw",
        ks_bootstrap=0,
    )
    down = out["downstream"]
    w_star = stages.truth_of(down)["w_star"]
    for i, x in enumerate(out["simulate"]["x_down"].values):
        b = out["pretrain"]["representation"].values[i]
        phi = x @ b
        coef = np.linalg.lstsq(phi, x @ w_star, rcond=None)[0]
        err = w_star - b @ coef
        np.testing.assert_allclose(float(down["rep"][i] + down["leak"][i]), err @ err, rtol=1e-9)
        var = 0.6 * np.trace(b.T @ b @ np.linalg.inv(phi.T @ phi))
        np.testing.assert_allclose(float(down["var"][i]), var, rtol=1e-9)


# ---------------------------------------------------------------------------- theory
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numerical_limits_equal_the_closed_forms(seed):
    """Random instances (random tasks, theta_0, sigma2_pre, d, k, T): the limit from V and
    G_L on the Grassmannian equals c chi2_{d-k} derived by hand, for both estimators, to
    1e-6 relative in every weight; and the MoM is never better than ERM here."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(4, 9))
    k = int(rng.integers(1, d - 1))
    n_tasks = int(rng.integers(k, k + 5))
    tr = truth(
        seed=seed,
        d=d,
        k=k,
        n_tasks=n_tasks,
        beta=rng.standard_normal(k).tolist(),
        sigma2_pre=float(rng.uniform(0.2, 2.0)),
    )
    forms = closed_forms(tr)
    for method in ("mom", "erm"):
        w = limit(tr, method)["weights"]
        expected = np.r_[np.full(d - k, forms[method]), np.zeros(len(w) - (d - k))]
        np.testing.assert_allclose(w, expected, rtol=1e-6, atol=1e-6 * forms[method])
    assert forms["mom"] > forms["erm"]


def test_erm_hessian_is_the_hessian_of_the_population_loss():
    """The Gauss-Newton form 2 (1/T) sum J^T J equals second differences of the population
    loss along the retraction (Richardson, step 1e-3) to 1e-6 relative."""
    tr = truth(seed=7, d=5, k=2, n_tasks=3)
    geo = Grassmannian(tr["B"])
    hess, _ = erm_sandwich(tr, geo)
    fd = hessian_at_zero(erm_population_loss(tr, geo), len(hess), 1e-3)
    np.testing.assert_allclose(fd, hess, atol=1e-6 * np.abs(hess).max())


def test_mom_score_covariance_matches_monte_carlo_of_the_scores():
    """The exact covariance of the scores -y^2 x^T xi x (Isserlis) equals the Monte Carlo
    covariance of the per-sample scores (4e6 draws in 40 batches) within 5 batch standard
    errors, entrywise; the Riemannian Hessian is 2 (I kron Lambda) in these coordinates."""
    tr = truth(seed=8, d=4, k=2, n_tasks=3)
    geo = Grassmannian(tr["B"])
    hess, score = mom_sandwich(tr, geo)
    lam = task_second_moment(tr["tasks"])
    np.testing.assert_allclose(hess, 2 * np.kron(lam, np.eye(2)), atol=1e-12)
    a, cov = _augmented(tr)
    basis = geo.tangent_basis()
    rng = np.random.default_rng(9)
    batches = []
    for _ in range(40):
        t = rng.integers(0, len(a), 100_000)
        g = rng.standard_normal((100_000, 5)) * np.sqrt(np.diag(cov))
        y = np.einsum("np,np->n", g, a[t])
        x = g[:, :4]
        s = -(y**2)[:, None] * np.einsum("na,lab,nb->nl", x, basis, x)
        batches.append(s.T @ s / len(s))
    batches = np.array(batches)
    se = batches.std(axis=0, ddof=1) / np.sqrt(len(batches))
    z = np.abs(batches.mean(axis=0) - score) / se
    assert z.max() < 5, z.max()
    assert _in_g(np.eye(4)).shape == (4, 5)


# ---------------------------------------------------------------------------- Monte Carlo
@pytest.fixture(scope="module")
def acceptance():
    """d = 10, k = 3, T = 6 (task diversity 0.5), m = 2e4, alpha = 2, 2000 replicates per
    estimator (the same data for both)."""
    params = {"d": 10, "k": 3, "n_tasks": 6, "task_diversity": 0.5, "n": 10_000, "alpha": 2.0}
    return {
        method: run_point(
            "multitask", {**params, "method": method}, replicates=2000, seed=41, ks_bootstrap=0
        )
        for method in ("mom", "erm")
    }


@pytest.mark.statistical
@pytest.mark.parametrize("method", ["mom", "erm"])
def test_m_rep_follows_the_limit(acceptance, method):
    """KS(m Rep, limit) below the 1% critical value (0.0363 for 2000 replicates), and the
    other estimator's closed form is rejected; every replicate converged."""
    r = acceptance[method]["risk"]
    c = crit(2000)
    other = "erm" if method == "mom" else "mom"
    print(
        f"{method}: KS(mRep, limit) = {float(r['ks_pre'][0]):.4f}, crit {c:.4f}; "
        f"KS(subspace) = {float(r['ks_subspace_error'][0]):.4f}; mean mRep "
        f"{float(r['mean_m_rep'][0]):.3f} +- {float(r['se_m_rep'][0]):.3f} vs "
        f"{float(acceptance[method]['theory']['mean_L2']):.3f}"
    )
    assert float(r["ks_pre"][0]) < c
    assert float(r[f"ks_m_rep_{method}"][0]) < c
    assert float(r[f"ks_m_rep_{other}"][0]) > c
    assert float(r["ks_subspace_error"][0]) < c
    assert float(r["n_not_converged"][0]) == 0


@pytest.mark.statistical
def test_the_estimators_share_the_data(acceptance):
    """The estimator is an estimator setting: both points have the same truth and data, so
    the comparison is paired (here, the downstream design enters n Var identically)."""
    a, b = (acceptance[m]["simulate"] for m in ("mom", "erm"))
    for var in a.data_vars:
        np.testing.assert_array_equal(a[var].values, b[var].values)
    np.testing.assert_array_equal(
        acceptance["mom"]["downstream"]["d_eff_n"].values,
        acceptance["erm"]["downstream"]["d_eff_n"].values,
    )


@pytest.mark.statistical
def test_variance_and_leakage_along_the_n_grid():
    """Gaussian design: E[n Var] = sigma^2 k n/(n - k - 1) and E[n Leak] = E[Rep] k n/(n - k
    - 1) exactly (the residual is independent of the features), within 4 Monte Carlo s.e.
    at n = 100, 1000, 10000 (1000 replicates); so n Var -> sigma^2 k = 3 (within 1% at
    n = 1e4) and n Leak -> 0 (decreasing)."""
    k, reps, leaks = 3, 1000, []
    for n in (100, 1000, 10_000):
        d = run_point(
            "multitask",
            {"task_diversity": 0.5, "method": "erm", "n": n, "alpha": 2.0},
            replicates=reps,
            seed=43,
            ks_bootstrap=0,
        )["risk"]
        factor = k * n / (n - k - 1)
        nvar = d["n_var"].values[0]
        assert abs(nvar.mean() - factor) < 4 * nvar.std() / np.sqrt(reps)
        diff = d["n_leak"].values[0] - d["rep"].values[0] * factor
        assert abs(diff.mean()) < 4 * diff.std() / np.sqrt(reps)
        leaks.append(d["n_leak"].values[0].mean())
    assert abs(nvar.mean() / k - 1) < 0.01
    assert leaks[0] > leaks[1] > leaks[2]
