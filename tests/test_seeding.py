from __future__ import annotations

import numpy as np
import xarray as xr

from twostage import stages
from twostage.config import expand_study
from twostage.seeding import digest_words, stream

STUDY = {
    "case": "factor",
    "replicates": 40,
    "params": {"d": 5, "k": 2, "factor_strengths": [2.0, 1.0], "n": 30, "alpha": 2.0},
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
    xr.testing.assert_equal(whole.sel(replicate=slice(25, 39)), part)


def test_truth_is_shared_by_points_that_differ_only_in_sample_size():
    spec = {**STUDY, "params": {**STUDY["params"]}, "grid": {"n": [30, 300]}}
    p1, p2 = expand_study("s", spec)
    t1, t2 = stages.truth(p1), stages.truth(p2)
    assert np.array_equal(t1["A"], t2["A"]) and p1.point_id != p2.point_id
