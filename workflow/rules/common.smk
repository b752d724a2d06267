# Validation, sweep expansion and input functions (the only place that reads config).

import json
import math
import os
import shlex
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from twostage.config import expand_config, job_seconds, read_yaml, study_settings, validate_config
from twostage.costs import predict, predict_theory, theory_batches
from twostage.errors import ConfigError
from twostage.versions import versions, write_provenance
from twostage.plots import FIGURES, FORMATS


# Our validator first: it composes the central schema with every case's fragment
# (twostage/cases/<case>/schema.yaml), names the key path and what was expected, and checks
# what a schema cannot (e.g. len(factor_strengths) == k). Then Snakemake's own, on the
# central file (study keys; population and estimator are plain mappings there).
try:
    for _file in workflow.configfiles:  # YAML drops a repeated key (or study) silently
        read_yaml(_file)
    _validated = validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None
validate(config, schema="../schemas/config.schema.yaml")

POINTS = expand_config(_validated)
POINT_INDEX = {(s, p.point_id): p for s, pts in POINTS.items() for p in pts}
SETTINGS = {s: study_settings(st) for s, st in _validated["studies"].items()}
# The limits of a study are computed by batches of consecutive points, one theory job each
# (about target_job_seconds of work: a limit takes 0.1-5 s, starting Python and scipy ~1 s).
THEORY_BATCHES = {
    s: theory_batches(pts, job_seconds(_validated["studies"][s], _validated.get("target_job_seconds")))
    for s, pts in POINTS.items()
}
LIMITS = "results/{study}/limits/batch{batch}"
SCRIPTS = Path(workflow.basedir) / "scripts"
SHARD = "results/{study}/points/{point}/shard{shard}"


wildcard_constraints:
    study=r"[A-Za-z][A-Za-z0-9_-]*",
    point=r"[0-9a-f]{12}",
    shard=r"\d+",
    batch=r"\d+",


def _point(wildcards):
    try:
        return POINT_INDEX[(wildcards.study, wildcards.point)]
    except KeyError:
        raise WorkflowError(
            f"no point {wildcards.point} in study {wildcards.study} of this config"
        ) from None


def point_json(wildcards):
    """The point as its jobs see it: without the replicate count of a Monte Carlo study,
    so that raising `replicates` reruns only the new shards (Point.job_json)."""
    return _point(wildcards).job_json()


def study_replicates(wildcards):
    """Replicates per point of a study (the count risk.py checks the shards cover)."""
    (count,) = {p.replicates for p in POINTS[wildcards.study]}
    return count


def replicate_range(wildcards):
    start, stop = _point(wildcards).shard_range(int(wildcards.shard))
    return f"{start}:{stop}"


def study_downstream(wildcards):
    return [
        f"results/{wildcards.study}/points/{p.point_id}/shard{s}/downstream.nc"
        for p in POINTS[wildcards.study]
        for s in range(p.n_shards)
    ]


def _batch(wildcards):
    try:
        return THEORY_BATCHES[wildcards.study][int(wildcards.batch)]
    except (KeyError, IndexError):
        raise WorkflowError(
            f"no theory batch {wildcards.batch} in study {wildcards.study} of this config"
        ) from None


def _limit_file(study, batch, point):
    """Where a theory job writes the limit of one point of its batch."""
    return f"{LIMITS.format(study=study, batch=batch)}/{point.point_id}.nc"


def theory_args(wildcards):
    """The ``--point JSON --out FILE`` pairs of a theory batch (each point as its jobs see
    it: Point.job_json)."""
    return " ".join(
        f"--point {shlex.quote(p.job_json())} --out {_limit_file(wildcards.study, wildcards.batch, p)}"
        for p in _batch(wildcards)
    )


def study_theory(wildcards):
    """The theory batches of a study (directories: the inputs of its aggregation)."""
    n = len(THEORY_BATCHES[wildcards.study])
    return [LIMITS.format(study=wildcards.study, batch=b) for b in range(n)]


def study_limit_files(wildcards):
    """The limit of every point of a study, in grid order (inside its batch directory)."""
    return [
        _limit_file(wildcards.study, b, p)
        for b, batch in enumerate(THEORY_BATCHES[wildcards.study])
        for p in batch
    ]


def setting(name):
    """A params function: the study's aggregation or figure setting ``name``."""

    def value(wildcards):
        return SETTINGS[wildcards.study][name]

    return value


def cdf_panels(wildcards):
    return SETTINGS[wildcards.study]["cdf_panels"]


def sweep_fit(wildcards):
    return SETTINGS[wildcards.study]["fit"]


def provenance_versions(wildcards):
    """The recorded versions, computed only when the provenance job is in the DAG (not at
    every Snakemake start, e.g. of each cluster job)."""
    return versions()


def sweep_x_arg(wildcards):
    x = SETTINGS[wildcards.study]["sweep_x"]
    return "" if x is None else f"--x {x}"


def reference_json(wildcards):
    return json.dumps(SETTINGS[wildcards.study]["reference"], sort_keys=True)


def is_sweep(study):
    """Theory-only studies (replicates: 0) have no simulation, only the limit over the grid."""
    return all(p.replicates == 0 for p in POINTS[study])


def script(name):
    """Path of a stage script, relative to the working directory (stable across runs)."""
    return os.path.relpath(SCRIPTS / f"{name}.py")


def all_figures():
    out = ["results/provenance.yaml", "results/errata.csv"]
    for s in POINTS:
        if is_sweep(s):
            out += [f"results/{s}/figures/sweep.{fmt}" for fmt in FORMATS]
            out.append(f"results/{s}/sweep.csv")
        else:
            out += [f"results/{s}/figures/{name}.{fmt}" for name in FIGURES for fmt in FORMATS]
            out.append(f"results/{s}/summary.csv")
    return out


def all_aggregates():
    """The aggregated files of every study: targets of `all`, so that a failed or deleted
    risk/theory/sweep file is remade even when the figures drawn from it still exist."""
    out = []
    for s in POINTS:
        if is_sweep(s):
            out.append(f"results/{s}/sweep.nc")
        else:
            out += [f"results/{s}/risk.nc", f"results/{s}/theory.nc"]
    return out


# ---------------------------------------------------------------- report (make report)
def reported(path, caption, kind, **labels):
    """``path`` marked for the Snakemake report, under its study's category, with the
    caption ``workflow/report/<caption>.rst``."""
    return report(
        path,
        caption=f"../report/{caption}.rst",
        category="{study}",
        subcategory=kind,
        labels={"study": "{study}", **labels},
    )


def figure_outputs(names, fmt):
    """The figures of a study in one format; the PNGs are marked for the report."""
    paths = [f"results/{{study}}/figures/{name}.{fmt}" for name in names]
    if fmt != "png":
        return paths
    return [reported(p, name, "Figures", figure=name) for p, name in zip(paths, names)]


def _inline(value):
    return f"``{json.dumps(value, sort_keys=True)}``"


def study_about(wildcards):
    """The study's settings in a reStructuredText paragraph, for the report's captions:
    case, the grid, the fixed parameters, replicates and seed."""
    points = POINTS[wildcards.study]
    p0 = points[0]
    grid = _validated["studies"][wildcards.study].get("grid", {})
    fixed = {
        k: v
        for k, v in {"n": p0.n, "alpha": p0.alpha, **p0.population, **p0.estimator}.items()
        if k not in grid
    }
    return (
        f"*Study* ``{wildcards.study}``: case ``{p0.case}``, sampling ``{p0.sampling}``, "
        f"{len(points)} point(s), {p0.replicates} Monte Carlo replicate(s) per point "
        f"({sum(p.replicates for p in points)} in all), seed {p0.seed}. "
        f"*Grid*: {_inline(grid) if grid else 'none'}. *Fixed*: {_inline(fixed)} "
        "(m = ⌊α n⌋)."
    )


# ---------------------------------------------------------------- cluster resources
# Predicted from the cost model (twostage.costs: per-rule costs measured from the rules'
# benchmark files, defaults in twostage/data/costs.yaml, each case's own in
# twostage/cases/<case>/costs.yaml); a job asks for SAFETY times the predicted need (twice
# that on a retry), at least MIN_RUNTIME minutes.
SAFETY, MIN_RUNTIME = 3.0, 5


def _need(rule, wildcards):
    if hasattr(wildcards, "batch"):
        return predict_theory(_batch(wildcards))
    if hasattr(wildcards, "shard"):
        point = _point(wildcards)
        start, stop = point.shard_range(int(wildcards.shard))
        return predict(point, rule, stop - start)
    if hasattr(wildcards, "point"):
        return predict(_point(wildcards), rule, 0)
    # study-level rules see every replicate of every point
    points = POINTS[wildcards.study]
    return predict(points[0], rule, sum(p.replicates for p in points))


def runtime_minutes(rule):
    def runtime(wildcards, attempt):
        seconds, _ = _need(rule, wildcards)
        return max(MIN_RUNTIME, math.ceil(SAFETY * attempt * seconds / 60))

    return runtime


def memory_mb(rule):
    def memory(wildcards, attempt):
        _, mb = _need(rule, wildcards)
        return math.ceil(SAFETY * attempt * mb)

    return memory


def flagged_points():
    """The flag report (twostage.stages.flag_report) of every aggregated study of this run."""
    from twostage.io import read_dataset
    from twostage.stages import flag_report

    lines = []
    for s in POINTS:
        path = Path(f"results/{s}/risk.nc")
        if not is_sweep(s) and path.is_file():
            lines += flag_report(read_dataset(path, "risk"))
    return lines
