"""The contract every registered case study must satisfy (scikit-learn's
``check_estimator`` idea): parametrized over ``twostage.cases.REGISTRY``, so a new case gets
these checks for free.

Checks, per case:
1. its schema fragment is a valid JSON schema; every key has a type, a description, a
   default that validates, and a range for numbers; key names are unique across
   population, estimator and the sample sizes and do not shadow any variable name;
2. the defaults, and the case's ``tiny`` settings, give a valid point;
3. ``run_point`` at the tiny size yields every declared output, with the declared dims, in
   the declared stage's dataset, and every output the framework requires is declared;
4. the risk is orbit-invariant: random group elements change n Rep, n Leak, n Var by less
   than 1e-10;
5. results do not depend on the shard size (replicates 0:3 and 3:7 against 0:7);
6. the limit weights are >= 0 and ``mean_L2`` is their sum; closed-form means likewise;
7. a bad value of each key, in place or in the grid, gives one clear one-line error naming
   the key as written;
8. points that differ only in an estimator setting share the truth and the data bit for
   bit;
9. the case's module has no NotImplementedError stubs.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from functools import cache

import jsonschema
import numpy as np
import pytest
import xarray as xr
from conftest import tiny_params
from threadpoolctl import threadpool_limits

from twostage import run_point, stages
from twostage.api import study_spec
from twostage.cases import REGISTRY, fragment, get_case
from twostage.cases._base import REQUIRED, arrays
from twostage.config import SAMPLE_SIZE_KEYS, expand_study, schema
from twostage.errors import ConfigError

CASES = sorted(REGISTRY)
#: Names the framework gives to variables, dims and coordinates of its files.
RESERVED = {
    *stages.FRAMEWORK_REPLICATE_VARS,
    "representation_aligned",
    "group_element",
    "alignment_distance",
    "replicate",
    "point",
    "point_id",
    "point_json",
    "probability",
    "term",
    "tangent",
    "tangent_",
    "m",
    "x",
    "series",
}


@cache
def tiny_run(name: str) -> dict:
    return run_point(name, tiny_params(name), replicates=7, seed=3, ks_bootstrap=5)


def _properties(name: str) -> dict[str, tuple[str, dict]]:
    frag = fragment(name)
    return {
        key: (kind, spec)
        for kind in ("population", "estimator")
        for key, spec in frag[kind].get("properties", {}).items()
    }


# ---------------------------------------------------------------------------- 1. fragment
@pytest.mark.parametrize("name", CASES)
def test_fragment_is_complete(name):
    frag = fragment(name)
    assert frag.get("description"), "the fragment describes the case"
    central = schema()["$defs"]["study"]["properties"]["sampling"]["enum"]
    assert set(frag["sampling"]["enum"]) <= set(central)
    assert frag["sampling"]["default"] in frag["sampling"]["enum"]
    for kind in ("population", "estimator"):
        jsonschema.Draft202012Validator.check_schema(frag[kind])
        assert frag[kind].get("additionalProperties") is False, kind
    outputs = {v.name for v in get_case(name).outputs.variables}
    dims = {dim for v in get_case(name).outputs.variables for dim in v.dims}
    keys = _properties(name)
    assert len(keys) == sum(
        len(fragment(name)[k].get("properties", {})) for k in ("population", "estimator")
    )
    for key, (kind, spec) in keys.items():
        assert spec.get("description") and "type" in spec and "default" in spec, key
        jsonschema.Draft202012Validator(spec).validate(spec["default"])
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        if {"number", "integer"} & set(types):
            assert {"minimum", "exclusiveMinimum", "maximum"} & set(spec), f"{key}: no range"
        if "string" in types:
            assert "enum" in spec, f"{key}: no allowed values"
        clash = {key} & (set(SAMPLE_SIZE_KEYS) | RESERVED | outputs | dims)
        assert not clash, f"{kind} key {key!r} shadows a variable or dimension name"


# ---------------------------------------------------------------------------- 2. points
@pytest.mark.parametrize("name", CASES)
def test_defaults_and_tiny_settings_give_valid_points(name):
    (default,) = expand_study("s", {"case": name})
    assert default.case == name and default.m >= 1
    (tiny,) = expand_study("s", study_spec(name, tiny_params(name)))
    assert tiny.population and tiny.sampling == fragment(name)["sampling"]["default"]


# ---------------------------------------------------------------------------- 3. outputs
@pytest.mark.parametrize("name", CASES)
def test_run_point_yields_every_declared_output_with_its_dims(name):
    out = tiny_run(name)
    case = get_case(name)
    declared = case.outputs.by_name
    for stage, names in REQUIRED.items():
        for var in names:
            assert var in declared and declared[var].stage == stage, var
    for v in case.outputs.variables:
        ds = out[v.stage]
        assert v.name in ds, f"{v.stage} lacks {v.name}"
        assert ds[v.name].dims == v.dims, (v.name, ds[v.name].dims, v.dims)
    # parameters are coordinates of every file: no variable of any file may share a name
    params = set(_properties(name)) | set(SAMPLE_SIZE_KEYS)
    for stage, ds in out.items():
        assert not params & set(ds.data_vars), (stage, params & set(ds.data_vars))
    risk = out["risk"]
    for var in (*stages.FRAMEWORK_REPLICATE_VARS, *case.outputs.aggregated):
        assert risk[var].dims == ("point", "replicate"), var
    for v in case.outputs.with_laws:
        assert f"ks_{v.name}" in risk
    for form in case.outputs.closed_forms:
        assert f"ks_m_rep_{form.name}" in risk and f"mean_L2_{form.name}" in out["theory"]
    for flag in case.outputs.flags:
        assert f"n_not_{flag}" in risk
    for v in case.outputs.entries:
        assert f"entry_var_{v.name}" in risk


# ---------------------------------------------------------------------------- 4. invariance
@pytest.mark.parametrize("name", CASES)
def test_risk_is_invariant_under_random_group_elements(name):
    out = tiny_run(name)
    case = get_case(name)
    (point,) = expand_study("s", study_spec(name, tiny_params(name), replicates=7, seed=3))
    tr = stages.truth_of(out["pretrain"])
    rep = out["pretrain"]["representation"].values
    rng = np.random.default_rng(11)
    moved = np.array([case.group.act(r, case.group.random(r, rng)) for r in rep])
    assert not np.allclose(moved, rep)

    def risk(representation):
        with threadpool_limits(limits=1):
            if case.stores_data:
                design = {v: out["simulate"][v].values for v in out["simulate"].data_vars}
                return arrays(case.downstream(tr, representation, design, point.n))
            rngs = point.streams("downstream_data", range(7))
            return arrays(
                case.downstream_from_streams(tr, representation, point.n, rngs, point.sampling)
            )

    base, other = risk(rep), risk(moved)
    for term in ("rep", "leak", "var"):
        assert np.max(np.abs(point.n * (base[term] - other[term]))) < 1e-10, term
    np.testing.assert_array_equal(out["downstream"]["rep"].values, base["rep"])

    # Several representations on one draw of the design (the downstream stage's estimate
    # and twin), through the case's prepare_design, give the numbers of separate calls.
    with threadpool_limits(limits=1):
        if case.stores_data:
            design = {v: out["simulate"][v].values for v in out["simulate"].data_vars}
            prepared = case.prepare_design(tr, design)
            both = [case.downstream(tr, r, prepared, point.n) for r in (rep, moved)]
        else:
            rngs = point.streams("downstream_data", range(7))
            both = case.downstream_each_from_streams(
                tr, [rep, moved], point.n, rngs, point.sampling
            )
    for got, want in zip(both, (base, other), strict=True):
        for term, values in want.items():
            np.testing.assert_array_equal(arrays(got)[term], values, err_msg=term)


# ---------------------------------------------------------------------------- 5. shards
@pytest.mark.parametrize("name", CASES)
def test_results_do_not_depend_on_the_shard_size(name):
    (point,) = expand_study("s", study_spec(name, tiny_params(name), replicates=7, seed=3))

    def chain(start, stop):
        with threadpool_limits(limits=1):
            sim = stages.simulate(point, start, stop)
            return stages.downstream(stages.align(stages.pretrain(sim)), sim).to_xarray()

    whole = chain(0, 7)
    parts = xr.concat(
        [chain(0, 3), chain(3, 7)],
        dim="replicate",
        data_vars="minimal",
        coords="minimal",
        compat="equals",
        join="exact",
        combine_attrs="override",
    )
    xr.testing.assert_equal(parts, whole)


# ---------------------------------------------------------------------------- 6. limit
@pytest.mark.parametrize("name", CASES)
def test_limit_weights_are_nonnegative_and_sum_to_the_mean(name):
    th = tiny_run(name)["theory"]
    w = th["limit_weights"].values
    assert np.all(w >= 0) and w.max() > 0
    np.testing.assert_allclose(float(th["mean_L2"]), w.sum(), rtol=1e-12)
    for form in get_case(name).outputs.closed_forms:
        fw = th[form.variable].values
        assert np.all(fw >= 0)
        np.testing.assert_allclose(float(th[f"mean_L2_{form.name}"]), fw.sum(), rtol=1e-12)
    assert int(th["d_base"]) >= int(th["d_eff"]) >= 1 and float(th["noise_variance"]) >= 0


# ---------------------------------------------------------------------------- 7. bad values
def _bad_value(spec: dict):
    """A value the key's schema rejects: out of range, not allowed, or of the wrong type."""
    if "enum" in spec:
        return "not-a-choice"
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    if "minimum" in spec:
        return spec["minimum"] - 1
    if "exclusiveMinimum" in spec:
        return spec["exclusiveMinimum"]
    if "maximum" in spec:
        return spec["maximum"] + 1
    return 12345 if "array" in types or "string" in types else "not-a-number"


@pytest.mark.parametrize(
    ("name", "key"), [(name, key) for name in CASES for key in _properties(name)]
)
def test_a_bad_value_of_each_key_gives_one_clear_error(name, key):
    kind, spec = _properties(name)[key]
    bad = _bad_value(spec)
    with pytest.raises(ConfigError) as err:
        expand_study("s", {"case": name, kind: {key: bad}})
    msg = str(err.value)
    assert f"'studies.s.{kind}.{key}" in msg and "\n" not in msg, msg
    with pytest.raises(ConfigError) as err:
        expand_study("s", {"case": name, "grid": {key: [spec["default"], bad]}})
    msg = str(err.value)
    assert f"'studies.s.grid.{key}" in msg and "\n" not in msg, msg


# ---------------------------------------------------------------------------- 8. estimator
def _other_valid(spec: dict):
    if "enum" in spec:
        return next(v for v in spec["enum"] if v != spec["default"])
    value = spec["default"]
    return value * 2 if isinstance(value, float) else value + 1


@pytest.mark.parametrize("name", [n for n in CASES if fragment(n)["estimator"].get("properties")])
def test_estimator_settings_change_neither_the_truth_nor_the_data(name):
    params = tiny_params(name)
    key, spec = next(iter(fragment(name)["estimator"]["properties"].items()))
    a, b = (
        expand_study("s", study_spec(name, {**params, key: value}, replicates=3))[0]
        for value in (spec["default"], _other_valid(spec))
    )
    assert a.point_id != b.point_id and a.estimator != b.estimator
    ta, tb = stages.truth(a), stages.truth(b)
    assert ta.keys() == tb.keys()
    for var in ta:
        np.testing.assert_array_equal(ta[var], tb[var])
    case = get_case(name)
    for role, size, stream in (
        ("pretrain", a.m, "pretrain_data"),
        ("downstream", a.n, "downstream_data"),
    ):
        da = arrays(case.sample(ta, size, a.streams(stream, range(3)), role, a.sampling))
        db = arrays(case.sample(tb, size, b.streams(stream, range(3)), role, b.sampling))
        for var in da:
            np.testing.assert_array_equal(da[var], db[var])


# ---------------------------------------------------------------------------- 9. no stubs
@pytest.mark.parametrize("name", CASES)
def test_case_is_a_complete_plugin(name):
    case = get_case(name)
    assert case.name == name and not inspect.isabstract(type(case))
    package = importlib.import_module(f"twostage.cases.{REGISTRY[name]}")
    source = inspect.getsource(importlib.import_module(f"{package.__name__}.case"))
    assert "NotImplementedError" not in source
    tiny = copy.deepcopy(case.tiny)
    assert set(tiny) == {"population", "estimator", "n", "alpha"}
