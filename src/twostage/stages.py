"""The pipeline's stages as functions from datasets to datasets.

The stage scripts (``scripts/*.py``) and the in-process API (:func:`twostage.run_point`)
both call these functions, so their numbers are identical. Every stage output carries the
point's population truth as ``truth_*`` variables, so each file is self-contained.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import seeding
from .cases import get_case
from .cases._base import Variables, arrays
from .config import Point, schema, study_defaults
from .errors import InputFileError
from .frame import Frame
from .groups import alignment_variables
from .io import json_attr

if TYPE_CHECKING:
    import xarray as xr

TRUTH = "truth_"
#: Per-replicate variables the framework itself computes (alignment and downstream
#: stages), kept per (point, replicate) by the aggregation before each case's declared
#: ``Output(..., aggregate=True)`` variables.
FRAMEWORK_REPLICATE_VARS = (
    "scaled_excess_risk",
    "n_rep",
    "n_leak",
    "n_var",
    "m_rep",
    "rep",
    "leak",
    "var",
    "d_eff_n",
    "orbit_invariance_error",
    "alignment_distance",
)
#: The study settings :func:`aggregate` takes (keywords of the same names).
AGGREGATION_SETTINGS = ("p_var_tolerance", "ks_bootstrap", "flagged", "regime_tolerance")
#: Scaled risk terms summarised per point by their mean and Monte Carlo standard error.
SUMMARISED = ("scaled_excess_risk", "n_rep", "n_leak", "n_var", "m_rep")
PROBABILITIES = np.round(np.linspace(0.005, 0.995, 199), 3)


# ---------------------------------------------------------------------------- helpers
def _attrs(point: Point) -> dict[str, Any]:
    text = point.to_json()
    return {
        "case": point.case,
        "study": point.study,
        "seed": point.seed,
        "sampling": point.sampling,
        "point_id": point.point_id,
        "point": text,
        "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str)


def _coords(point: Point) -> dict[str, Any]:
    """Scalar parameters of the point (population, estimator, n, alpha, m) as coordinates."""
    coords: dict[str, Any] = {"point_id": point.point_id}
    coords.update({k: v for k, v in point.settings.items() if _scalar(v)})
    return coords


def point_of(ds: Frame | xr.Dataset) -> Point:
    """The :class:`Point` a stage output belongs to (from its ``point`` attribute)."""
    return Point.from_json(json_attr(ds, "point"), trusted=True)


def truth_of(ds: Frame | xr.Dataset) -> dict[str, np.ndarray]:
    """The population truth carried by a stage output, as numpy arrays."""
    out = {name[len(TRUTH) :]: ds[name].values for name in ds.data_vars if name.startswith(TRUTH)}
    if not out:
        raise InputFileError("dataset carries no truth_* variables")
    return out


def _frame(ds: Frame | xr.Dataset) -> Frame:
    """A stage input as a :class:`Frame` (an ``xarray.Dataset``, e.g. of
    :func:`twostage.run_point`, is converted)."""
    return ds if isinstance(ds, Frame) else Frame.from_xarray(ds)


def _truth_vars(ds: Frame) -> Frame:
    return ds.subset(v for v in ds.data_vars if v.startswith(TRUTH))


def _arrays(ds: Frame, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {name: ds[name].values for name in names if name in ds}


def _truth_variables(point: Point) -> Variables:
    """The population truth of a point, drawn from its own keyed stream.

    The stream is keyed by the case and the population parameters only (not the
    estimator settings, not m or n), so every point of a sample-size or estimator sweep
    shares the same truth."""
    (rng,) = point.streams("truth", [0])
    return get_case(point.case).truth(point.population, rng)


def truth(point: Point) -> dict[str, np.ndarray]:
    """The population truth of a point as numpy arrays (see :func:`_truth_variables`)."""
    return arrays(_truth_variables(point))


# ---------------------------------------------------------------------------- stages
def range_problem(start: int, stop: int, replicates: int | None) -> str | None:
    """Why ``start:stop`` is not a replicate range of a point with ``replicates``
    replicates (None: unknown, as in a Monte Carlo study's jobs), or None."""
    if 0 <= start < stop and (replicates is None or stop <= replicates):
        return None
    return "must satisfy 0 <= START < STOP" + ("" if replicates is None else f" <= {replicates}")


def simulate(point: Point, start: int, stop: int) -> Frame:
    """Truth and, for replicates ``start <= r < stop``, pre-training and downstream data."""
    problem = range_problem(start, stop, point.replicates)
    if problem:
        raise ValueError(f"replicate range {start}:{stop} {problem}")
    case = get_case(point.case)
    truth_v = _truth_variables(point)
    truth_arr = arrays(truth_v)
    reps = np.arange(start, stop)
    data = (
        {**_draw(point, truth_arr, reps, "pretrain"), **_draw(point, truth_arr, reps, "downstream")}
        if case.stores_data
        else {}
    )
    ds = Frame.merge(
        [Frame.from_variables(truth_v, TRUTH), Frame.from_variables(data)], _attrs(point)
    )
    return ds.assign_coords(replicate=reps, **_coords(point))


def _draw(point: Point, tr: Mapping[str, np.ndarray], reps: np.ndarray, role: str) -> Variables:
    """Pre-training (size m) or downstream (size n) data of the given replicates, from
    their keyed streams."""
    case = get_case(point.case)
    stream = "pretrain_data" if role == "pretrain" else "downstream_data"
    size = point.m if role == "pretrain" else point.n
    return case.sample(tr, size, point.streams(stream, reps), role, point.sampling)


def _stored(sim: Frame) -> dict[str, np.ndarray]:
    return _arrays(sim, [v for v in sim.data_vars if not v.startswith(TRUTH)])


def pretrain(sim: Frame | xr.Dataset) -> Frame:
    """Stage-1 estimation: representation, descriptor and diagnostics per replicate, with
    the point's estimator settings.

    Cases that do not store their data regenerate it here from the same keyed streams, a
    chunk of replicates at a time (identical numbers, bounded memory)."""
    sim = _frame(sim)
    point = point_of(sim)
    case = get_case(point.case)
    reps = sim["replicate"].values
    rngs = point.streams("pretrain_algorithm", reps)
    tr = truth_of(sim)
    if case.stores_data:
        est = Frame.from_variables(case.pretrain(tr, _stored(sim), point.estimator, rngs))
    else:
        data_rngs = point.streams("pretrain_data", reps)
        est = Frame.from_variables(
            case.pretrain_from_streams(
                tr, point.m, point.estimator, data_rngs, rngs, point.sampling
            )
        )
    return Frame.merge([_truth_vars(sim), est], sim.attrs)  # the truth keeps sim's coords


def align(pre: Frame | xr.Dataset) -> Frame:
    """Orbit alignment of each representative to the truth by the case's symmetry group
    (diagnostics only), and the case's parameter-level diagnostics."""
    pre = _frame(pre)
    point = point_of(pre)
    case = get_case(point.case)
    tr = truth_of(pre)
    est = _arrays(pre, [v for v in pre.data_vars if not v.startswith(TRUTH)])
    aligned, g, dist = case.group.align(est["representation"], case.reference(tr))
    variables = alignment_variables(
        aligned, g, dist, pre["representation"].dims[1:], case.group.name
    )
    variables.update(case.diagnostics(tr, est, aligned, point.m))
    return Frame.merge([pre, Frame.from_variables(variables)], pre.attrs)


def same_shard(a: Frame, b: Frame) -> bool:
    """Whether two stage outputs hold the same point's same replicates."""
    return a.attrs.get("point_id") == b.attrs.get("point_id") and np.array_equal(
        a["replicate"].values, b["replicate"].values
    )


def downstream(al: Frame | xr.Dataset, sim: Frame | xr.Dataset) -> Frame:
    """Min-norm OLS and the exact conditional risk decomposition per replicate.

    The risk is computed from the unaligned representative (no alignment is needed,
    Lemma 4.1); the same computation from the aligned representative gives
    ``orbit_invariance_error``, the largest change of any scaled term.
    """
    al, sim = _frame(al), _frame(sim)
    point = point_of(al)
    if not same_shard(al, sim):
        raise InputFileError(
            "the alignment and simulation inputs belong to different points or replicate ranges"
        )
    case = get_case(point.case)
    tr = truth_of(al)
    reps = al["replicate"].values

    estimate, aligned = al["representation"].values, al["representation_aligned"].values
    base = None
    if case.stores_data:
        design = case.prepare_design(tr, _stored(sim))
        risk = case.downstream(tr, estimate, design, point.n)
        twin = case.downstream(tr, aligned, design, point.n)
        base = case.baseline(tr, design, point.n)
    else:  # one draw of each design serves both representatives
        rngs = point.streams("downstream_data", reps)
        risk, twin = case.downstream_each_from_streams(
            tr, [estimate, aligned], point.n, rngs, point.sampling
        )
    n, m = point.n, point.m
    scaled = {
        "n_rep": n * risk["rep"][1],
        "n_leak": n * risk["leak"][1],
        "n_var": n * risk["var"][1],
    }
    gap = np.max(
        [np.abs(scaled[f"n_{t}"] - n * twin[t][1]) for t in ("rep", "leak", "var")], axis=0
    )
    total = scaled["n_rep"] + scaled["n_leak"] + scaled["n_var"]
    extra: Variables = {
        "n_rep": (("replicate",), scaled["n_rep"], {"long_name": "n Rep"}),
        "n_leak": (("replicate",), scaled["n_leak"], {"long_name": "n Leak"}),
        "n_var": (("replicate",), scaled["n_var"], {"long_name": "n Var"}),
        "m_rep": (("replicate",), m * risk["rep"][1], {"long_name": "m Rep"}),
        "scaled_excess_risk": (
            ("replicate",),
            total,
            {"long_name": "E_{m,n} = n (R - sigma^2) = n (Rep + Leak + Var)"},
        ),
        "orbit_invariance_error": (
            ("replicate",),
            gap,
            {"long_name": "max |change| of n Rep, n Leak, n Var under the aligning group element"},
        ),
    }
    if base is not None:  # the downstream-only baseline on the same design (paper Sec. 5)
        for term in ("rep", "leak", "var"):
            extra[f"n_base_{term}"] = (
                ("replicate",),
                n * base[term][1],
                {"long_name": f"n {term.capitalize()} of the downstream-only baseline"},
            )
        n_base = n * (base["rep"][1] + base["leak"][1] + base["var"][1])
        extra["n_base"] = (("replicate",), n_base, {"long_name": "n (R_base - sigma^2)"})
        extra["beats_base"] = (
            ("replicate",),
            (total < n_base).astype(np.int8),
            {"long_name": "1 if two-stage's excess risk is below the baseline's"},
        )
    entries = {v.name for v in case.outputs.entries}
    keep = [
        v
        for v in al.data_vars
        if v.startswith(TRUTH) or al[v].dims == ("replicate",) or v in entries
    ]
    parts = [al.subset(keep), Frame.from_variables(risk), Frame.from_variables(extra)]
    return Frame.merge(parts, al.attrs)


def theory(point: Point) -> Frame:
    """The limit of Theorem 5.1 at a point, with the case's closed forms alongside."""
    from .gchisq import GeneralizedChiSquare

    case = get_case(point.case)
    lim = Frame.from_variables(case.limit(truth(point), point.estimator))
    alpha_eff = point.m / point.n
    weights = lim["limit_weights"].values
    sigma2, d_eff = float(lim["noise_variance"].values), int(lim["d_eff"].values)
    extra = {
        "alpha_eff": ((), alpha_eff, {"long_name": "m / n used to scale the limit"}),
        "mean_L2": ((), weights.sum(), {"long_name": "E ||L(Z)||^2 (numerical)"}),
        "limit_mean_total": (
            (),
            sigma2 * d_eff + weights.sum() / alpha_eff,
            {"long_name": "mean of the limit sigma^2 d_eff + ||L(Z)||^2 / alpha"},
        ),
    }
    if point.replicates != 0:  # None: a Monte Carlo study's job (Point.job_json)
        # quantiles of the law the Monte Carlo is set against (theory-only sweeps have no
        # sample to compare: their quantiles would only cost time, up to minutes where the
        # weights spread over many decades and the CDF needs Imhof's integral)
        law_total = GeneralizedChiSquare(weights / alpha_eff, offset=sigma2 * d_eff)
        extra["limit_quantile_total"] = (
            ("probability",),
            law_total.ppf(PROBABILITIES),
            {"long_name": "quantiles of the limit of n (R - sigma^2)"},
        )
    for form in case.outputs.closed_forms:
        extra[f"mean_L2_{form.name}"] = (
            (),
            lim[form.variable].values.sum(),
            {"long_name": f"E ||L(Z)||^2 by the {form.label}"},
        )
    d_base = int(lim["d_base"].values)
    if d_base > d_eff:
        extra["alpha0"] = (
            (),
            weights.sum() / (sigma2 * (d_base - d_eff)),
            {"long_name": "crossing alpha0 = E||L||^2 / (sigma^2 (d_base - d_eff))"},
        )
    ds = Frame.merge([lim, Frame.from_variables(extra)], _attrs(point))
    return ds.assign_coords(probability=PROBABILITIES, **_coords(point))


# ---------------------------------------------------------------------------- aggregation
def ks_test(sample: np.ndarray, law: Any) -> tuple[float, float]:
    """KS distance and p-value of ``sample`` against ``law`` (anything with a ``cdf``)."""
    from scipy import stats

    res = stats.kstest(sample, law.cdf)
    return float(res.statistic), float(res.pvalue)


def ks_distance(cdf_sorted: np.ndarray) -> float:
    """The one-sample KS distance ``sup |F_r - F|`` of a sample, given the law's CDF ``F``
    at the sorted sample: ``max_i max(i/r - F_(i), F_(i) - (i-1)/r)``, the arithmetic of
    ``scipy.stats.kstest`` (the same value, without importing ``scipy.stats``)."""
    r = len(cdf_sorted)
    return float(
        max(np.max(np.arange(1, r + 1) / r - cdf_sorted), np.max(cdf_sorted - np.arange(r) / r))
    )


def _ks_bootstrap_se(sample: np.ndarray, law: Any, rng: np.random.Generator, b: int) -> float:
    """Bootstrap standard error of the KS distance (the law's CDF is evaluated once)."""
    if b == 0:
        return float("nan")
    cdf = law.cdf(sample)
    r = len(sample)
    values = np.empty(b)
    for i in range(b):
        idx = rng.integers(0, r, r)
        values[i] = ks_distance(np.sort(cdf[idx]))  # the CDF is monotone: this sorts it
    return float(values.std(ddof=1))


def combine_shards(shards: Sequence[xr.Dataset], replicates: int | None = None) -> xr.Dataset:
    """Concatenate one point's shards along ``replicate`` and check that they cover
    exactly ``0..replicates - 1`` (``replicates``: the count in the shards' point, else
    the one given, else as many as there are shards' replicates). The result's ``point``
    attribute carries the count."""
    import xarray as xr

    if not shards:
        raise InputFileError("no shard given")
    ids = {s.attrs.get("point_id") for s in shards}
    if len(ids) != 1:
        raise InputFileError(f"shards of different points given together: {sorted(map(str, ids))}")
    ds = xr.concat(
        list(shards),
        dim="replicate",
        data_vars="minimal",
        coords="minimal",
        compat="equals",
        join="exact",
        combine_attrs="drop_conflicts",
    ).sortby("replicate")
    point = point_of(ds)
    got = ds["replicate"].values
    if point.replicates is None:
        count = len(got) if replicates is None else replicates
        point = dataclasses.replace(point, replicates=count)
        ds.attrs["point"] = point.to_json()
    if not np.array_equal(got, np.arange(point.replicates)):
        raise InputFileError(
            f"shards of point {point.point_id} cover replicates {got.min()}..{got.max()} "
            f"({len(got)} values, {len(np.unique(got))} distinct); expected exactly "
            f"0..{point.replicates - 1}"
        )
    return ds


def mc_se(x: np.ndarray) -> float:
    """Monte Carlo standard error of the mean of ``x`` (NaN for one value)."""
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def _binomial_se(p: float, r: int) -> float:
    return float(np.sqrt(p * (1 - p) / r)) if r > 0 else float("nan")


def replicate_flags(ds: xr.Dataset, th: xr.Dataset) -> dict[str, np.ndarray]:
    """Per replicate of one point's combined files, boolean masks: ``rank_deficient`` (the
    case's rule, e.g. the downstream Gram matrix of rank below d_eff), ``not_<flag>`` for
    each of the case's flags (e.g. ``not_converged``) and ``flagged`` (any of them)."""
    point = point_of(ds)
    case = get_case(point.case)
    masks = {"rank_deficient": np.asarray(case.rank_deficient(ds, int(th["d_eff"]), point), bool)}
    for flag in case.outputs.flags:
        masks[f"not_{flag}"] = ~ds[flag].values.astype(bool)
    masks["flagged"] = np.logical_or.reduce(list(masks.values()))
    return masks


def summarise(
    ds: xr.Dataset,
    th: xr.Dataset,
    p_var_tolerance: float,
    ks_bootstrap: int,
    flagged: str = "keep",
    regime_tolerance: float = 0.25,
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Per-point summaries: means with Monte Carlo standard errors, KS distances to the
    limits (with bootstrap standard errors and the 1% critical value), p_var, the counts
    of flagged replicates (``n_rank_deficient``, ``n_not_<flag>`` for each of the case's
    flags, e.g. ``n_not_converged``, and ``n_flagged``, any of them), and the regime
    diagnostic ``regime_ratio`` (Monte Carlo mean of n Rep over the limit's mean
    E||L(Z)||^2 / alpha) with ``off_regime`` = 1 where it is off by more than
    ``regime_tolerance`` (relative, on the log scale) and by more than 3 s.e.

    ``flagged='keep'`` summarises every replicate, ``'drop'`` the unflagged ones only
    (``n_used`` of them); the means the other way are reported beside (``mean_<v>_unflagged``
    with 'keep', ``mean_<v>_all`` with 'drop'). Nothing is averaged silently. ``masks``:
    :func:`replicate_flags` of ``ds``, if already computed."""
    masks = replicate_flags(ds, th) if masks is None else masks
    out: dict[str, float] = {f"n_{name}": float(mask.sum()) for name, mask in masks.items()}
    bad = masks["flagged"]
    used = ~bad if flagged == "drop" else np.ones_like(bad)
    other, suffix = (np.ones_like(bad), "all") if flagged == "drop" else (~bad, "unflagged")
    out["n_used"] = float(used.sum())
    stats_used = _summarise_sample(ds.isel(replicate=np.flatnonzero(used)), th, p_var_tolerance,
                                   ks_bootstrap, regime_tolerance)  # fmt: skip
    out.update(stats_used)
    for v in SUMMARISED:
        x = ds[v].values[other]
        out[f"mean_{v}_{suffix}"] = float(x.mean()) if len(x) else float("nan")
        out[f"se_{v}_{suffix}"] = mc_se(x)
    return out


def _summarise_sample(
    ds: xr.Dataset, th: xr.Dataset, p_var_tolerance: float, ks_bootstrap: int, tol: float
) -> dict[str, float]:
    """:func:`summarise` of the replicates in ``ds`` (NaN throughout for fewer than 2)."""
    from scipy import stats

    from .gchisq import GeneralizedChiSquare

    point = point_of(ds)
    outputs = get_case(point.case).outputs
    r = ds.sizes["replicate"]
    out: dict[str, float] = {}
    for v in SUMMARISED:
        x = ds[v].values
        out[f"mean_{v}"] = float(x.mean()) if r else float("nan")
        out[f"se_{v}"] = mc_se(x)
    weights = th["limit_weights"].values
    sigma2, d_eff = float(th["noise_variance"]), int(th["d_eff"])
    alpha_eff = float(th["alpha_eff"])
    laws = {
        "total": (
            "scaled_excess_risk",
            GeneralizedChiSquare(weights / alpha_eff, offset=sigma2 * d_eff),
        ),
        "pre": ("n_rep", GeneralizedChiSquare(weights / alpha_eff)),
    }
    for form in outputs.closed_forms:
        laws[f"m_rep_{form.name}"] = ("m_rep", GeneralizedChiSquare(th[form.variable].values))
    for v in outputs.with_laws:
        laws[v.name] = (v.name, GeneralizedChiSquare(th[v.law].values))
    rng = point.streams("bootstrap", [0])[0]
    b = int(ks_bootstrap)
    for label, (var, law) in laws.items():
        x = ds[var].values
        if r < 2:
            out[f"ks_{label}"] = out[f"ks_{label}_pvalue"] = out[f"ks_{label}_se"] = np.nan
            continue
        out[f"ks_{label}"], out[f"ks_{label}_pvalue"] = ks_test(x, law)
        out[f"ks_{label}_se"] = _ks_bootstrap_se(x, law, rng, b)
    eps = float(p_var_tolerance) * sigma2 * d_eff
    p = float(np.mean(np.abs(ds["n_var"].values - sigma2 * d_eff) > eps)) if r else np.nan
    out["p_var"], out["p_var_se"] = p, _binomial_se(p, r)
    out["ks_critical_01"] = float(stats.kstwo.ppf(0.99, r)) if r else np.nan
    limit_pre = float(weights.sum()) / alpha_eff
    ratio = out["mean_n_rep"] / limit_pre if limit_pre > 0 else np.nan
    ratio_se = out["se_n_rep"] / limit_pre if limit_pre > 0 else np.nan
    out["regime_ratio"], out["regime_ratio_se"] = ratio, ratio_se
    off = np.isfinite(ratio) and (
        ratio <= 0 or (abs(np.log(ratio)) > np.log1p(tol) and abs(ratio - 1) > 3 * ratio_se)
    )
    out["off_regime"] = float(off)
    if "n_base" in ds and r:  # the downstream-only baseline, paired with two-stage per replicate
        base, gain = ds["n_base"].values, ds["n_base"].values - ds["scaled_excess_risk"].values
        out["mean_n_base"], out["se_n_base"] = float(base.mean()), mc_se(base)
        out["mean_gain_base"], out["se_gain_base"] = float(gain.mean()), mc_se(gain)
        q = float(np.mean(ds["beats_base"].values))
        out["p_beats_base"], out["p_beats_base_se"] = q, _binomial_se(q, r)
    return out


def aggregate(
    shards_per_point: Sequence[Sequence[xr.Dataset]],
    theories: Sequence[xr.Dataset],
    *,
    p_var_tolerance: float | None = None,
    ks_bootstrap: int | None = None,
    flagged: str | None = None,
    regime_tolerance: float | None = None,
    replicates: int | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Aggregate a study: replicate-level values per (point, replicate), per-point
    summaries, and the per-point limits. ``replicates``: the count each point's shards
    must cover when their files do not carry it (the workflow's jobs: see
    :meth:`Point.job_json`); by default as many as the shards hold.

    Returns
    -------
    risk : xarray.Dataset with dims (point, replicate)
    theory : xarray.Dataset with dims (point, term) and (point, probability)
    """
    import xarray as xr

    if len(shards_per_point) != len(theories) or not theories:
        raise InputFileError("aggregate needs one theory file per point and at least one point")
    by_id = {th.attrs.get("point_id"): th for th in theories}
    combined = [combine_shards(s, replicates) for s in shards_per_point]
    order = sorted(range(len(combined)), key=lambda i: _sort_key(point_of(combined[i])))
    combined = [combined[i] for i in order]
    points = [point_of(ds) for ds in combined]
    missing = [p.point_id for p in points if p.point_id not in by_id]
    if missing:
        raise InputFileError(f"no theory file for point(s) {missing}")
    studies = {p.study for p in points}
    if len(studies) != 1:
        raise InputFileError(f"points of several studies given together: {sorted(studies)}")
    reps = {p.replicates for p in points}
    if len(reps) != 1:
        raise InputFileError(f"points with different replicate counts: {sorted(reps)}")
    ths = [by_id[p.point_id] for p in points]

    point_coords = _point_coords(points)
    rep_index = np.arange(points[0].replicates)
    outputs = get_case(points[0].case).outputs
    given = {
        "p_var_tolerance": p_var_tolerance,
        "ks_bootstrap": ks_bootstrap,
        "flagged": flagged,
        "regime_tolerance": regime_tolerance,
    }
    defaults = study_defaults()
    settings = {k: defaults[k] if v is None else v for k, v in given.items()}
    policies = schema()["$defs"]["study"]["properties"]["flagged"]["enum"]
    if settings["flagged"] not in policies:
        raise ValueError(f"flagged must be one of {policies}; got {settings['flagged']!r}")
    data: dict[str, Any] = {}
    for v in (*FRAMEWORK_REPLICATE_VARS, *outputs.aggregated):
        missing_in = [p.point_id for p, ds in zip(points, combined, strict=True) if v not in ds]
        if missing_in:
            raise InputFileError(f"variable {v} is missing from the files of point(s) {missing_in}")
        data[v] = xr.Variable(
            ("point", "replicate"),
            np.stack([ds[v].values for ds in combined]),
            combined[0][v].attrs,
        )
    masks = [replicate_flags(ds, th) for ds, th in zip(combined, ths, strict=True)]
    for name, what in (
        ("rank_deficient", "rank-deficient fit (e.g. rank Sigma_n < d_eff)"),
        ("flagged", "flagged replicate: rank-deficient or failing a case flag"),
    ):
        data[name] = xr.Variable(
            ("point", "replicate"), np.stack([m[name] for m in masks]), {"long_name": what}
        )
    summaries = [
        summarise(ds, th, **settings, masks=m)
        for ds, th, m in zip(combined, ths, masks, strict=True)
    ]
    for key in summaries[0]:
        data[key] = xr.Variable(("point",), np.array([s[key] for s in summaries], dtype=float))
    # Per-entry Monte Carlo variances of the case's multi-dimensional diagnostics (e.g. the
    # spectral off-diagonal block), when every point has the same shape.
    for out in outputs.entries:
        v = out.name
        if len({ds[v].shape for ds in combined}) == 1:
            data[f"entry_var_{v}"] = xr.Variable(
                ("point", *combined[0][v].dims[1:]),
                np.stack([ds[v].values.var(axis=0, ddof=1) for ds in combined]),
                {"long_name": f"per-entry Monte Carlo variance of {v}"},
            )
    risk = xr.Dataset(data, coords={**point_coords, "replicate": rep_index})
    attrs = {
        "case": points[0].case,
        "study": points[0].study,
        "seed": points[0].seed,
        "sampling": points[0].sampling,
        "points": seeding.canonical_json([p.to_json() for p in points]),
        "p_var_tolerance": float(settings["p_var_tolerance"]),
        "ks_bootstrap": int(settings["ks_bootstrap"]),
        "flagged": settings["flagged"],
        "regime_tolerance": float(settings["regime_tolerance"]),
    }
    attrs["config_sha256"] = hashlib.sha256(attrs["points"].encode()).hexdigest()
    risk.attrs = attrs

    theory_ds = aggregate_theory(points, ths)
    theory_ds.attrs = dict(attrs)
    return risk, theory_ds


def aggregate_theory(points: Sequence[Point], ths: Sequence[xr.Dataset]) -> xr.Dataset:
    """The limits of several points in one dataset (dims point, term, probability, ...).

    Weight vectors of different lengths are padded with zeros (harmless for a generalized
    chi-square); other non-scalar variables are kept when every point has the same shape.
    """
    import xarray as xr

    q = max(th.sizes.get("term", 0) for th in ths)
    tdata: dict[str, Any] = {}
    for name in ths[0].data_vars:
        dims = ths[0][name].dims
        if dims == ():
            tdata[name] = xr.Variable(("point",), np.array([th[name].values for th in ths]))
        elif dims == ("term",):
            tdata[name] = xr.Variable(
                ("point", "term"),
                np.stack([np.pad(th[name].values, (0, q - th.sizes["term"])) for th in ths]),
                ths[0][name].attrs,
            )
        elif len({th[name].shape for th in ths}) == 1:
            tdata[name] = xr.Variable(
                ("point", *dims), np.stack([th[name].values for th in ths]), ths[0][name].attrs
            )
    return xr.Dataset(tdata, coords={**_point_coords(points), "probability": PROBABILITIES})


#: Curves fitted to theory-only sweeps (see :func:`fit_curve`).
FITS = ("quadratic", "log", "power")


def fit_curve(x: np.ndarray, y: np.ndarray, kind: str) -> dict[str, Any]:
    """Least-squares fit of y against x, with R^2 on the original scale.

    'quadratic': y = a x^2 + b x + c; 'log': y = a + b log x; 'power': y = C x^p, fitted
    by least squares on (log x, log y) (R^2 also reported on the log scale).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if kind == "quadratic":
        coef = np.polyfit(x, y, 2)
        pred, names = np.polyval(coef, x), ["a", "b", "c"]
    elif kind == "log":
        b, a = np.polyfit(np.log(x), y, 1)
        coef, pred, names = np.array([a, b]), a + b * np.log(x), ["a", "b"]
    elif kind == "power":
        p, log_c = np.polyfit(np.log(x), np.log(y), 1)
        coef, pred, names = np.array([np.exp(log_c), p]), np.exp(log_c) * x**p, ["C", "p"]
    else:
        raise ValueError(f"fit must be one of {FITS}; got {kind!r}")
    out = {"kind": kind, "names": names, "coef": coef, "pred": pred, "r2": _r2(y, pred)}
    if kind == "power":
        out["r2_log"] = _r2(np.log(y), np.log(pred))
    return out


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def grid_axes(points: Sequence[Point]) -> tuple[list[str], list[str]]:
    """The parameters that vary across ``points``: numeric ones and the others (e.g. an
    estimator's ``method``), each in the order of the point's settings; ``m`` is left out
    when ``n`` or ``alpha`` varies (it is derived from them)."""
    varying = [k for k in points[0].settings if len({_key(p.settings[k]) for p in points}) > 1]
    if "m" in varying and ("n" in varying or "alpha" in varying):
        varying.remove("m")

    def numeric(k: str) -> bool:
        return all(isinstance(p.settings[k], int | float) for p in points) and not any(
            isinstance(p.settings[k], bool) for p in points
        )

    return [k for k in varying if numeric(k)], [k for k in varying if not numeric(k)]


def _key(value: Any) -> str:
    return seeding.canonical_json(value)


def keys_beside_output(points: Sequence[Point]) -> list[str]:
    """The swept parameters that make series when x is a scalar output of the limit (the
    study key ``sweep_x``): all but the list-valued ones, which that output summarises."""
    numeric, others = grid_axes(points)
    return [k for k in others + numeric if not isinstance(points[0].settings[k], list)]


def series_labels(points: Sequence[Point], keys: Sequence[str]) -> list[str]:
    """One label per point naming its values of ``keys`` (e.g. ``method=mom``)."""
    return [", ".join(f"{k}={p.settings[k]}" for k in keys) for p in points]


def sweep(
    theories: Sequence[xr.Dataset], fit: str = "none", x_output: str | None = None
) -> xr.Dataset:
    """A theory-only study: E||L(Z)||^2 (with its Monte Carlo s.e. when the case gives one)
    against the one numeric grid parameter that varies (or, with ``x_output``, a scalar
    output of the limit summarising the list-valued swept parameters, e.g. the factor
    model's ``D``), one series per combination of the other varying parameters (e.g. the
    estimator), with a fitted curve and its R^2 per series."""
    import xarray as xr

    points = [point_of(th) for th in theories]
    numeric, others = grid_axes(points)
    if x_output is not None:
        missing = [p.point_id for p, th in zip(points, theories, strict=True) if x_output not in th]
        if missing:
            raise InputFileError(f"no scalar {x_output!r} in the theory files of {missing}")
        xs = [float(th[x_output]) for th in theories]
        x_name = x_output
        others = keys_beside_output(points)
    elif len(numeric) != 1:
        raise InputFileError(
            f"a sweep varies exactly one numeric parameter; these points vary {numeric}"
        )
    else:
        x_name = numeric[0]
        xs = [float(p.settings[x_name]) for p in points]
    labels = series_labels(points, others)
    order = sorted(range(len(points)), key=lambda i: (labels[i], xs[i], points[i].point_id))
    points = [points[i] for i in order]
    labels = [labels[i] for i in order]
    ds = aggregate_theory(points, [theories[i] for i in order])
    ds = ds.assign_coords(
        x=("point", np.array([xs[i] for i in order], float)),
        series=("point", np.array(labels, dtype=object)),
    )
    ds["x"].attrs["long_name"] = x_name
    attrs: dict[str, Any] = {
        "case": points[0].case,
        "study": points[0].study,
        "seed": points[0].seed,
        "swept": x_name,
        "series_keys": seeding.canonical_json(others),
        "points": seeding.canonical_json([p.to_json() for p in points]),
        "fit": fit,
    }
    if fit != "none":
        pred = np.empty(len(points))
        by_series = {}
        for label in dict.fromkeys(labels):
            sel = np.array([lab == label for lab in labels])
            res = fit_curve(ds["x"].values[sel], ds["mean_L2"].values[sel], fit)
            pred[sel] = res["pred"]
            by_series[label] = {
                "coef": dict(zip(res["names"], map(float, res["coef"]), strict=True)),
                "r2": res["r2"],
                **({"r2_log": res["r2_log"]} if "r2_log" in res else {}),
            }
        ds["fit_mean_L2"] = xr.Variable(("point",), pred, {"long_name": f"{fit} fit"})
        attrs["fit_by_series"] = seeding.canonical_json(by_series)
        if len(by_series) == 1:
            (only,) = by_series.values()
            attrs["fit_coef"] = seeding.canonical_json(only["coef"])
            attrs["fit_r2"] = only["r2"]
            if "r2_log" in only:
                attrs["fit_r2_log"] = only["r2_log"]
    attrs["config_sha256"] = hashlib.sha256(attrs["points"].encode()).hexdigest()
    ds.attrs = attrs
    return ds


def _sort_key(point: Point) -> tuple:
    return (point.alpha, point.n, point.point_id)


def _point_coords(points: Sequence[Point]) -> dict[str, Any]:
    coords: dict[str, Any] = {
        "point_id": ("point", np.array([p.point_id for p in points], dtype=object)),
        "point_json": ("point", np.array([p.to_json() for p in points], dtype=object)),
    }
    for key in points[0].settings:
        values = [p.settings.get(key) for p in points]
        if all(_scalar(v) for v in values):
            coords[key] = ("point", np.array(values))
    return coords


def summary_table(risk: xr.Dataset) -> Any:
    """Per-point summaries as a pandas DataFrame (one row per point)."""
    cols = [v for v in risk.data_vars if risk[v].dims == ("point",)]
    return risk[cols].to_dataframe()


def flag_report(risk: xr.Dataset) -> list[str]:
    """One line per point of an aggregated study with flagged replicates or marked not yet
    asymptotic (``off_regime``), naming the point by its id and the settings that vary
    across the study; empty when nothing is flagged (printed at the end of a run)."""
    lines: list[str] = []
    if "n_flagged" not in risk or "off_regime" not in risk:  # written by an older twostage
        return lines
    names = [
        c
        for c in risk.coords
        if risk[c].dims == ("point",)
        and c not in ("point_id", "point_json")
        and len(np.unique(risk[c].values.astype(str))) > 1
    ]
    r = risk.sizes["replicate"]
    counts = [v for v in risk.data_vars if v.startswith("n_not_") or v == "n_rank_deficient"]
    for i in range(risk.sizes["point"]):
        parts = []
        flagged = int(risk["n_flagged"].values[i])
        if flagged:
            why = ", ".join(
                f"{int(risk[c].values[i])} {c.removeprefix('n_').replace('_', ' ')}"
                for c in counts
                if risk[c].values[i] > 0
            )
            kept = "dropped from" if risk.attrs.get("flagged") == "drop" else "kept in"
            parts.append(f"{flagged} of {r} replicates flagged ({why}; {kept} the means)")
        if risk["off_regime"].values[i]:
            parts.append(
                "not yet asymptotic: mean n·Rep / its limit = "
                f"{risk['regime_ratio'].values[i]:.3g} ± {risk['regime_ratio_se'].values[i]:.2g}"
            )
        if parts:
            where = ", ".join(f"{c}={risk[c].values[i]}" for c in names)
            label = f"{risk['point_id'].values[i]}" + (f" ({where})" if where else "")
            lines.append(f"study {risk.attrs.get('study')}, point {label}: " + "; ".join(parts))
    return lines
