"""Tables of results: every table is written as CSV and, beside it, as LaTeX (booktabs),
ready for a paper."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def latex(df: Any, caption: str | None = None) -> str:
    """``df`` as a LaTeX booktabs table (``\\toprule``/``\\midrule``/``\\bottomrule``),
    floats with 4 significant digits, the index as the first column."""
    styler = df.style.format(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    styler = styler.format_index(escape="latex", axis=1).format_index(escape="latex", axis=0)
    return styler.to_latex(hrules=True, caption=caption)


def write_table(df: Any, csv_path: str | Path, caption: str | None = None) -> list[Path]:
    """Write ``df`` to ``csv_path`` and to the same path with suffix ``.tex`` (both or
    neither, each atomically); return both paths."""
    from .io import atomic_paths

    csv_path = Path(csv_path)
    tex_path = csv_path.with_suffix(".tex")
    with atomic_paths([csv_path, tex_path]) as (csv_tmp, tex_tmp):
        df.to_csv(csv_tmp)
        Path(tex_tmp).write_text(latex(df, caption))
    return [csv_path, tex_path]


#: a paper value read off a figure "agrees" with ours within this relative difference (the
#: reading error of a value taken from a plot)
READING_TOLERANCE = 0.10


def _law_or_mean(values: Any) -> tuple[Any, float]:
    """(weights or None, mean) of a theory output at one point: weights of a generalized
    chi-square (1-d) or a scalar mean."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return (arr, float(arr.sum())) if arr.ndim == 1 else (None, float(arr))


#: values read off the limit curves of a Monte Carlo figure (a study's ``reference``), and
#: how to compute ours at the study's largest n: (label, term, quantile)
LIMIT_READINGS = {
    "limit_median_total": ("median of the limit of n(R - sigma^2)", "total", 0.5),
    "limit_median_pre": ("median of the limit of n Rep", "pre", 0.5),
    "limit_var": ("limit of n Var (sigma^2 d_eff)", "var", None),
}


def _limit_value(th: Any, i: int, term: str, q: float | None) -> float:
    """Our limit at point i: a quantile of the total or pre-training law, or sigma^2 d_eff."""
    import numpy as np

    from .gchisq import GeneralizedChiSquare

    offset = float(th["noise_variance"].values[i]) * float(th["d_eff"].values[i])
    if term == "var":
        return offset
    w = np.asarray(th["limit_weights"].values[i], float) / float(th["alpha_eff"].values[i])
    law = GeneralizedChiSquare(w, offset=offset if term == "total" else 0.0)
    return float(law.ppf(q))


def _reading_row(study: Any, label: str, paper: float, mine: float) -> dict:
    """A value read off one of the paper's figures against ours."""
    ratio = float(paper) / mine
    ok = abs(ratio - 1) <= READING_TOLERANCE
    verdict = f"agrees within {READING_TOLERANCE:.0%}" if ok else "differs"
    return {
        "study": study,
        "quantity": label,
        "printed": float(paper),
        "numerical": mine,
        "verdict": f"{verdict} (paper / ours = {ratio:.3g})",
    }


def errata(mc: Any, sweeps: Any = (), references: Any = None) -> Any:
    """The errata table: for every closed form a case declares as printed by the paper
    (``Outputs.errata``), at the largest m of each Monte Carlo study of that case, the
    printed, corrected and numerical means, the Monte Carlo mean ± s.e., the KS distance of
    the Monte Carlo to each law (with the 1% critical value) and a verdict, over the
    replicates the study's summaries use (the unflagged ones under ``flagged: drop``) and
    with ``risk.nc``'s critical value for them; and for every
    theory-only study with values read off the paper's figure (its ``reference``), the
    paper's value against our numerical limit at the same x.

    Parameters
    ----------
    mc : iterable of (risk, theory) xarray Datasets (aggregated), one pair per study
    sweeps : iterable of (sweep Dataset, reference mapping or None)
    references : mapping study -> reference, for the Monte Carlo studies: values read
        off the limit curves of the paper's figure (:data:`LIMIT_READINGS`) are set against
        our limit at the study's largest n

    Returns
    -------
    pandas.DataFrame, one row per compared quantity
    """
    import numpy as np
    import pandas as pd

    from .cases import get_case
    from .gchisq import GeneralizedChiSquare
    from .stages import ks_distance, mc_se

    rows = []
    for risk, th in mc:
        case = get_case(str(risk.attrs["case"]))
        i = int(np.argmax(risk["m"].values))
        # the replicates the study's summaries use (all, or the unflagged ones under
        # ``flagged: drop``), and their 1% critical value, as risk.nc stores them
        used = np.ones(risk.sizes["replicate"], bool)
        if risk.attrs.get("flagged") == "drop":
            used = ~risk["flagged"].values[i].astype(bool)
        crit = float(risk["ks_critical_01"].values[i])
        for e in case.outputs.errata:
            x = np.asarray(risk[e.monte_carlo].values[i], dtype=float)[used]
            r = len(x)
            row = {
                "study": risk.attrs.get("study"),
                "quantity": e.label,
                "m": int(risk["m"].values[i]),
                "n": int(risk["n"].values[i]),
                "replicates": r,
                "mc_mean": float(x.mean()),
                "mc_se": mc_se(x),
                "ks_critical_01": crit,
            }
            verdicts = []
            for role in ("printed", "corrected", "numerical"):
                var = getattr(e, role)
                if var is None:
                    row[role], row[f"ks_{role}"] = float("nan"), float("nan")
                    continue
                weights, mean = _law_or_mean(th[var].values[i])
                row[role] = mean
                if weights is None:
                    z = (mean - row["mc_mean"]) / row["mc_se"]
                    row[f"ks_{role}"] = float("nan")
                    verdicts.append(
                        f"{role} mean {'rejected' if abs(z) > 4 else 'consistent'} (z = {z:.1f})"
                    )
                else:
                    ks = ks_distance(GeneralizedChiSquare(weights).cdf(np.sort(x)))
                    row[f"ks_{role}"] = ks
                    verdicts.append(f"{role} {'rejected' if ks > crit else 'consistent'}")
            row["verdict"] = "; ".join(verdicts)
            rows.append(row)
    for risk, th in mc:
        reference = (references or {}).get(str(risk.attrs.get("study"))) or {}
        i = int(np.argmax(risk["n"].values))
        for key, (what, term, q) in LIMIT_READINGS.items():
            for paper in reference.get(key, []):
                label = f"{reference.get('label', 'paper')}: {what}"
                mine = _limit_value(th, i, term, q)
                rows.append(_reading_row(risk.attrs.get("study"), label, paper, mine))
    for sw, reference in sweeps:
        if not reference:
            continue
        name = str(sw.attrs.get("swept"))
        xs, ours = sw["x"].values, sw["mean_L2"].values
        for value, paper in zip(
            reference.get(name, []), reference.get("mean_L2", []), strict=False
        ):
            hit = np.flatnonzero(np.isclose(xs, float(value)))
            if hit.size == 0:
                continue
            label = f"{reference.get('label', 'paper')}: E||L(Z)||^2 at {name} = {value:g}"
            rows.append(_reading_row(sw.attrs.get("study"), label, paper, float(ours[hit[0]])))
    columns = [
        "study",
        "quantity",
        "m",
        "n",
        "replicates",
        "printed",
        "corrected",
        "numerical",
        "mc_mean",
        "mc_se",
        "ks_printed",
        "ks_corrected",
        "ks_numerical",
        "ks_critical_01",
        "verdict",
    ]
    return pd.DataFrame(rows, columns=columns).set_index(["study", "quantity"])
