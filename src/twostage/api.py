"""In-process API for notebooks: one point of a case study, no Snakemake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import xarray as xr

from . import stages
from .config import SAMPLE_SIZE_KEYS, case_keys, expand_study, study_settings
from .errors import ConfigError
from .frame import Frame
from .threads import one_thread


def study_spec(case: str, params: Mapping[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """A study mapping from a flat mapping of parameters: each key of ``params`` goes to
    ``population``, ``estimator`` or the sample sizes by its name (the names of a case are
    unique across the kinds); other study keys (``replicates``, ``seed``, ...) are given as
    keywords, ``None`` meaning the schema's default."""
    from .cases import REGISTRY

    if not isinstance(case, str) or case not in REGISTRY:
        raise ConfigError(
            f"invalid config key 'run_point.case': expected one of {list(REGISTRY)}; got {case!r}"
        )
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(
            "invalid config key 'params': expected a mapping of parameter names to values; "
            f"got {type(params).__name__}"
        )
    params = dict(params or {})
    spec: dict[str, Any] = {"case": case, "population": {}, "estimator": {}}
    kinds = {key: kind for kind in ("population", "estimator") for key in case_keys(case, kind)}
    for key, value in params.items():
        if key in SAMPLE_SIZE_KEYS:
            spec[key] = value
        elif key in kinds:
            spec[kinds[key]][key] = value
        else:
            raise ConfigError(
                f"invalid config key 'params.{key}': not a parameter of case {case!r}; "
                f"expected n, alpha, or one of {sorted(kinds)}"
            )
    spec.update({k: v for k, v in keys.items() if v is not None})
    return spec


def _aggregation(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`stages.aggregate` from a study's settings."""
    return {k: settings[k] for k in stages.AGGREGATION_SETTINGS}


def _chain(point: Any) -> tuple[Frame, Frame, Frame, Frame]:
    """simulate -> pretrain -> align -> downstream of all the point's replicates, in one
    shard (the workflow's stages, in memory; ``to_xarray()`` gives the datasets xarray
    reads from their files)."""
    sim = stages.simulate(point, 0, point.replicates)
    pre = stages.pretrain(sim)
    al = stages.align(pre)
    return sim, pre, al, stages.downstream(al, sim)


def run_point(
    case: str = "factor",
    params: Mapping[str, Any] | None = None,
    *,
    replicates: int | None = None,
    seed: int | None = None,
    sampling: str | None = None,
    study: str = "notebook",
    ks_bootstrap: int | None = None,
    p_var_tolerance: float | None = None,
    flagged: str | None = None,
    regime_tolerance: float | None = None,
) -> dict[str, xr.Dataset]:
    """Run one point of a case study in-process and return every stage's dataset.

    The numbers are identical to those of the Snakemake workflow for the same study,
    point, seed and replicates (same code path, one BLAS thread, per-replicate streams).

    Parameters
    ----------
    case : str
        Case study name (see ``twostage.cases.REGISTRY``).
    params : mapping, optional
        Population and estimator parameters of the case and the sample sizes ``n`` and
        ``alpha``, in one flat mapping (each name belongs to one kind); missing ones take
        the schema defaults; ``m = floor(alpha n)``.
    replicates, seed, sampling, study, ks_bootstrap, p_var_tolerance, flagged, regime_tolerance
        As the study keys of the configuration (None: the schema's default).

    Returns
    -------
    dict of xarray.Dataset
        Keys ``simulate``, ``pretrain``, ``align``, ``downstream``, ``theory`` (this point)
        and ``risk``, ``theory_summary`` (the aggregated, one-point study).

    Examples
    --------
    >>> from twostage import run_point
    >>> out = run_point("factor", {"d": 10, "k": 2, "factor_strengths": [3, 1],
    ...                            "n": 1000, "alpha": 2}, replicates=200)
    >>> float(out["risk"]["mean_scaled_excess_risk"][0])  # doctest: +SKIP
    """
    spec = study_spec(
        case,
        params,
        replicates=replicates,
        seed=seed,
        sampling=sampling,
        ks_bootstrap=ks_bootstrap,
        p_var_tolerance=p_var_tolerance,
        flagged=flagged,
        regime_tolerance=regime_tolerance,
    )
    (point,) = expand_study(study, spec, prefix="run_point")
    settings = study_settings(spec)
    if point.replicates < 1:
        raise ConfigError("invalid config key 'run_point.replicates': expected >= 1 replicate")
    with one_thread():
        sim, pre, al, down = (frame.to_xarray() for frame in _chain(point))
        th = stages.theory(point).to_xarray()
        risk, th_summary = stages.aggregate([[down]], [th], **_aggregation(settings))
    return {
        "simulate": sim,
        "pretrain": pre,
        "align": al,
        "downstream": down,
        "theory": th,
        "risk": risk,
        "theory_summary": th_summary,
    }


def run_study(study: Mapping[str, Any], name: str = "notebook") -> tuple[xr.Dataset, xr.Dataset]:
    """Run a whole (small) study in-process: every point of its grid, all replicates in one
    shard, then the aggregation; the numbers equal the workflow's for the same study.

    Parameters
    ----------
    study : mapping
        A study as in the configuration file (``case``, ``replicates``, ``population``,
        ``grid``, ...); validated, defaults filled in.
    name : str
        The study's name (part of no seed).

    Returns
    -------
    (risk, theory) : the aggregated datasets, as ``risk.nc`` and ``theory.nc``
    """
    points = expand_study(name, study)
    if points[0].replicates < 1:
        raise ConfigError(
            f"invalid config key 'studies.{name}.replicates': expected >= 1 replicate"
        )
    settings = study_settings(study)
    with one_thread():
        shards = [[_chain(point)[-1].to_xarray()] for point in points]
        return stages.aggregate(
            shards, [stages.theory(p).to_xarray() for p in points], **_aggregation(settings)
        )
