from __future__ import annotations

import copy

import pytest
from conftest import ROOT

from twostage.config import expand_study, load_config, pretrain_size, validate_config
from twostage.errors import ConfigError

BASE = {
    "studies": {
        "s": {
            "case": "factor",
            "replicates": 10,
            "population": {"d": 6, "k": 2, "factor_strengths": [3.0, 1.0]},
            "grid": {"n": [100, 200], "alpha": [2.0]},
        }
    }
}


def with_(path: str, value) -> dict:
    cfg = copy.deepcopy(BASE)
    node = cfg
    *head, last = path.split(".")
    for key in head:
        node = node.setdefault(key, {})
    node[last] = value
    return cfg


def test_defaults_filled_and_points_expanded():
    cfg = validate_config(BASE)
    study = cfg["studies"]["s"]
    assert (
        study["shard_size"] == "auto"
        and study["sampling"] == "sufficient"
        and study["seed"] == 20260
    )
    points = expand_study("s", study)
    assert [p.n for p in points] == [100, 200] and [p.m for p in points] == [200, 400]
    assert points[0].population["sigma_nu2"] == 0.5
    assert points[0].population["loadings"] == "random" and points[0].estimator == {}


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("studies.s.replicates", -3, "studies.s.replicates"),
        ("studies.s.replicats", 5, "replicats"),
        ("studies.s.case", "spectre", "studies.s.case"),
        ("studies.s.sampling", "exact", "studies.s.sampling"),
        ("studies.s.population.d", "twenty", "studies.s.population.d"),
        ("studies.s.population.dd", 3, "dd"),
        ("studies.s.estimator.gtol", 1e-3, "gtol"),
        (
            "studies.s.population.factor_strengths",
            [3.0, 1.0, 0.5],
            "studies.s.population.factor_strengths",
        ),
        ("studies.s.population.k", 6, "studies.s.population.k"),
        ("studies.s.n", 0, "studies.s.n"),
        ("studies.s.grid.n", [100, -1], "studies.s.grid.n"),
        ("studies.s.grid.nn", [100], "nn"),
        ("studies.s.grid.alpha", [0.001], "studies.s.grid.alpha"),
        ("studies.s.grid.k", [2, 6], "studies.s.grid.k"),
        ("studies.s.grid.d", [6, "x"], "studies.s.grid.d"),
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


SHIPPED = sorted(p.name for p in (ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid(root, name):
    """The embedded default and every named config under config/ validate and expand."""
    cfg = load_config(root / "config" / name)
    assert cfg["studies"]
    for study, spec in cfg["studies"].items():
        assert expand_study(study, spec)


def test_the_default_is_the_small_tour(root):
    """config/config.yaml is the one-minute tour: every Monte Carlo case of overview.yaml,
    on a subset of its grid (the finer grid lives in config/overview.yaml)."""
    small = load_config(root / "config" / "config.yaml")["studies"]
    full = load_config(root / "config" / "overview.yaml")["studies"]
    assert small.keys() == full.keys()
    for name, spec in small.items():
        wide = full[name]
        assert {k: v for k, v in spec.items() if k != "grid"} == {
            k: v for k, v in wide.items() if k != "grid"
        }, name
        for key, values in spec["grid"].items():
            assert set(values) <= set(wide["grid"][key]), (name, key)
    points = sum(len(expand_study(n, s)) for n, s in small.items())
    assert points <= sum(len(expand_study(n, s)) for n, s in full.items()) // 2


def test_nested_numbers_are_normalised_too():
    """Explicit mixture centres written with ints or floats are the same point."""
    spec = {"case": "gmm", "replicates": 0, "population": {"K": 2, "d": 2}}
    pop = spec["population"]
    a = expand_study("g", {**spec, "population": {**pop, "centers": [[2, 0], [0, 2]]}})
    b = expand_study("g", {**spec, "population": {**pop, "centers": [[2.0, 0.0], [0.0, 2.0]]}})
    assert a[0].point_id == b[0].point_id


def test_the_three_kinds_of_settings_are_kept_apart():
    """Population, estimator and sample sizes live apart in the config and the Point; a grid
    may sweep any of them; each key is reported where it was written."""
    study = {
        "case": "gmm",
        "replicates": 0,
        "population": {"K": 2, "d": 3},
        "estimator": {"em_tol": 1e-8},
        "n": 100,
        "grid": {"em_max_iter": [50, 60], "d": [3, 4], "alpha": [1.0, 2.0]},
    }
    points = expand_study("g", study)
    assert len(points) == 8
    p = points[0]
    assert set(p.population) >= {"K", "d", "separation", "population_size"}
    assert set(p.estimator) == {"em_init", "em_init_scale", "em_restarts", "em_tol", "em_max_iter"}
    assert p.n == 100 and p.m == int(p.alpha * 100)
    with pytest.raises(ConfigError, match=r"'studies\.g\.grid\.em_max_iter'"):
        expand_study("g", {**study, "grid": {"em_max_iter": [0]}})
    with pytest.raises(ConfigError, match=r"'studies\.g\.estimator\.em_tol'"):
        expand_study("g", {**study, "estimator": {"em_tol": -1.0}})
    with pytest.raises(ConfigError, match=r"'studies\.g\.grid\.em_tolerance': unknown key"):
        expand_study("g", {**study, "grid": {"em_tolerance": [1.0]}})
    with pytest.raises(ConfigError, match=r"'studies\.g\.estimator\.d': unknown key"):
        expand_study("g", {**study, "estimator": {"d": 3}})


def test_case_keys_are_unique_across_kinds_and_sizes():
    from twostage.cases import REGISTRY
    from twostage.config import SAMPLE_SIZE_KEYS, case_keys

    for case in REGISTRY:
        pop, est = case_keys(case, "population"), case_keys(case, "estimator")
        assert not set(pop) & set(est), case
        assert not (set(pop) | set(est)) & {*SAMPLE_SIZE_KEYS, "m"}, case


def test_auto_shard_size_follows_the_cost_model_and_target():
    """shard_size: auto gives about target_job_seconds of work to the costliest shard job
    (rounded down to two significant digits); a longer target, larger shards."""
    from twostage.costs import SHARD_RULES, predict

    study = {**BASE["studies"]["s"], "replicates": 100_000}
    short = expand_study("s", {**study, "target_job_seconds": 5.0})
    long = expand_study("s", {**study, "target_job_seconds": 500.0})
    for p, q in zip(short, long, strict=True):
        assert 1 <= p.shard_size < q.shard_size
        work = max(predict(p, r, p.shard_size)[0] - predict(p, r, 0)[0] for r in SHARD_RULES)
        assert work <= 5.0 and (p.shard_size < 10 or work >= 0.9 * 5.0)
    run_default = expand_study("s", study, target_job_seconds=50.0)
    assert (
        run_default[0].shard_size
        == expand_study("s", {**study, "target_job_seconds": 50.0})[0].shard_size
    )
    with pytest.raises(ConfigError, match="studies.s.shard_size"):
        validate_config(with_("studies.s.shard_size", "big"))


def test_theory_batches_cut_the_grid_by_predicted_work():
    """The limits of a study are computed by batches of consecutive points (grid order),
    each of about target_job_seconds of predicted work (per_point_s per point, at least one
    point per batch); every point lands in exactly one batch."""
    from twostage.config import job_seconds
    from twostage.costs import predict_theory, rule_cost, theory_batches

    study = {**BASE["studies"]["s"], "grid": {"n": [100, 200, 300, 400, 500, 600, 700]}}
    points = expand_study("s", study)
    per = rule_cost(points[0], "theory")["per_point_s"]
    assert per > 0
    for target, sizes in (
        (0.5 * per, [1] * 7),
        (2.5 * per, [2, 2, 2, 1]),
        (3.0 * per, [3, 3, 1]),
        (100 * per, [7]),
    ):
        batches = theory_batches(points, target)
        assert [len(b) for b in batches] == sizes, target
        assert [p for b in batches for p in b] == points
    assert job_seconds({"target_job_seconds": None}) == job_seconds({}) == 20.0
    assert job_seconds({"target_job_seconds": None}, 60.0) == 60.0
    assert job_seconds({"target_job_seconds": 7.0}, 60.0) == 7.0
    seconds, mb = predict_theory(points[:3])
    assert seconds == pytest.approx(rule_cost(points[0], "theory")["base_s"] + 3 * per)
    assert mb == rule_cost(points[0], "theory")["base_mb"]


def test_shard_batches_group_cheap_shards_by_shard_index():
    """The stage jobs run by batches of shards: shard index by shard index (so that raising
    replicates adds batches and keeps the others), consecutive points in grid order, as
    many as fit in target_job_seconds of predicted work of the costliest stage; a job's
    prediction is one start-up plus each shard's work, its memory the largest shard's."""
    from twostage.costs import SHARD_RULES, predict, predict_shards, rule_cost, shard_batches

    study = {**BASE["studies"]["s"], "replicates": 60, "shard_size": 25,
             "grid": {"n": [100, 200, 300]}}  # fmt: skip
    points = expand_study("s", study)
    work = max(rule_cost(points[0], r)["per_replicate_s"] for r in SHARD_RULES) * 25
    big = shard_batches(points, 100 * work)
    assert [[(p.n, s) for p, s in b] for b in big] == [
        [(100, s), (200, s), (300, s)] for s in (0, 1, 2)
    ]
    assert [len(b) for b in shard_batches(points, 2.5 * work)] == [2, 1, 2, 1, 3]
    assert [len(b) for b in shard_batches(points, 0.5 * work)] == [1] * 9
    more = expand_study("s", {**study, "replicates": 100})  # shard 2 grows, shard 3 is new

    def ids(batches):
        return [[(p.point_id, s, p.shard_range(s)) for p, s in b] for b in batches]

    assert ids(shard_batches(more, 100 * work))[:2] == ids(big)[:2]
    assert len(shard_batches(more, 100 * work)) == 4
    seconds, mb = predict_shards("simulate", [(points[0], 25), (points[1], 10)])
    base = rule_cost(points[0], "simulate")["base_s"]
    want = predict(points[0], "simulate", 25)[0] + predict(points[1], "simulate", 10)[0] - base
    assert seconds == pytest.approx(want)
    assert mb == predict(points[0], "simulate", 25)[1]
