from __future__ import annotations

import numpy as np
import pytest

from twostage.stages import fit_curve


@pytest.mark.parametrize(
    ("kind", "fun", "coef"),
    [
        ("quadratic", lambda x: 0.5 * x**2 - 2 * x + 3, [0.5, -2, 3]),
        ("log", lambda x: 1.5 + 0.25 * np.log(x), [1.5, 0.25]),
        ("power", lambda x: 3.0 * x**-1.7, [3.0, -1.7]),
    ],
)
def test_fit_recovers_exact_curves(kind, fun, coef):
    x = np.geomspace(0.6, 14, 9)
    res = fit_curve(x, fun(x), kind)
    np.testing.assert_allclose(res["coef"], coef, rtol=1e-9)
    assert res["r2"] == pytest.approx(1.0, abs=1e-12)


def test_fit_r2_is_below_one_with_noise_and_bad_kind_fails():
    x = np.arange(1.0, 11.0)
    y = x**2 + np.random.default_rng(0).standard_normal(10) * 5
    assert 0.5 < fit_curve(x, y, "quadratic")["r2"] < 1.0
    with pytest.raises(ValueError, match="fit must be"):
        fit_curve(x, y, "cubic")


def test_sweep_against_a_scalar_output_of_the_limit():
    """A sweep over a list-valued parameter (factor_strengths) drawn against the limit's
    scalar D: x = D of each point, one series, and E||L(Z)||^2 falls with D (stronger
    factors, canonical loadings)."""
    from twostage import stages
    from twostage.config import expand_study, validate_config

    study = {
        "case": "factor",
        "replicates": 0,
        "sweep_x": "D",
        "population": {"d": 6, "k": 2, "loadings": "canonical"},
        "grid": {"factor_strengths": [[1.0, 0.5], [4.0, 2.0], [16.0, 8.0]]},
    }
    validate_config({"studies": {"s": study}})
    points = expand_study("s", study)
    sw = stages.sweep([stages.theory(p).to_xarray() for p in points], "power", "D")
    np.testing.assert_allclose(sw["x"].values, [1.0, 2.0, 4.0])
    assert set(sw["series"].values) == {""} and sw.attrs["swept"] == "D"
    assert np.all(np.diff(sw["mean_L2"].values) < 0)


def test_sweep_x_must_be_a_scalar_theory_output():
    from twostage.config import validate_config
    from twostage.errors import ConfigError

    bad = {
        "case": "factor",
        "replicates": 0,
        "sweep_x": "limit_weights",
        "population": {"d": 6, "k": 2, "factor_strengths": [2.0, 1.0]},
    }
    with pytest.raises(ConfigError, match=r"studies\.s\.sweep_x.*scalar theory output"):
        validate_config({"studies": {"s": bad}})
