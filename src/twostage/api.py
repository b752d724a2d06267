"""In-process API for notebooks: one point of a case study, no Snakemake."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import xarray as xr
from threadpoolctl import threadpool_limits

from . import stages
from .config import expand_study
from .errors import ConfigError


def run_point(
    case: str = "factor",
    params: Mapping[str, Any] | None = None,
    *,
    replicates: int = 1000,
    seed: int = 20260,
    sampling: str | None = None,
    study: str = "notebook",
    ks_bootstrap: int = 200,
    p_var_tolerance: float = 0.05,
) -> dict[str, xr.Dataset]:
    """Run one point of a case study in-process and return every stage's dataset.

    The numbers are identical to those of the Snakemake workflow for the same study,
    point, seed and replicates (same code path, one BLAS thread, per-replicate streams).

    Parameters
    ----------
    case : str
        Case study name (see ``twostage.cases.REGISTRY``).
    params : mapping, optional
        Case parameters (missing ones take the schema defaults), including ``n`` and
        ``alpha``; ``m = floor(alpha n)``.
    replicates, seed, sampling, study
        As the study keys of the configuration.

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
    params = dict(params or {})
    m = params.pop("m", None)  # derived from n and alpha; accepted when consistent
    spec = {
        "case": case,
        "params": params,
        "replicates": replicates,
        "shard_size": replicates,
        "seed": seed,
        "ks_bootstrap": ks_bootstrap,
        "p_var_tolerance": p_var_tolerance,
    }
    if sampling is not None:  # else the case's default ('sufficient'; 'raw' for gmm)
        spec["sampling"] = sampling
    (point,) = expand_study(study, spec)
    if m is not None and int(m) != point.m:
        raise ConfigError(
            f"params.m = {m} disagrees with floor(alpha n) = {point.m}; give n and alpha"
        )
    with threadpool_limits(limits=1):
        sim = stages.simulate(point, 0, replicates)
        pre = stages.pretrain(sim)
        al = stages.align(pre)
        down = stages.downstream(al, sim)
        th = stages.theory(point)
        risk, th_summary = stages.aggregate(
            [[down]], [th], p_var_tolerance=p_var_tolerance, ks_bootstrap=ks_bootstrap
        )
    return {
        "simulate": sim,
        "pretrain": pre,
        "align": al,
        "downstream": down,
        "theory": th,
        "risk": risk,
        "theory_summary": th_summary,
    }
