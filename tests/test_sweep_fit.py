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
