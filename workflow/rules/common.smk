# Validation, sweep expansion and input functions (the only place that reads config).

import json
import math
import os
import shlex
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import validate

from twostage.config import expand_config, job_seconds, read_yaml, study_settings, validate_config
from twostage.costs import predict, predict_shards, predict_theory, shard_batches, theory_batches
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
SETTINGS = {s: study_settings(st) for s, st in _validated["studies"].items()}
# The limits of a study are computed by batches of consecutive points, one theory job each
# (about target_job_seconds of work: a limit takes 0.1-5 s, starting Python and scipy ~1 s).
# The same for the shards: the four stage jobs of a batch of shards (every shard of a small
# study's cheap points at once; one shard where shards are sized by cost) run as one job each.
_SECONDS = {s: job_seconds(st, _validated.get("target_job_seconds")) for s, st in _validated["studies"].items()}
THEORY_BATCHES = {s: theory_batches(pts, _SECONDS[s]) for s, pts in POINTS.items()}
SHARD_BATCHES = {s: shard_batches(pts, _SECONDS[s]) for s, pts in POINTS.items()}
LIMITS = "results/{study}/limits/batch{batch}"
SHARDS = "results/{study}/shards/batch{batch}"
SCRIPTS = Path(workflow.basedir) / "scripts"


wildcard_constraints:
    study=r"[A-Za-z][A-Za-z0-9_-]*",
    batch=r"\d+",


def study_replicates(wildcards):
    """Replicates per point of a study (the count risk.py checks the shards cover)."""
    (count,) = {p.replicates for p in POINTS[wildcards.study]}
    return count


def _lookup(batches, wildcards, what):
    """Batch ``wildcards.batch`` of ``wildcards.study`` in ``batches`` (SHARD_BATCHES or
    THEORY_BATCHES), or a WorkflowError naming ``what``."""
    try:
        return batches[wildcards.study][int(wildcards.batch)]
    except (KeyError, IndexError):
        raise WorkflowError(
            f"no {what} {wildcards.batch} in study {wildcards.study} of this config"
        ) from None


def _shard_batch(wildcards):
    return _lookup(SHARD_BATCHES, wildcards, "batch of shards")


def _shard_file(study, batch, stage, point, shard):
    """Where the job of ``stage`` over a batch of shards writes one shard's file."""
    return f"{SHARDS.format(study=study, batch=batch)}/{stage}/{point.point_id}-{shard}.nc"


def stage_args(stage):
    """A params function: the options of ``stage``'s job over a batch of shards, repeated
    once per shard (each point as its jobs see it: Point.job_json, without the replicate
    count of a Monte Carlo study, so that raising it reruns only the new shards)."""

    def args(wildcards):
        def f(kind, point, shard):
            return _shard_file(wildcards.study, wildcards.batch, kind, point, shard)

        parts = []
        for p, s in _shard_batch(wildcards):
            if stage == "simulate":
                start, stop = p.shard_range(s)
                parts.append(
                    f"--point {shlex.quote(p.job_json())} --replicates {start}:{stop} "
                    f"--out {f('simulate', p, s)}"
                )
            elif stage == "downstream":
                parts.append(
                    f"--align {f('align', p, s)} --simulate {f('simulate', p, s)} "
                    f"--out {f('downstream', p, s)}"
                )
            else:
                before = {"pretrain": "simulate", "align": "pretrain"}[stage]
                parts.append(f"--in {f(before, p, s)} --out {f(stage, p, s)}")
        return " ".join(parts)

    return args


def study_shards(stage):
    """An input function: the directories of ``stage`` of every batch of a study's shards."""

    def dirs(wildcards):
        n = len(SHARD_BATCHES[wildcards.study])
        return [f"{SHARDS.format(study=wildcards.study, batch=b)}/{stage}" for b in range(n)]

    return dirs


def study_downstream_files(wildcards):
    """The downstream file of every shard of a study (inside its batch's directory)."""
    return [
        _shard_file(wildcards.study, b, "downstream", p, s)
        for b, batch in enumerate(SHARD_BATCHES[wildcards.study])
        for p, s in batch
    ]


def _batch(wildcards):
    return _lookup(THEORY_BATCHES, wildcards, "theory batch")


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
    limits = rule == "theory"  # not in an if-line, which Snakemake's linter reads as a rule
    if limits:
        return predict_theory(_batch(wildcards))
    if hasattr(wildcards, "batch"):
        ranges = [(p, p.shard_range(s)) for p, s in _shard_batch(wildcards)]
        return predict_shards(rule, [(p, stop - start) for p, (start, stop) in ranges])
    # study-level rules see every replicate of every point
    points = POINTS[wildcards.study]
    return predict(points[0], rule, sum(p.replicates for p in points))


#: Scheduling priority of each rule's jobs (Snakemake's ``priority``: among the jobs ready
#: at once, the higher first): the longest chain still ahead first (a shard batch's four
#: stages, the limits, the aggregation), the figures and tables last, so that a figure never
#: holds a core while a study's chain waits behind it (without priorities Snakemake prefers
#: the jobs with the largest inputs: the figures). The provenance record, a quick job that
#: nothing waits for, goes first rather than lengthen the run's tail.
PRIORITY = {
    "provenance": 70,
    "simulate": 60,
    "pretrain": 50,
    "theory": 45,
    "align": 40,
    "downstream": 30,
    "risk": 20,
    "sweep": 20,
    "plot": 10,
    "plot_sweep": 10,
    "errata": 5,
}


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
