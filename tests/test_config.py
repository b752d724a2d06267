from __future__ import annotations

import copy

import pytest

from twostage.config import expand_study, load_config, pretrain_size, validate_config
from twostage.errors import ConfigError

BASE = {
    "studies": {
        "s": {
            "case": "factor",
            "replicates": 10,
            "params": {"d": 6, "k": 2, "factor_strengths": [3.0, 1.0]},
            "grid": {"n": [100, 200], "alpha": [2.0]},
        }
    }
}


def with_(path: str, value) -> dict:
    cfg = copy.deepcopy(BASE)
    node = cfg
    *head, last = path.split(".")
    for key in head:
        node = node[key]
    node[last] = value
    return cfg


def test_defaults_filled_and_points_expanded():
    cfg = validate_config(BASE)
    study = cfg["studies"]["s"]
    assert (
        study["shard_size"] == 500 and study["sampling"] == "sufficient" and study["seed"] == 20260
    )
    points = expand_study("s", study)
    assert [p.n for p in points] == [100, 200] and [p.m for p in points] == [200, 400]
    assert points[0].params["sigma_nu2"] == 0.5 and points[0].params["loadings"] == "random"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("studies.s.replicates", -3, "studies.s.replicates"),
        ("studies.s.replicats", 5, "replicats"),
        ("studies.s.case", "spectre", "studies.s.case"),
        ("studies.s.sampling", "exact", "studies.s.sampling"),
        ("studies.s.params.d", "twenty", "studies.s.params.d"),
        ("studies.s.params.dd", 3, "dd"),
        ("studies.s.params.factor_strengths", [3.0, 1.0, 0.5], "studies.s.params.factor_strengths"),
        ("studies.s.params.k", 6, "studies.s.params.k"),
        ("studies.s.grid.n", [100, -1], "studies.s.grid.n"),
        ("studies.s.grid.nn", [100], "nn"),
        ("studies.s.grid.alpha", [0.001], "studies.s.grid.alpha"),
    ],
)
def test_bad_key_or_value_names_the_key(path, value, expected):
    with pytest.raises(ConfigError) as err:
        validate_config(with_(path, value))
    msg = str(err.value)
    assert expected in msg and "\n" not in msg, msg


def test_message_says_what_was_expected():
    with pytest.raises(
        ConfigError, match=r"studies\.s\.replicates.*expected: Number of Monte Carlo"
    ):
        validate_config(with_("studies.s.replicates", -1))


def test_point_ids_do_not_depend_on_order_or_number_spelling():
    a = expand_study("s", validate_config(BASE)["studies"]["s"])
    cfg = with_("studies.s.grid", {"alpha": [2], "n": [200, 100]})
    b = expand_study("s", validate_config(cfg)["studies"]["s"])
    assert {p.point_id for p in a} == {p.point_id for p in b}


def test_pretrain_size_is_exact_decimal_floor():
    assert (
        pretrain_size(30, 0.1) == 3
        and pretrain_size(215, 2.0) == 430
        and pretrain_size(215, 0.5) == 107
    )


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("studies: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_embedded_default_config_is_valid(root):
    cfg = load_config(root / "config" / "config.yaml")
    assert cfg["studies"]


def test_nested_numbers_are_normalised_too():
    """Explicit mixture centres written with ints or floats are the same point."""
    spec = {"case": "gmm", "replicates": 0, "params": {"K": 2, "d": 2}}
    a = expand_study("g", {**spec, "params": {**spec["params"], "centers": [[2, 0], [0, 2]]}})
    b = expand_study(
        "g", {**spec, "params": {**spec["params"], "centers": [[2.0, 0.0], [0.0, 2.0]]}}
    )
    assert a[0].point_id == b[0].point_id
