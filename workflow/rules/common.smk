# Validation, sweep expansion and input functions (the only place that reads config).

import json
import math
import os
from pathlib import Path

import yaml

from snakemake.utils import validate

from twostage.cases import costs, get_case
from twostage.config import expand_config, study_settings, validate_config
from twostage.errors import ConfigError
from twostage.plots import FIGURES


# Our validator first: it composes the central schema with every case's fragment
# (twostage/cases/<case>/schema.yaml), names the key path and what was expected, and checks
# what a schema cannot (e.g. len(factor_strengths) == k). Then Snakemake's own, on the
# central file (study keys; population and estimator are plain mappings there).
try:
    _validated = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, schema="../schemas/config.schema.yaml")

POINTS = expand_config(_validated)
POINT_INDEX = {(s, p.point_id): p for s, pts in POINTS.items() for p in pts}
SETTINGS = {s: study_settings(st) for s, st in _validated["studies"].items()}
SCRIPTS = Path(workflow.basedir) / "scripts"
SHARD = "results/{study}/points/{point}/shard{shard}"


wildcard_constraints:
    study=r"[A-Za-z][A-Za-z0-9_-]*",
    point=r"[0-9a-f]{12}",
    shard=r"\d+",


def _point(wildcards):
    try:
        return POINT_INDEX[(wildcards.study, wildcards.point)]
    except KeyError:
        raise WorkflowError(
            f"no point {wildcards.point} in study {wildcards.study} of this config"
        ) from None


def point_json(wildcards):
    return _point(wildcards).to_json()


def replicate_range(wildcards):
    start, stop = _point(wildcards).shard_range(int(wildcards.shard))
    return f"{start}:{stop}"


def study_downstream(wildcards):
    return [
        f"results/{wildcards.study}/points/{p.point_id}/shard{s}/downstream.nc"
        for p in POINTS[wildcards.study]
        for s in range(p.n_shards)
    ]


def study_theory(wildcards):
    return [
        f"results/{wildcards.study}/points/{p.point_id}/theory.nc"
        for p in POINTS[wildcards.study]
    ]


def p_var_tolerance(wildcards):
    return SETTINGS[wildcards.study]["p_var_tolerance"]


def ks_bootstrap(wildcards):
    return SETTINGS[wildcards.study]["ks_bootstrap"]


def cdf_panels(wildcards):
    return SETTINGS[wildcards.study]["cdf_panels"]


def sweep_fit(wildcards):
    return SETTINGS[wildcards.study]["fit"]


def reference_json(wildcards):
    return json.dumps(SETTINGS[wildcards.study]["reference"], sort_keys=True)


def is_sweep(study):
    """Theory-only studies (replicates: 0) have no simulation, only the limit over the grid."""
    return all(p.replicates == 0 for p in POINTS[study])


def script(name):
    """Path of a stage script, relative to the working directory (stable across runs)."""
    return os.path.relpath(SCRIPTS / f"{name}.py")


def all_figures():
    out = []
    for s in POINTS:
        if is_sweep(s):
            out += [f"results/{s}/figures/sweep.png", f"results/{s}/sweep.csv"]
        else:
            out += [f"results/{s}/figures/{name}.png" for name in FIGURES]
            out.append(f"results/{s}/summary.csv")
    return out


# ---------------------------------------------------------------- cluster resources
# Per-rule costs measured from the rules' benchmark files (defaults in
# workflow/resources.yaml, each case's own in twostage/cases/<case>/costs.yaml); a job asks
# for SAFETY times the predicted need (twice that on a retry), at least MIN_RUNTIME.
with open(Path(workflow.basedir) / "workflow" / "resources.yaml") as _fh:
    COSTS = yaml.safe_load(_fh)
SAFETY, MIN_RUNTIME = 3.0, 5


def _cost(rule, wildcards):
    first = POINTS[wildcards.study][0]
    cost = {**COSTS["default"][rule], **costs(first.case).get(rule, {})}
    if hasattr(wildcards, "shard"):
        point = _point(wildcards)
        start, stop = point.shard_range(int(wildcards.shard))
        reps = stop - start
        d = int(point.population.get("d", 1))
        # cost terms that grow with m (EM), m d^4 (spectral: the statistic T_hat) or d^4
        cost["per_replicate_s"] += cost.get("per_replicate_m_s", 0.0) * point.m
        cost["per_replicate_s"] += cost.get("per_replicate_m_d4_s", 0.0) * point.m * d**4
        cost["per_replicate_mb"] += cost.get("per_replicate_d4_mb", 0.0) * d**4
        if point.sampling == "raw" and get_case(point.case).stores_data:
            cost["per_replicate_mb"] += 24 * (point.m + point.n) * d / 2**20
    elif hasattr(wildcards, "point"):
        reps = 0
    else:  # study-level rules see every replicate of every point
        reps = sum(p.replicates for p in POINTS[wildcards.study])
    return cost, reps


def runtime_minutes(rule):
    def runtime(wildcards, attempt):
        cost, reps = _cost(rule, wildcards)
        seconds = cost["base_s"] + cost["per_replicate_s"] * reps
        return max(MIN_RUNTIME, math.ceil(SAFETY * attempt * seconds / 60))

    return runtime


def memory_mb(rule):
    def memory(wildcards, attempt):
        cost, reps = _cost(rule, wildcards)
        mb = cost["base_mb"] + cost["per_replicate_mb"] * reps
        return math.ceil(SAFETY * attempt * mb)

    return memory
