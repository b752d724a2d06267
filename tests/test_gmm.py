"""Gaussian-mixture case study: EM, features, exact risk, invariance, and the limit theory.

The module is exercised directly (class methods with keyed generators), without the
configuration system. Statistical tests use fixed seeds; every tolerance is stated where it
is used. KS tests compare with ``scipy.stats.kstwo.ppf(0.99, R)``, the 1% critical value for
R replicates.
"""

from __future__ import annotations

import warnings

import jsonschema
import numpy as np
import pytest
import xarray as xr
from scipy import special, stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_limits

from twostage import io, seeding, stages
from twostage.api import study_spec
from twostage.cases import fragment
from twostage.cases._base import arrays
from twostage.cases.gmm import CASE
from twostage.cases.gmm import em as em_module
from twostage.cases.gmm.em import em
from twostage.cases.gmm.features import (
    SWEEP_ROWS,
    embed_theta,
    features,
    features_t,
    gate_basis,
    reduce_theta,
    responsibilities,
)
from twostage.cases.gmm.population import (
    FISHER,
    clear_fit_cache,
    fit_residual,
    population,
    population_fit,
    relabelled_population_fit,
    stratified_sample,
)
from twostage.cases.gmm.sklearn_reference import FixedWeightsAndVariance
from twostage.cases.gmm.theory import (
    _g_l,
    finite_difference_gram,
    fisher_sums,
    residual_derivative_gram,
)
from twostage.config import expand_study
from twostage.errors import ConfigError
from twostage.gchisq import GeneralizedChiSquare

POPULATION_KEYS = tuple(fragment("gmm")["population"]["properties"])
ESTIMATOR_KEYS = tuple(fragment("gmm")["estimator"]["properties"])


def defaults() -> dict:
    return {
        key: spec["default"]
        for kind in ("population", "estimator")
        for key, spec in fragment("gmm")[kind]["properties"].items()
    }


def pop(p: dict) -> dict:
    return {k: p[k] for k in POPULATION_KEYS}


def est(p: dict) -> dict:
    return {k: p[k] for k in ESTIMATOR_KEYS}


def params(**kw) -> dict:
    """Population and estimator settings (defaults filled) and n, alpha, m, in one dict."""
    p = {**defaults(), "n": 1000, "alpha": 2.0, **kw}
    p["m"] = int(p["alpha"] * p["n"])
    CASE.check(pop(p), est(p), lambda key: f"params.{key}")
    return p


def truth(p: dict, seed: int = 0) -> dict[str, np.ndarray]:
    return arrays(CASE.truth(pop(p), np.random.default_rng(seed)))


def align(tr: dict, rep: np.ndarray, m: int) -> dict[str, np.ndarray]:
    """The alignment stage: Hungarian matching by the case's group, then its diagnostics."""
    aligned, g, _ = CASE.group.align(rep, CASE.reference(tr))
    diag = arrays(CASE.diagnostics(tr, {"representation": rep}, aligned, m))
    return {"representation_aligned": aligned, "group_element": g, **diag}


def streams(stage: str, r: int, seed: int = 11) -> list[np.random.Generator]:
    return seeding.streams(stage, range(r), [1, 2, 3], seed)


def crit(r: int) -> float:
    return float(stats.kstwo.ppf(0.99, r))


SMALL = {"K": 3, "d": 6, "separation": 2.5, "population_size": 20000, "fisher_size": 20000}


# ---------------------------------------------------------------------------- matching
@pytest.mark.parametrize("k", [1, 2, 3, 4, 6, 7])
def test_batched_matching_is_scipys_optimal_assignment(k):
    """The enumeration of the K! relabellings (K <= 6; scipy beyond) finds the assignment
    scipy's Hungarian algorithm finds, on continuous costs (no ties) and on the squared
    distances of perturbed, relabelled centres; over more replicates than one block."""
    from scipy.optimize import linear_sum_assignment

    from twostage.groups import ENUMERATE_ROWS, PermutationGroup, assignment

    rng = np.random.default_rng(k)
    r = ENUMERATE_ROWS + 37
    cost = rng.exponential(size=(r, k, k))
    expected = np.array([linear_sum_assignment(c)[1] for c in cost]).reshape(r, k)
    np.testing.assert_array_equal(assignment(cost), expected)
    target = rng.standard_normal((k, 5))
    perm = np.array([rng.permutation(k) for _ in range(r)])
    rep = target[perm] + 0.3 * rng.standard_normal((r, k, 5))
    aligned, g, dist = PermutationGroup.align(rep, target)
    cost = np.sum((rep[:, :, None, :] - target[None, None]) ** 2, axis=-1)
    for i in (0, 1, r - 1):
        row, col = linear_sum_assignment(cost[i])
        want = np.zeros((k, k))
        want[col, row] = 1.0
        np.testing.assert_array_equal(g[i], want)
    np.testing.assert_array_equal(aligned, g @ rep)
    np.testing.assert_allclose(dist, np.linalg.norm(aligned - target, axis=(-2, -1)))
    assert assignment(np.zeros((0, k, k))).shape == (0, k)


# ---------------------------------------------------------------------------- parameters
def test_schema_rejects_bad_values():
    frag = fragment("gmm")
    population_v = jsonschema.Draft202012Validator(frag["population"])
    estimator_v = jsonschema.Draft202012Validator(frag["estimator"])
    population_v.validate(pop(defaults()))
    estimator_v.validate(est(defaults()))
    assert not estimator_v.is_valid({**est(defaults()), "em_init": "random"})
    assert not population_v.is_valid({**pop(defaults()), "K": 1})


def test_truth_is_the_papers_instance():
    p = params(K=4, d=20, separation=2.0, theta_norm=10.0)
    tr = truth(p)
    np.testing.assert_array_equal(tr["centers"], 2.0 * np.eye(4, 20))
    assert int(tr["rank_S"]) == 3
    theta = tr["theta"].reshape(4, 21)
    np.testing.assert_allclose(np.linalg.norm(tr["theta"]), 10.0, rtol=1e-14)
    np.testing.assert_allclose(theta[1] / theta[0], 0.5, rtol=1e-14)  # blocks ~ (1/i) 1
    np.testing.assert_allclose(theta[3] / theta[0], 0.25, rtol=1e-14)
    assert not any(key in tr for key in ESTIMATOR_KEYS)  # estimator settings are not truth
    assert truth(p)["population_seed"] == tr["population_seed"]  # keyed by the rng only
    assert truth(p, seed=1)["population_seed"] != tr["population_seed"]
    centers = [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]
    tr2 = truth(params(K=3, d=2, centers=centers))
    np.testing.assert_array_equal(tr2["centers"], np.array(centers))
    assert int(tr2["rank_S"]) == 2


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        ({"K": 5, "d": 4}, "d"),
        ({"K": 2, "d": 3, "centers": [[0, 0, 0]]}, "centers"),
        ({"K": 2, "d": 2, "centers": [[1, 0], [1, 0]]}, "centers"),
        ({"K": 4, "population_size": 100}, "population_size"),
        ({"K": 4, "d": 20, "fisher_size": 500}, "fisher_size"),
    ],
)
def test_check_params_names_the_key(bad, key):
    with pytest.raises(ConfigError, match=rf"'params\.{key}'"):
        params(**bad)


def test_sample_is_reproducible_from_fresh_keyed_generators():
    tr = truth(params(**SMALL))
    a = CASE.sample(tr, 300, streams("pretrain_data", 4), "pretrain", "raw")
    b = CASE.sample(tr, 300, streams("pretrain_data", 4), "pretrain", "raw")
    c = CASE.sample(tr, 300, streams("downstream_data", 4), "downstream", "raw")
    assert a["x_pre"][0] == ("replicate", "sample_pre", "feature")
    assert c["x_down"][0] == ("replicate", "sample", "feature")
    np.testing.assert_array_equal(a["x_pre"][1], b["x_pre"][1])
    assert not np.allclose(a["x_pre"][1], c["x_down"][1])
    with pytest.raises(ValueError, match="sufficient statistic"):
        CASE.sample(tr, 10, streams("pretrain_data", 1), "pretrain", "sufficient")


def test_outputs_survive_a_netcdf_round_trip(tmp_path):
    p = params(**SMALL, n=40, alpha=2.0)
    tr = CASE.truth(pop(p), np.random.default_rng(0))
    arr = {k: v[1] for k, v in tr.items()}
    x = CASE.sample(arr, p["m"], streams("pretrain_data", 3), "pretrain", "raw")
    pre = CASE.pretrain(arr, {"x_pre": x["x_pre"][1]}, est(p), streams("pretrain_algorithm", 3))
    ds = xr.Dataset(
        {
            **{f"truth_{k}": xr.Variable(*v) for k, v in tr.items()},
            **{k: xr.Variable(*v) for k, v in pre.items()},
        }
    )
    io.write_dataset(ds, tmp_path / "pre.nc", "pretrain")
    back = io.read_dataset(tmp_path / "pre.nc", "pretrain")
    xr.testing.assert_identical(back.drop_attrs(), ds.drop_attrs())
    assert int(back["truth_population_seed"]) == int(arr["population_seed"])


# ---------------------------------------------------------------------------- features
def test_reduced_features_are_the_ambient_features_in_an_orthonormal_basis():
    """psi_U = B_U psi~_U; and the projected gate (6.3) equals the full posterior when
    u_i - u_j lie in range(P_U) (r* = K - 1)."""
    tr = truth(params(**SMALL))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 6)) + 1.0
    u = tr["centers"] + 0.1 * rng.standard_normal((3, 6))
    q = gate_basis(u, 2)
    psi_t, pi_t = features_t(x, u, q)
    red, pi = psi_t.T, pi_t.T  # (N, K (r* + 1)), (N, K)
    amb = features(x, u, 2)
    coef = rng.standard_normal(9)
    np.testing.assert_allclose(amb @ embed_theta(coef, q, 3), red @ coef, atol=1e-13)
    np.testing.assert_allclose(reduce_theta(amb[0], q, 3), red[0], atol=1e-13)
    np.testing.assert_allclose(pi, responsibilities(x, u, None), atol=1e-13)
    # the ambient Gram matrix has rank K (r* + 1) exactly
    w = np.linalg.eigvalsh(amb.T @ amb)
    assert np.sum(w > 1e-10 * w.max()) == 9


# ---------------------------------------------------------------------------- EM
def reference_em(x, u, tol, max_iter):
    """Textbook EM for the means, one replicate, in the unexpanded form -|x - u|^2 / 2."""
    m, d = x.shape
    k = len(u)
    prev = None
    for t in range(max_iter + 1):
        logp = -0.5 * np.sum((x[:, None, :] - u[None]) ** 2, axis=-1)
        ll = np.mean(special.logsumexp(logp, axis=1)) - 0.5 * d * np.log(2 * np.pi) - np.log(k)
        if prev is not None and abs(ll - prev) <= tol * abs(ll):
            return u, ll, t, True
        if t == max_iter:
            return u, ll, t, False
        resp = special.softmax(logp, axis=1)
        u = resp.T @ x / resp.sum(axis=0)[:, None]
        prev = ll


def test_batched_em_matches_a_reference_em_replicate_by_replicate():
    tr = truth(params(**SMALL))
    r, m = 6, 800
    x = CASE.sample(tr, m, streams("pretrain_data", r), "pretrain", "raw")["x_pre"][1]
    rng = np.random.default_rng(3)
    scales = np.array([0.01, 0.1, 0.3, 0.5, 1.0, 1.5])  # different iteration counts
    init = tr["centers"] + scales[:, None, None] * rng.standard_normal((r, 3, 6))
    out = em(x, init, 1e-10, 1000)
    assert out["converged"].all() and out["monotone"].all()
    assert len(np.unique(out["n_iter"])) > 1  # replicates stopped at different iterations
    for i in range(r):
        u, ll, it, conv = reference_em(x[i], init[i], 1e-10, 1000)
        np.testing.assert_allclose(out["centers"][i], u, atol=1e-6, rtol=0)
        np.testing.assert_allclose(out["centers"][i], u, atol=1e-11, rtol=0)  # in fact
        np.testing.assert_allclose(out["loglik"][i], ll, rtol=1e-12)
        assert out["n_iter"][i] == it and conv
    capped = em(x, init, 1e-10, 3)
    assert not capped["converged"].any() and (capped["n_iter"] == 3).all()
    np.testing.assert_allclose(capped["centers"][0], reference_em(x[0], init[0], 0.0, 3)[0])


def test_em_results_do_not_depend_on_the_batch(monkeypatch):
    """A replicate's EM output is bitwise the same whatever other replicates share the call
    (subsets, another order, alone) and however they are grouped (groups of 1, 3 or all
    replicates), with chunks of at most 256 rows (4 per replicate) and replicates stopping
    at different iterations."""
    tr = truth(params(**SMALL))
    r, m = 8, 1000
    x = CASE.sample(tr, m, streams("pretrain_data", r), "pretrain", "raw")["x_pre"][1]
    scales = np.linspace(0.01, 1.5, r)
    init = tr["centers"] + scales[:, None, None] * np.random.default_rng(3).standard_normal(
        (r, 3, 6)
    )
    monkeypatch.setattr(em_module, "CHUNK_ROWS", 256)
    monkeypatch.setattr(em_module, "GROUP_POINTS", m)
    whole = em(x, init, 1e-10, 1000)
    assert whole["converged"].all() and len(np.unique(whole["n_iter"])) > 1
    runs = []
    for points in (3 * m, r * m):
        monkeypatch.setattr(em_module, "GROUP_POINTS", points)
        runs.append((np.arange(r), em(x, init, 1e-10, 1000)))
    rng = np.random.default_rng(0)
    for sub in (rng.permutation(r)[:3], rng.permutation(r), np.array([5])):
        runs.append((sub, em(x[sub], init[sub], 1e-10, 1000)))
    for sub, out in runs:
        for key, val in whole.items():
            np.testing.assert_array_equal(out[key], val[sub], err_msg=key)


def test_em_falls_back_to_the_max_shifted_form_where_the_reference_overflows(monkeypatch):
    """With centres 40 e_i the logit differences to the first centre (about 1600 nats on the
    points of the other components) overflow the reference form: those replicates'
    iterations are redone in the max-shifted form. The result matches the reference EM, and
    a replicate without overflow in the same batch is unaffected (bitwise its result
    alone)."""
    far = truth(params(K=3, d=6, separation=40.0))
    near = truth(params(**SMALL))
    m = 600
    x = np.concatenate(
        [
            CASE.sample(far, m, streams("pretrain_data", 2), "pretrain", "raw")["x_pre"][1],
            CASE.sample(near, m, streams("pretrain_data", 1, 5), "pretrain", "raw")["x_pre"][1],
        ]
    )
    centers = np.stack([far["centers"], far["centers"], near["centers"]])
    init = centers + 0.5 * np.random.default_rng(4).standard_normal((3, 3, 6))
    calls = []
    shifted = em_module._shifted
    monkeypatch.setattr(em_module, "_shifted", lambda u, xc: calls.append(len(u)) or shifted(u, xc))
    out = em(x, init, 1e-12, 1000)
    assert calls and out["converged"].all() and out["monotone"].all()
    for i in range(3):
        u, ll, it, conv = reference_em(x[i], init[i], 1e-12, 1000)
        np.testing.assert_allclose(out["centers"][i], u, atol=1e-11, rtol=0)
        np.testing.assert_allclose(out["loglik"][i], ll, rtol=1e-12)
        assert out["n_iter"][i] == it and conv
    alone = em(x[2:], init[2:], 1e-12, 1000)
    for key, val in alone.items():
        np.testing.assert_array_equal(out[key][2:], val, err_msg=key)


def test_em_matches_scikit_learn():
    """(1) scikit-learn's spherical EM with weights and variances held at their known values
    gives the same centres to 1e-6; (2) the unconstrained spherical fit, whose variances come
    out within 0.02 of 1 and weights within 0.02 of 1/K, gives centres within 5/sqrt(m):
    a different estimator (K + K - 1 more parameters), so only O(m^-1/2) agreement."""
    tr = truth(params(**SMALL))
    m = 20000
    x = CASE.sample(tr, m, streams("pretrain_data", 1), "pretrain", "raw")["x_pre"][1]
    init = tr["centers"] + 0.1 * np.random.default_rng(4).standard_normal((1, 3, 6))
    ours = em(x, init, 1e-15, 5000)["centers"][0]
    common = {"n_components": 3, "covariance_type": "spherical", "means_init": init[0]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fixed = FixedWeightsAndVariance(
            **common,
            weights_init=np.full(3, 1 / 3),
            precisions_init=np.ones(3),
            tol=1e-15,
            max_iter=5000,
        ).fit(x[0])
        free = SkGaussianMixture(**common, tol=1e-12, max_iter=5000).fit(x[0])
    np.testing.assert_allclose(fixed.means_, ours, atol=1e-6, rtol=0)
    np.testing.assert_allclose(free.covariances_, 1.0, atol=0.02)
    np.testing.assert_allclose(free.weights_, 1 / 3, atol=0.02)
    np.testing.assert_allclose(free.means_, ours, atol=5 / np.sqrt(m), rtol=0)


def test_kmeans_plus_plus_restarts_reach_the_same_maximum():
    p = params(**SMALL, n=1000, alpha=2.0)
    tr = truth(p)
    r = 8
    x = CASE.sample(tr, p["m"], streams("pretrain_data", r), "pretrain", "raw")
    data = {"x_pre": x["x_pre"][1]}
    a = CASE.pretrain(tr, data, est(p), streams("pretrain_algorithm", r))
    b = CASE.pretrain(tr, data, {**est(p), "em_init": "kmeans++"}, streams("pretrain_algorithm", r))
    assert b["converged"][1].all() and b["loglik_monotone"][1].all()
    np.testing.assert_allclose(b["loglik"][1], a["loglik"][1], rtol=1e-9)
    ua = align(tr, a["representation"][1], p["m"])
    ub = align(tr, b["representation"][1], p["m"])
    np.testing.assert_allclose(
        ua["representation_aligned"], ub["representation_aligned"], atol=1e-4
    )
    with pytest.raises(ValueError, match="rngs"):
        CASE.pretrain(tr, data, est(p), None)


def test_chunked_runs_from_streams_equal_one_batched_run():
    p = params(**SMALL, n=100, alpha=3.0)
    tr = truth(p)
    r = 5
    x = CASE.sample(tr, 300, streams("pretrain_data", r), "pretrain", "raw")["x_pre"][1]
    whole = CASE.pretrain(tr, {"x_pre": x}, est(p), streams("pretrain_algorithm", r))
    chunked = CASE.pretrain_from_streams(
        tr,
        300,
        est(p),
        streams("pretrain_data", r),
        streams("pretrain_algorithm", r),
        max_floats=4000,
    )
    for key in whole:
        np.testing.assert_array_equal(chunked[key][1], whole[key][1])
    rep = whole["representation"][1]
    design = CASE.sample(tr, 100, streams("downstream_data", r), "downstream", "raw")
    d1 = CASE.downstream(tr, rep, {"x_down": design["x_down"][1]}, 100)
    d2 = CASE.downstream_from_streams(tr, rep, 100, streams("downstream_data", r), max_floats=1300)
    for key in d1:
        np.testing.assert_array_equal(d1[key][1], d2[key][1])


# ---------------------------------------------------------------------------- alignment, risk
def test_hungarian_alignment_recovers_the_labelling():
    tr = truth(params(K=5, d=7))
    rng = np.random.default_rng(6)
    perms = np.array([rng.permutation(5) for _ in range(10)])
    rep = tr["centers"][perms] + 0.05 * rng.standard_normal((10, 5, 7))
    al = align(tr, rep, 1000)
    g = al["group_element"]
    np.testing.assert_array_equal(g.sum(axis=1), 1.0)
    np.testing.assert_array_equal(g.sum(axis=2), 1.0)
    np.testing.assert_allclose(al["representation_aligned"], g @ rep)
    for i, perm in enumerate(perms):
        np.testing.assert_array_equal(g[i] @ np.eye(5)[perm], np.eye(5))
    np.testing.assert_allclose(
        al["center_error"],
        1000 * np.sum((al["representation_aligned"] - tr["centers"]) ** 2, axis=(1, 2)),
    )


def _estimates(p, r, seed=0):
    tr = truth(p)
    rng = np.random.default_rng(seed)
    rep = tr["centers"] + 0.05 * rng.standard_normal((r,) + tr["centers"].shape)
    design = CASE.sample(tr, p["n"], streams("downstream_data", r), "downstream", "raw")
    return tr, rep, {"x_down": design["x_down"][1]}


@pytest.mark.parametrize("n", [40, 6, 20_000])  # 6 < K (r* + 1) = 9: Sigma_n is singular
def test_exact_risk_decomposition_matches_a_direct_ambient_least_squares_fit(n):
    """Rep + Leak is the population excess risk of numpy's min-norm lstsq fit on the
    ambient features (6.4) to noise-free labels; Var = sigma^2 tr(Sigma Sigma_n^+)/n.
    n = 20,000 > 2 SWEEP_ROWS: the design's sums run over several chunks."""
    p = params(**SMALL, n=n)
    tr, rep, design = _estimates(p, 4)
    out = CASE.downstream(tr, rep, design, n)
    x_pop, f_pop = population(tr)
    r = int(tr["rank_S"])
    for i in range(4):
        phi = features(design["x_down"][i], rep[i], r)
        f = features(design["x_down"][i], tr["centers"], r) @ tr["theta"]
        coef = np.linalg.lstsq(phi, f, rcond=None)[0]
        np.testing.assert_allclose(out["coef"][1][i], coef, atol=1e-8)
        phi_pop = features(x_pop, rep[i], r)
        excess = np.mean((f_pop - phi_pop @ coef) ** 2)
        np.testing.assert_allclose(out["rep"][1][i] + out["leak"][1][i], excess, rtol=1e-7)
        sigma = phi_pop.T @ phi_pop / len(x_pop)
        var = tr["sigma2"] / n * np.trace(sigma @ np.linalg.pinv(phi.T @ phi / n))
        np.testing.assert_allclose(out["var"][1][i], var, rtol=1e-7)
        assert out["d_eff_n"][1][i] == min(n, 9)


def test_orbit_invariance_under_relabelling_of_the_centres():
    """Lemma 4.1: a random permutation of the centres changes n Rep, n Leak, n Var by less
    than 1e-10 and permutes the blocks of the coefficient, whether the population fits are
    shared with the original labelling (the cache) or recomputed."""
    p = params(**SMALL, n=200)
    tr, rep, design = _estimates(p, 20)
    rng = np.random.default_rng(8)
    perms = np.array([rng.permutation(3) for _ in range(20)])
    moved = np.take_along_axis(rep, perms[:, :, None], axis=1)
    a = CASE.downstream(tr, rep, design, 200)
    shared = CASE.downstream(tr, moved, design, 200)  # population fits shared with a
    clear_fit_cache()
    fresh = CASE.downstream(tr, moved, design, 200)  # population fits of the relabelled centres
    for b in (shared, fresh):
        for term in ("rep", "leak", "var"):
            assert np.max(np.abs(200 * (a[term][1] - b[term][1]))) < 1e-10, term
        blocks = a["coef"][1].reshape(20, 3, 7)
        np.testing.assert_allclose(
            b["coef"][1].reshape(20, 3, 7),
            np.take_along_axis(blocks, perms[:, :, None], 1),
            atol=1e-9,
        )
        np.testing.assert_array_equal(a["d_eff_n"][1], b["d_eff_n"][1])


def test_population_fit_by_chunks_is_the_least_squares_fit_on_the_whole_sample():
    """population_fit sweeps the sample in chunks (Rep from sums around the first chunk's
    coefficient); on SMALL's 20,000 points (two full chunks and a partial one) it is the
    least-squares fit on all the features at once (numpy's lstsq) up to round-off: sigma
    and beta to 1e-12 relative (sums of 2e4 products in another order; Sigma is well
    conditioned), Rep (a minimum: first-order insensitive to beta) to 1e-10 relative, and
    the mean square of fit_residual is Rep. Also far from U*, where Rep is large."""
    p = params(**SMALL)
    assert p["population_size"] > 2 * SWEEP_ROWS
    tr = truth(p)
    x, f = population(tr)
    rng = np.random.default_rng(3)
    for scale in (0.01, 0.1, 1.0):
        u = tr["centers"] + scale * rng.standard_normal(tr["centers"].shape)
        fit = population_fit(tr, u)
        psi = features_t(x, u, fit["q"])[0].T
        beta = np.linalg.lstsq(psi, f, rcond=None)[0]
        rep = np.mean((f - psi @ beta) ** 2)
        sigma = psi.T @ psi / len(x)
        np.testing.assert_allclose(fit["sigma"], sigma, rtol=0, atol=1e-12 * np.abs(sigma).max())
        np.testing.assert_allclose(fit["beta"], beta, rtol=0, atol=1e-12 * np.abs(beta).max())
        np.testing.assert_allclose(fit["rep"], rep, rtol=1e-10)
        e = fit_residual(tr, u)
        np.testing.assert_allclose(np.mean(e**2), fit["rep"], rtol=1e-10)
        assert rep > 0


def test_population_fit_is_shared_by_relabellings_of_the_same_centres():
    """relabelled_population_fit: the first time a set of centres is seen it is
    population_fit bitwise; a relabelling gets the stored fit with its blocks permuted
    (exactly), which is a fresh population_fit of the relabelled centres up to round-off
    (compared in the ambient coordinates, the basis q being the stored one); and downstream
    results do not depend on what the cache holds."""
    p = params(**SMALL, n=50)
    tr, rep, design = _estimates(p, 3)
    clear_fit_cache()
    u = rep[0]
    first = relabelled_population_fit(tr, u)
    fresh = population_fit(tr, u)
    for key, val in first.items():
        np.testing.assert_array_equal(val, fresh[key], err_msg=key)
    perm = np.array([2, 0, 1])
    moved = relabelled_population_fit(tr, u[perm])
    np.testing.assert_array_equal(moved["q"], first["q"])
    np.testing.assert_array_equal(moved["beta"], first["beta"].reshape(3, -1)[perm].ravel())
    blocks = first["sigma"].reshape(3, 3, 3, 3)[perm][:, :, perm]
    np.testing.assert_array_equal(moved["sigma"], blocks.reshape(9, 9))
    assert moved["rep"] == first["rep"]
    direct = population_fit(tr, u[perm])
    np.testing.assert_allclose(
        embed_theta(moved["beta"], moved["q"], 3),
        embed_theta(direct["beta"], direct["q"], 3),
        atol=1e-12 * np.abs(direct["beta"]).max(),
    )
    np.testing.assert_allclose(moved["rep"], direct["rep"], rtol=1e-10)
    hit = arrays(CASE.downstream(tr, rep, design, 50))
    clear_fit_cache()
    cold = arrays(CASE.downstream(tr, rep, design, 50))
    for key, val in cold.items():
        np.testing.assert_array_equal(hit[key], val, err_msg=key)


# ---------------------------------------------------------------------------- theory
@pytest.mark.parametrize(
    "centers",
    [
        None,  # 2.5 I_(3,6)
        [[0.3, -1.0, 2.0, 0.5, 0.0], [1.5, 0.7, -0.4, 0.0, 1.0], [-1.0, 1.0, 0.6, -0.8, 0.4]],
        [[0.0, 0.0, 0.0], [2.0, 0.5, 0.0], [4.0, 1.0, 0.0]],  # collinear: r* = 1 < K - 1
    ],
)
def test_analytic_derivative_of_the_residual_equals_finite_differences(centers):
    d = 6 if centers is None else len(centers[0])
    p = params(**{**SMALL, "d": d, "centers": centers})
    tr = truth(p)
    assert int(tr["rank_S"]) == (1 if centers and centers[0] == [0.0, 0.0, 0.0] else 2)
    hh, ph, pp, cnt = residual_derivative_gram(tr, groups=3)
    analytic = _g_l(hh.sum(0), ph.sum(0), pp.sum(0), float(cnt.sum()))
    numeric = finite_difference_gram(tr)
    scale = np.abs(analytic).max()
    assert scale > 0
    np.testing.assert_allclose(analytic, numeric, atol=1e-8 * scale, rtol=0)
    lim = CASE.limit(tr, est(p), method="finite_difference")
    np.testing.assert_allclose(lim["G_L"][1], numeric, atol=1e-12 * scale)


def test_fisher_sums_equal_the_per_point_formulas():
    """The chunked, feature-major sums of fisher_sums equal the per-point scores
    s_i = pi_i (x - u_i) and sum pi_i z_i z_i^T written literally (3 groups)."""
    tr = truth(params(**SMALL))
    ss, extra, counts = fisher_sums(tr, groups=3)
    x = stratified_sample(tr, FISHER)
    u = tr["centers"]
    pi = responsibilities(x, u, None)
    z = x[:, None, :] - u
    s = (pi[..., None] * z).reshape(len(x), -1)
    edges = np.linspace(0, len(x), 4).astype(int)
    np.testing.assert_array_equal(counts, np.diff(edges))
    for g in range(3):
        block = s[edges[g] : edges[g + 1]]
        np.testing.assert_allclose(ss[g], block.T @ block, rtol=0, atol=1e-12 * len(block))
    direct = np.einsum("ni,nia,nib->iab", pi, z, z) - pi.sum(axis=0)[:, None, None] * np.eye(6)
    np.testing.assert_allclose(extra, -direct / len(x), rtol=0, atol=1e-14)


def test_g_l_is_the_curvature_of_the_representation_error():
    """Rep(U* + eps v) / eps^2 -> v^T G_L v (same population sample)."""
    tr = truth(params(**SMALL))
    g_l = CASE.limit(tr, {})["G_L"][1]
    rng = np.random.default_rng(9)
    for _ in range(3):
        v = rng.standard_normal(18)
        v /= np.linalg.norm(v)
        eps = 1e-4
        rep = population_fit(tr, tr["centers"] + eps * v.reshape(3, 6))["rep"]
        np.testing.assert_allclose(rep / eps**2, v @ g_l @ v, rtol=2e-3)
    assert population_fit(tr, tr["centers"])["rep"] < 1e-25


def test_expected_magnitude_of_the_limit():
    """An independent reference computation: K = 4, d = 20, beta = 2, ||theta*|| = 1 gives
    E||L(Z)||^2 = 0.02934 (+- 0.00002); here within 4 jackknife standard errors of our
    2e5 / 1e5-point Monte Carlo; ||theta*|| = 10 gives exactly 100 times the weights. Also
    the information identity E[Hessian] = E[s s^T] holds to Monte Carlo accuracy (1e5
    points)."""
    base = {"K": 4, "d": 20, "separation": 2.0}
    lim1 = CASE.limit(truth(params(**base, theta_norm=1.0)), {})
    lim10 = CASE.limit(truth(params(**base, theta_norm=10.0)), {})
    mean, se = lim1["limit_weights"][1].sum(), float(lim1["mean_L2_se"][1])
    assert 0 < se < 3e-4
    assert abs(mean - 0.02934) < 4 * se + 2e-5, (mean, se)
    np.testing.assert_allclose(
        lim10["limit_weights"][1], 100 * lim1["limit_weights"][1], rtol=1e-10, atol=1e-14
    )
    np.testing.assert_allclose(np.sum(lim1["V"][1] * lim1["G_L"][1]), mean, rtol=1e-8)
    assert int(lim1["d_eff"][1]) == 16
    h, s = lim1["hessian"][1], lim1["score_cov"][1]
    # entries are means of terms of s.d. <~ 1: allow 6 standard errors 6 / sqrt(fisher_size)
    assert np.abs(h - s).max() < 6 / np.sqrt(1e5)
    np.testing.assert_allclose(lim1["V"][1] @ s, np.eye(80), atol=1e-9)


@pytest.mark.statistical
def test_scaled_risk_terms_follow_the_limit_at_a_reduced_fig3_point():
    """K = 4, d = 20, beta = 2, ||theta*|| = 10, alpha = 2, n = 2000 (m = 4000), 400
    replicates, EM from the perturbed truth.

    * n Rep against alpha^-1 ||L(Z)||^2 (exact CDF): KS below the 1% critical value (0.081).
    * m ||G U_hat - U*||^2 against sum eig(V) chi2_1 (the pre-training CLT): same.
    * n Var: its mean within 2% of sigma^2 K^2 = 4 (finite-n bias about K^2/n = 0.8%,
      Monte Carlo s.e. about 0.1%), and P(|n Var - 4| > 0.05 * 4) < 0.05 (the paper reads
      p_var = 0.01 at n = 2154).
    * n Leak -> 0: its mean is below 1% of sigma^2 K^2.
    The Monte Carlo error of the limit itself (jackknife s.e. 0.4% of E||L||^2) is far
    below the KS resolution 1/sqrt(R) = 5%.
    """
    r, n = 400, 2000
    p = params(K=4, d=20, separation=2.0, theta_norm=10.0, n=n, alpha=2.0)
    tr = truth(p, seed=2026)
    with threadpool_limits(limits=1):  # as in the workflow's jobs; about 25 s in all
        pre = CASE.pretrain_from_streams(
            tr,
            p["m"],
            est(p),
            streams("pretrain_data", r, 5),
            streams("pretrain_algorithm", r, 5),
        )
        rep = pre["representation"][1]
        al = align(tr, rep, p["m"])
        down = CASE.downstream_from_streams(tr, rep, n, streams("downstream_data", r, 5))
        lim = CASE.limit(tr, est(p))
    assert pre["converged"][1].all() and pre["loglik_monotone"][1].all()
    weights = lim["limit_weights"][1]
    n_rep, n_var, n_leak = (n * down[t][1] for t in ("rep", "var", "leak"))
    ks_pre = stats.kstest(n_rep, GeneralizedChiSquare(weights / 2.0).cdf).statistic
    assert ks_pre < crit(r), ks_pre
    ks_c = stats.kstest(al["center_error"], GeneralizedChiSquare(lim["law_center_error"][1]).cdf)
    assert ks_c.statistic < crit(r), ks_c.statistic
    target = p["sigma2"] * 16
    assert abs(n_var.mean() / target - 1) < 0.02, n_var.mean()
    assert np.mean(np.abs(n_var - target) > 0.05 * target) < 0.05
    assert n_leak.mean() < 0.01 * target, n_leak.mean()
    assert (down["d_eff_n"][1] == 16).all()


def test_stage_functions_run_the_case_and_regenerate_the_same_data():
    """Through twostage.stages: the simulate file holds the truth only, and
    pretrain/downstream regenerate the data from the keyed streams, giving the numbers of
    the direct calls."""
    p = params(**SMALL, n=150, alpha=2.0)
    spec = study_spec("gmm", {k: v for k, v in p.items() if k != "m"}, replicates=12, seed=3)
    (pt,) = expand_study("t", spec)
    sim = stages.simulate(pt, 0, 12)
    assert not any(v.startswith("x_") for v in sim.data_vars)
    pre = stages.pretrain(sim)
    al = stages.align(pre)
    down = stages.downstream(al, sim)
    tr = stages.truth_of(sim)
    reps = range(12)
    direct = CASE.pretrain_from_streams(
        tr,
        pt.m,
        pt.estimator,
        pt.streams("pretrain_data", reps),
        pt.streams("pretrain_algorithm", reps),
    )
    np.testing.assert_array_equal(pre["representation"].values, direct["representation"][1])
    risk = CASE.downstream_from_streams(
        tr, direct["representation"][1], pt.n, pt.streams("downstream_data", reps)
    )
    np.testing.assert_array_equal(down["rep"].values, risk["rep"][1])
    assert float(down["orbit_invariance_error"].values.max()) < 1e-10
    th = stages.theory(pt).to_xarray()
    out, _ = stages.aggregate([[down.to_xarray()]], [th], ks_bootstrap=0)
    for key in ("ks_pre", "ks_center_error", "p_var"):
        assert np.isfinite(float(out[key][0])), key
