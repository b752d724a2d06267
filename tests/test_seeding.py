from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from twostage import stages
from twostage.cases import get_case
from twostage.config import expand_study
from twostage.seeding import digest_words, stream

STUDY = {
    "case": "factor",
    "replicates": 40,
    "population": {"d": 5, "k": 2, "factor_strengths": [2.0, 1.0]},
    "n": 30,
    "alpha": 2.0,
}


def test_streams_are_keyed_by_what_not_where():
    w = digest_words({"a": 1})
    a = stream("pretrain_data", 3, w, 11).standard_normal(4)
    b = stream("pretrain_data", 3, w, 11).standard_normal(4)
    c = stream("downstream_data", 3, w, 11).standard_normal(4)
    d = stream("pretrain_data", 4, w, 11).standard_normal(4)
    assert np.array_equal(a, b) and not np.allclose(a, c) and not np.allclose(a, d)


def test_replicates_do_not_depend_on_the_shard_they_are_in():
    (point,) = expand_study("s", STUDY)
    whole = stages.simulate(point, 0, 40)
    part = stages.simulate(point, 25, 40)
    xr.testing.assert_equal(whole.to_xarray().sel(replicate=slice(25, 39)), part.to_xarray())


def test_truth_is_shared_by_points_that_differ_only_in_sample_size():
    spec = {**STUDY, "grid": {"n": [30, 300]}}
    p1, p2 = expand_study("s", spec)
    t1, t2 = stages.truth(p1), stages.truth(p2)
    assert np.array_equal(t1["A"], t2["A"]) and p1.point_id != p2.point_id
    # but not their data: the downstream design is keyed by n, the pre-training data by m
    s1, s2 = stages.simulate(p1, 0, 2), stages.simulate(p2, 0, 2)
    assert not np.allclose(s1["S_down"].values, s2["S_down"].values)


def _estimator_twins(case: str, population: dict, estimator_grid: dict, **sizes):
    study = {
        "case": case,
        "replicates": 3,
        "population": population,
        "grid": estimator_grid,
        **sizes,
    }
    return expand_study("s", study)


def test_points_differing_in_an_estimator_setting_share_truth_data_and_population_sample():
    """gmm em_tol: the truth (centres, theta*, population seed), the pre-training data and
    the population Monte Carlo sample are identical bit for bit; only the estimate may
    change. Common random numbers hold across an estimator sweep."""
    from twostage.cases.gmm.population import POPULATION, stratified_sample

    small = {"K": 2, "d": 3, "population_size": 400, "fisher_size": 400}
    p1, p2 = _estimator_twins("gmm", small, {"em_tol": [1e-4, 1e-10]}, n=40)
    assert p1.point_id != p2.point_id and p1.estimator != p2.estimator
    t1, t2 = stages.truth(p1), stages.truth(p2)
    assert t1.keys() == t2.keys()
    for key in t1:
        np.testing.assert_array_equal(t1[key], t2[key])
    np.testing.assert_array_equal(
        stratified_sample(t1, POPULATION), stratified_sample(t2, POPULATION)
    )
    case = get_case("gmm")
    x1 = case.sample(t1, p1.m, p1.streams("pretrain_data", range(3)), "pretrain", "raw")
    x2 = case.sample(t2, p2.m, p2.streams("pretrain_data", range(3)), "pretrain", "raw")
    np.testing.assert_array_equal(x1["x_pre"][1], x2["x_pre"][1])
    d1, d2 = stages.pretrain(stages.simulate(p1, 0, 3)), stages.pretrain(stages.simulate(p2, 0, 3))
    assert (d1["n_iter"].values <= d2["n_iter"].values).all()  # a looser tolerance stops sooner


def test_spectral_n_starts_twins_share_truth_and_data():
    p1, p2 = _estimator_twins("spectral", {"d": 4, "k": 2}, {"n_starts": [1, 3]}, n=200)
    s1, s2 = stages.simulate(p1, 0, 3), stages.simulate(p2, 0, 3)
    for name in s1.data_vars:
        np.testing.assert_array_equal(s1[name].values, s2[name].values)
    # the spectral start is start 0 of both: with one start the loss can only be higher
    o1 = stages.pretrain(s1)["objective"].values
    o3 = stages.pretrain(s2)["objective"].values
    assert (o3 <= o1 + 1e-12).all()


def test_streams_are_the_documented_seed_sequences():
    """stream(...) is Generator(PCG64(SeedSequence([stage_id, replicate, *words, seed])))
    exactly (the fast uint32-array path gives the same draws), also for extreme values."""
    import numpy as np

    from twostage.seeding import STREAMS

    w = digest_words({"b": 2})
    for rep, seed in ((0, 0), (7, 2**32 - 1), (2**31, 5), (2**32 + 3, 1)):
        ref = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([STREAMS["downstream_data"], rep, *w, seed]))
        )
        got = stream("downstream_data", rep, w, seed)
        assert np.array_equal(ref.standard_normal(8), got.standard_normal(8))


@pytest.mark.parametrize("d", [2, 3, 7, 20, 50])
def test_haar_orthogonal_is_scipys_ortho_group_bit_for_bit(d: int) -> None:
    """The truth's Haar draws (loadings, subspaces) avoid importing scipy.stats at start-up;
    they must stay the same draws as ``scipy.stats.ortho_group`` (results unchanged) and be
    orthogonal."""
    from scipy.stats import ortho_group

    from twostage.groups import haar_orthogonal

    for seed in range(3):
        ours = haar_orthogonal(d, np.random.default_rng(seed))
        ref = ortho_group.rvs(d, random_state=np.random.default_rng(seed))
        assert np.array_equal(ours, ref)
        np.testing.assert_allclose(ours.T @ ours, np.eye(d), atol=1e-13)
