"""Figures drawn from the aggregated results only (``risk.nc`` and ``theory.nc``).

* ``cdf``: empirical CDFs of the total, pre-training and variance terms at a few n against
  their limits (the paper's Fig. 3 style);
* ``convergence``: KS distances of the total and pre-training terms and p_var against n,
  with error bars (Fig. 4 style);
* ``closed_forms``: m Rep against the numerical limit and the case's closed forms (printed
  and corrected), in law and in mean;
* ``diagnostics``: parameter-level laws of aligned representatives (e.g. Anderson's PCA
  CLT) and the orbit-invariance check;
* ``means``: the Monte Carlo mean of m Rep against the swept parameter (one series per
  combination of the other swept parameters) beside the limit's E||L(Z)||^2, the case's
  closed forms and the published bounds it declares;
* ``crossing``: when does pre-training pay off (the paper's Fig. 1, with data): the
  asymptotic scaled risk of two-stage learning against alpha beside the downstream-only
  baseline's, the crossing alpha_0, and the Monte Carlo of both estimators.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cases import get_case
from .config import Point, study_defaults

if TYPE_CHECKING:
    import xarray as xr

FIGURES = ("cdf", "convergence", "closed_forms", "diagnostics", "means", "crossing")
#: every figure is written in each of these formats (PNG for the report, PDF for papers)
FORMATS = ("png", "pdf")
#: matplotlib.pyplot, pandas and seaborn, imported on the first drawing call (the
#: workflow imports this module for FIGURES without drawing anything)
plt: Any = None
pd: Any = None
sns: Any = None
GeneralizedChiSquare: Any = None


def _backend() -> None:
    global plt, pd, sns, GeneralizedChiSquare
    if plt is None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as _plt
        import pandas as _pd
        import seaborn as _sns

        from .gchisq import GeneralizedChiSquare as _gchisq

        plt, pd, sns, GeneralizedChiSquare = _plt, _pd, _sns, _gchisq


TERMS = (
    ("scaled_excess_risk", "total  n(R - σ²)"),
    ("n_rep", "pre-training  n·Rep"),
    ("n_var", "variance  n·Var"),
)


def _laws(th: xr.Dataset, i: int) -> dict[str, GeneralizedChiSquare | float]:
    w = th["limit_weights"].values[i]
    a = float(th["alpha_eff"].values[i])
    offset = float(th["noise_variance"].values[i] * th["d_eff"].values[i])
    return {
        "scaled_excess_risk": GeneralizedChiSquare(w / a, offset=offset),
        "n_rep": GeneralizedChiSquare(w / a),
        "n_var": offset,
    }


def _pick(values: np.ndarray, k: int) -> list[int]:
    """Indices of at most k values spread evenly (in log scale) over a sorted array."""
    if len(values) <= k:
        return list(range(len(values)))
    return sorted({int(round(x)) for x in np.linspace(0, len(values) - 1, k)})


def _grid_x(sample: np.ndarray) -> np.ndarray:
    lo, hi = np.quantile(sample, [0.0, 0.995])
    return np.linspace(max(lo - 0.1 * (hi - lo), 0.0), hi + 0.1 * (hi - lo), 300)


SIZES = ("n", "alpha", "m")


def layout(
    risk: xr.Dataset, along: str = "n", x_output: str | None = None, th: Any = None
) -> tuple[str, np.ndarray, np.ndarray]:
    """How a Monte Carlo study's points are drawn, whatever its grid: the x parameter, its
    value per point, and a series label per point naming the other swept parameters (one
    line per combination, never joining points that differ in anything but x).

    ``along="n"`` (convergence to the limit): x is n when n is swept, else the first
    swept model parameter, else alpha. ``along="m"`` (means of m Rep): x is the first swept
    model parameter, else m. ``x_output`` (the study key ``sweep_x``): x is that scalar
    output of the limit (in ``th``), summarising the list-valued swept parameters.
    """
    from .stages import grid_axes, keys_beside_output, series_labels

    points = [Point.from_json(str(text), trusted=True) for text in risk["point_json"].values]
    if x_output is not None:
        labels = np.array(series_labels(points, keys_beside_output(points)), dtype=object)
        return x_output, np.asarray(th[x_output].values, float), labels
    numeric, others = grid_axes(points)
    params = [k for k in numeric if k not in SIZES]
    if along == "n":
        x_name = (
            "n" if "n" in numeric else (params or [k for k in numeric if k in SIZES] or ["n"])[0]
        )
    else:
        x_name = params[0] if params else "m"
    # along m, n is m / alpha: not a series of its own; m is derived from n and alpha
    tied = {"m", "n"} if x_name == "m" else {"m"}
    series = others + [k for k in numeric if k != x_name and k not in tied]
    labels = np.array(series_labels(points, series), dtype=object)
    x = np.array([p.settings[x_name] for p in points], float)
    return x_name, x, labels


def _series(x: np.ndarray, labels: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, indices of its points sorted by x) per series, in order of appearance."""
    out = []
    for label in dict.fromkeys(labels):
        sel = np.flatnonzero(labels == label)
        out.append((str(label), sel[np.argsort(x[sel], kind="stable")]))
    return out


def _fmt(name: str, value: float) -> str:
    return f"{name} = {value:g}"


def cdf_figure(risk: xr.Dataset, th: xr.Dataset, max_panels: int | None = None) -> Any:
    """Empirical CDFs at up to ``max_panels`` points per series (default: the study key
    ``cdf_panels``'s default) against each point's limit (dashed, same colour)."""
    _backend()
    if max_panels is None:
        max_panels = study_defaults()["cdf_panels"]
    x_name, xs, labels = layout(risk, "n")
    rows = _series(xs, labels)
    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 3.6 * len(rows)), squeeze=False)
    for row, (series, idx) in enumerate(rows):
        chosen = idx[_pick(xs[idx], max_panels)]
        palette = sns.color_palette("viridis", len(chosen))
        for col, (var, label) in enumerate(TERMS):
            ax = axes[row, col]
            grid = _grid_x(np.concatenate([risk[var].values[i] for i in chosen]))
            for colour, i in zip(palette, chosen, strict=True):
                sns.ecdfplot(x=risk[var].values[i], ax=ax, color=colour, label=_fmt(x_name, xs[i]))
                law = _laws(th, int(i))[var]
                if isinstance(law, float):
                    ax.axvline(law, color=colour, ls="--", lw=1)
                else:
                    ax.plot(grid, law.cdf(grid), color=colour, ls="--", lw=1)
            ax.plot([], [], "k--", lw=1, label="limit at each point")
            ax.set_title(f"{label}" + (f", {series}" if series else ""), fontsize=9)
            ax.set_xlabel(label.split("  ")[1])
        axes[row, 0].legend(fontsize=8)
    where = f"{risk.attrs.get('study')}, {risk.attrs.get('case')}"
    fig.suptitle(f"Empirical CDFs against the limit law ({where})")
    _tight_layout(fig)
    return fig


def convergence_figure(risk: xr.Dataset, reference: dict | None = None) -> Any:
    """KS distances (total, pre-training) and p_var against the study's x parameter, one
    series per combination of the other swept parameters, with ±2 s.e."""
    _backend()
    x_name, xs, labels = layout(risk, "n")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    metrics = (("KS total", "ks_total"), ("KS pre-training", "ks_pre"), ("p_var", "p_var"))
    for ax, (metric, var) in zip(axes, metrics, strict=True):
        for colour, (series, idx) in zip(
            sns.color_palette("deep"), _series(xs, labels), strict=False
        ):
            ax.errorbar(
                xs[idx],
                risk[var].values[idx],
                yerr=2 * risk[f"{var}_se"].values[idx],
                marker="o",
                capsize=3,
                color=colour,
                label=series or None,
            )
            if metric != "p_var":
                ax.plot(xs[idx], risk["ks_critical_01"].values[idx], ":", color=colour, lw=1)
        if metric != "p_var":
            ax.plot([], [], "k:", lw=1, label="KS 1% critical value")
        _reference(ax, reference, x_name, var)
        _log_if_wide(ax, xs, np.ones_like(xs))
        ax.set_xlabel(x_name)
        ax.set_title(metric + ("  (ε = tol·σ² d_eff)" if metric == "p_var" else ""))
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.suptitle("Convergence to the limit (error bars: ±2 bootstrap / binomial s.e.)")
    _tight_layout(fig)
    return fig


def closed_forms_figure(risk: xr.Dataset, th: xr.Dataset) -> Any:
    """m Rep against the numerical limit and the case's declared closed forms."""
    _backend()
    declared = get_case(str(risk.attrs["case"])).outputs.closed_forms
    forms = {"numerical": ("limit_weights", "numerical limit")}
    forms.update({f.name: (f.variable, f.label) for f in declared})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    i = int(np.argmax(risk["m"].values))
    sample = risk["m_rep"].values[i]
    x = _grid_x(sample)
    sns.ecdfplot(x=sample, ax=axes[0], color="C0", label=f"Monte Carlo (m = {int(risk['m'][i])})")
    styles = {"numerical": ("k", "--"), "corrected": ("C2", ":"), "printed": ("C3", "-.")}
    for j, (name, (var, label)) in enumerate(forms.items()):
        law = GeneralizedChiSquare(th[var].values[i])
        colour, ls = styles.get(name, (f"C{4 + j}", "-"))
        ks = risk["ks_pre"][i] if name == "numerical" else risk[f"ks_m_rep_{name}"][i]
        axes[0].plot(x, law.cdf(x), color=colour, ls=ls, label=f"{label} (KS {float(ks):.3f})")
    axes[0].set_xlabel("m·Rep")
    axes[0].set_title("law of m·Rep at the largest m")
    axes[0].legend(fontsize=8)
    ax = axes[1]
    x_name, xs, labels = layout(risk, "m")
    for k, (series, idx) in enumerate(_series(xs, labels)):
        tag = f" ({series})" if series else ""
        ax.errorbar(
            xs[idx],
            risk["mean_m_rep"].values[idx],
            yerr=2 * risk["se_m_rep"].values[idx],
            marker="o",
            capsize=3,
            color="C0" if k == 0 else f"C{5 + k}",
            label=f"Monte Carlo mean ± 2 s.e.{tag}",
        )
        for j, (name, (var, label)) in enumerate(forms.items()):  # each point's own limit
            colour, ls = styles.get(name, (f"C{4 + j}", "-"))
            means = [float(th[var].values[p].sum()) for p in idx]
            ax.plot(
                xs[idx], means, color=colour, ls=ls, label=f"{label} E‖L(Z)‖²" if k == 0 else None
            )
    _log_if_wide(ax, xs, np.ones_like(xs))
    ax.set_xlabel(x_name)
    ax.set_ylabel("E m·Rep")
    ax.set_title("mean of m·Rep against the limit's mean at each point")
    ax.legend(fontsize=8)
    fig.suptitle("Numerical limit vs the paper's printed and corrected closed forms")
    _tight_layout(fig)
    return fig


def diagnostics_figure(risk: xr.Dataset, th: xr.Dataset) -> Any:
    """Parameter-level laws of the case's declared diagnostics, per-entry variances of its
    multi-dimensional diagnostics against their predictions, and the orbit invariance."""
    _backend()
    outputs = get_case(str(risk.attrs["case"])).outputs
    laws = [v for v in outputs.with_laws if v.name in risk]
    entries = [v for v in outputs.entries if f"entry_var_{v.name}" in risk]
    panels = len(laws) + len(entries) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False)
    i = int(np.argmax(risk["m"].values))
    for ax, out in zip(axes[0], laws, strict=False):
        sample = risk[out.name].values[i]
        sns.ecdfplot(x=sample, ax=ax, label=f"Monte Carlo (m = {int(risk['m'][i])})")
        x = _grid_x(sample)
        ax.plot(x, GeneralizedChiSquare(th[out.law].values[i]).cdf(x), "k--", label="limit")
        ks = float(risk[f"ks_{out.name}"][i])
        ax.set_title(f"{out.description}\nKS {ks:.3f}", fontsize=9)
        ax.legend(fontsize=8)
    for ax, out in zip(axes[0][len(laws) :], entries, strict=False):
        emp = risk[f"entry_var_{out.name}"].values[i].ravel()
        preds = [(label, var) for label, var in out.predictions if var in th]
        for j, (label, var) in enumerate(preds):
            ax.scatter(emp, th[var].values[i].ravel(), marker="oxs+^"[j % 5], label=label)
        top = max([emp.max()] + [th[var].values[i].max() for _, var in preds])
        ax.plot([0, top], [0, top], "k:", lw=1, label="prediction = Monte Carlo")
        ax.set_xlabel(f"Monte Carlo variance per entry (m = {int(risk['m'][i])})")
        ax.set_ylabel("predicted variance")
        ax.set_title(f"per-entry variance of {out.description}", fontsize=9)
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    gap = risk["orbit_invariance_error"].max("replicate").values
    x_name, xs, labels = layout(risk, "n")
    for series, idx in _series(xs, labels):
        ax.plot(xs[idx], gap[idx], "o", label=series or None)
    _log_if_wide(ax, xs, np.ones_like(xs))
    ax.set_yscale("symlog", linthresh=1e-16)  # exact zeros (permutations) stay visible
    ax.set_ylim(bottom=0)
    ax.axhline(1e-10, color="C3", ls=":", label="tolerance 1e-10")
    ax.legend(fontsize=8)
    ax.set_xlabel(x_name)
    ax.set_title("orbit invariance: max |Δ risk term| under alignment", fontsize=9)
    _tight_layout(fig)
    return fig


def _reference(ax, reference: dict | None, x: str, y: str) -> None:
    """Overlay values read off the paper's figure, when given for these columns."""
    if reference and x in reference and y in reference:
        ax.plot(reference[x], reference[y], "k*", ms=9, label=reference.get("label", "paper"))


def _log_if_wide(ax, x: np.ndarray, y: np.ndarray) -> None:  # noqa: ANN001
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.min() > 0 and x.max() / x.min() > 10:
        ax.set_xscale("log")
    pos = y[y > 0]
    if len(pos) and pos.max() / pos.min() > 100:
        ax.set_yscale("log")


def _declared_curves(
    ax,  # noqa: ANN001
    case: str,
    th: xr.Dataset,
    sel: np.ndarray,
    x: np.ndarray,
    drawn: list,
) -> None:
    """The case's closed forms (black markers, one shape each) and bounds (grey lines, one
    style each) at the points ``sel``; each labelled once, identical curves drawn once."""
    outputs = get_case(case).outputs
    for i, form in enumerate(outputs.closed_forms):
        name = f"mean_L2_{form.name}"
        if name in th:
            label = None if ("form", form.name) in drawn else f"{form.label} E‖L(Z)‖²"
            drawn.append(("form", form.name))
            ax.plot(
                x,
                th[name].values[sel],
                ls="none",
                marker="x+12"[i % 4],
                ms=8,
                color="k",
                label=label,
            )
    for i, bound in enumerate(outputs.bounds):
        if bound.variable in th:
            y = th[bound.variable].values[sel]
            key = ("bound", bound.name, tuple(np.round(y, 12)))
            if key in drawn:
                continue
            label = None if any(k[:2] == key[:2] for k in drawn) else bound.label
            drawn.append(key)
            ax.plot(x, y, ls=(":", "-.", "--")[i % 3], color="0.4", lw=1.3, label=label)


def sweep_figure(sw: xr.Dataset, reference: dict | None = None) -> Any:
    """E||L(Z)||^2 against the swept parameter, one series per combination of the other
    varying parameters, with the fitted curves (R^2), the case's closed forms and the
    published bounds it declares."""
    _backend()
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    x, y = sw["x"].values, sw["mean_L2"].values
    name = sw.attrs.get("swept", "x")
    labels = sw["series"].values if "series" in sw.coords else np.array([""] * len(x))
    fits = json.loads(sw.attrs["fit_by_series"]) if "fit_by_series" in sw.attrs else {}
    drawn: list = []
    for colour, label in zip(sns.color_palette("deep"), dict.fromkeys(labels), strict=False):
        sel = labels == label
        tag = f" ({label})" if label else ""
        if "mean_L2_se" in sw:
            ax.errorbar(
                x[sel],
                y[sel],
                yerr=2 * sw["mean_L2_se"].values[sel],
                fmt="o",
                capsize=3,
                color=colour,
                label=f"twostage limit{tag} (±2 s.e.)",
            )
        else:
            ax.plot(x[sel], y[sel], "o-", color=colour, label=f"twostage limit{tag}")
        if "fit_mean_L2" in sw and label in fits:
            res = fits[label]
            extra = f", R² log {res['r2_log']:.3f}" if "r2_log" in res else ""
            ax.plot(
                x[sel],
                sw["fit_mean_L2"].values[sel],
                "-",
                color=colour,
                alpha=0.6,
                label=f"{sw.attrs['fit']} fit{tag} (R² {res['r2']:.3f}{extra})",
            )
        _declared_curves(ax, sw.attrs["case"], sw, sel, x[sel], drawn)
    _reference(ax, reference, name, "mean_L2")
    _log_if_wide(ax, x, y)
    if sw.attrs.get("fit") == "power":
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(name)
    ax.set_ylabel("E ‖L(Z)‖²  (= lim E m·Rep)")
    ax.set_title(f"{sw.attrs.get('study')}: E‖L(Z)‖² against {name}")
    ax.legend(fontsize=7)
    _tight_layout(fig)
    return fig


def means_figure(risk: xr.Dataset, th: xr.Dataset, x_output: str | None = None) -> Any:
    """Mean m Rep (±2 s.e.) against the swept parameter (m for a sample-size sweep), one
    series per combination of the other swept parameters, beside E||L(Z)||^2 of the limit
    at each point, the case's closed forms and its declared bounds."""
    _backend()
    x_name, x, labels = layout(risk, "m", x_output, th)
    fig, ax = plt.subplots(figsize=(7.5, 5.0))
    drawn: list = []
    for colour, label in zip(sns.color_palette("deep"), dict.fromkeys(labels), strict=False):
        sel = np.flatnonzero(labels == label)
        sel = sel[np.argsort(x[sel])]
        tag = f" ({label})" if label else ""
        ax.errorbar(
            x[sel],
            risk["mean_m_rep"].values[sel],
            yerr=2 * risk["se_m_rep"].values[sel],
            fmt="o",
            capsize=3,
            color=colour,
            label=f"Monte Carlo mean m·Rep ± 2 s.e.{tag}",
        )
        ax.plot(x[sel], th["mean_L2"].values[sel], "--", color=colour, label=f"limit E‖L(Z)‖²{tag}")
        off = sel[risk["off_regime"].values[sel] > 0] if "off_regime" in risk else sel[:0]
        if len(off):
            ax.scatter(x[off], risk["mean_m_rep"].values[off], s=140, facecolors="none",
                       edgecolors="firebrick", label="not yet asymptotic (off_regime)")  # fmt: skip
        _declared_curves(ax, str(risk.attrs["case"]), th, sel, x[sel], drawn)
    _log_if_wide(ax, x, np.concatenate([risk["mean_m_rep"].values, th["mean_L2"].values]))
    ax.set_xlabel(x_name)
    ax.set_ylabel("m·Rep")
    ax.set_title(
        f"{risk.attrs.get('study')}: m·Rep against {x_name} (R = {risk.sizes['replicate']})"
    )
    ax.legend(fontsize=7)
    _tight_layout(fig)
    return fig


def crossing(alpha: np.ndarray, gain: np.ndarray, se: np.ndarray) -> tuple[float, float, float]:
    """Where the Monte Carlo mean of ``gain`` (baseline minus two-stage scaled risk, paired
    per replicate) changes sign along ``alpha``: linear interpolation in log alpha between
    the bracketing points; the interval is where ``gain -+ 2 se`` change sign. NaN where
    the sign does not change within the grid."""
    order = np.argsort(alpha)
    la, g, e = np.log(alpha[order]), gain[order], se[order]

    def root(values: np.ndarray) -> float:
        for i in range(len(values) - 1):
            if values[i] < 0 <= values[i + 1] or values[i] >= 0 > values[i + 1]:
                t = values[i] / (values[i] - values[i + 1])
                return float(np.exp(la[i] + t * (la[i + 1] - la[i])))
        return float("nan")

    bounds = sorted([root(g - 2 * e), root(g + 2 * e)])
    return root(g), bounds[0], bounds[1]


def crossing_figure(risk: xr.Dataset, th: xr.Dataset) -> Any:
    """The paper's Fig. 1 with data: sigma^2 d_eff + E||L(Z)||^2 / alpha against alpha (the
    limit of two-stage learning), the flat sigma^2 d_base (downstream only), alpha_0 where
    they cross, and at each alpha the Monte Carlo means (±2 s.e.) of both estimators at the
    point of largest n; right, the probability that two-stage beats the baseline on the
    same downstream sample, with the Monte Carlo crossing. One panel row per combination of
    the swept parameters other than n and alpha."""
    _backend()
    from .stages import grid_axes, series_labels

    points = [Point.from_json(str(text), trusted=True) for text in risk["point_json"].values]
    numeric, others = grid_axes(points)
    labels = np.array(series_labels(points, [k for k in others + numeric if k not in SIZES]))
    groups = list(dict.fromkeys(labels))
    fig, axes = plt.subplots(len(groups), 2, figsize=(12, 4.2 * len(groups)), squeeze=False)
    has_base = "mean_n_base" in risk
    for row, group in enumerate(groups):
        sel = np.flatnonzero(labels == group)
        alpha = th["alpha_eff"].values[sel]
        # per alpha, the point of largest n (the closest to the limit)
        best: dict[float, int] = {}
        for i, a in zip(sel, np.round(risk["alpha"].values[sel], 12), strict=True):
            if a not in best or risk["n"].values[i] > risk["n"].values[best[a]]:
                best[a] = int(i)
        idx = np.array([best[a] for a in sorted(best)])
        i0 = int(sel[0])
        sigma2, d_eff = float(th["noise_variance"][i0]), int(th["d_eff"][i0])
        d_base, el2 = int(th["d_base"][i0]), float(th["mean_L2"][i0])
        a0 = el2 / (sigma2 * (d_base - d_eff)) if d_base > d_eff else float("nan")
        lo = min(alpha.min(), a0 if np.isfinite(a0) else alpha.min()) / 3
        hi = max(alpha.max(), a0 if np.isfinite(a0) else alpha.max()) * 3
        grid = np.geomspace(lo, hi, 200)
        ax = axes[row, 0]
        ax.plot(grid, sigma2 * d_eff + el2 / grid, "k-", label="two-stage limit σ²d_eff + E‖L‖²/α")
        ax.axhline(sigma2 * d_base, color="C3", ls="-", label="downstream only σ² d_base")
        if np.isfinite(a0):
            ax.axvline(a0, color="0.4", ls="--", label=f"α₀ = {a0:.3g} (theory)")
        a_mc = th["alpha_eff"].values[idx]
        ax.errorbar(
            a_mc,
            risk["mean_scaled_excess_risk"].values[idx],
            yerr=2 * risk["se_scaled_excess_risk"].values[idx],
            fmt="o",
            color="k",
            capsize=3,
            label="two-stage, Monte Carlo ±2 s.e.",
        )
        if has_base:
            ax.errorbar(
                a_mc,
                risk["mean_n_base"].values[idx],
                yerr=2 * risk["se_n_base"].values[idx],
                fmt="s",
                color="C3",
                capsize=3,
                label="downstream only, Monte Carlo ±2 s.e.",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("α = m / n")
        ax.set_ylabel("n (R − σ²)")
        ax.set_title(("" if not group else f"{group}: ") + "when does pre-training pay off?")
        ax.legend(fontsize=7)
        ax = axes[row, 1]
        if has_base and len(idx) > 0:
            ax.errorbar(
                a_mc,
                risk["p_beats_base"].values[idx],
                yerr=2 * risk["p_beats_base_se"].values[idx],
                fmt="o-",
                capsize=3,
                label="P(two-stage beats baseline), same sample",
            )
            ac, alo, ahi = crossing(
                a_mc, risk["mean_gain_base"].values[idx], risk["se_gain_base"].values[idx]
            )
            if np.isfinite(ac):
                ax.axvspan(
                    alo if np.isfinite(alo) else ac,
                    ahi if np.isfinite(ahi) else ac,
                    color="C0",
                    alpha=0.15,
                    label=f"Monte Carlo crossing {ac:.3g} [{alo:.3g}, {ahi:.3g}]",
                )
            if np.isfinite(a0):
                ax.axvline(a0, color="0.4", ls="--", label=f"α₀ = {a0:.3g} (theory)")
            ax.set_ylim(-0.02, 1.02)
            ax.set_xscale("log")
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no downstream-only baseline\nMonte Carlo for this case", ha="center")
            ax.set_axis_off()
        ax.set_xlabel("α = m / n")
    fig.suptitle(f"{risk.attrs.get('study')}: two-stage against downstream-only learning")
    _tight_layout(fig)
    return fig


def draw_sweep(sw: xr.Dataset, outdir: str | Path, reference: dict | None = None) -> list[Path]:
    """Draw the sweep figure into ``outdir`` (every format); return the paths."""
    _backend()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="paper")
    return _save(sweep_figure(sw, reference), outdir, "sweep")


#: Exponent digits and sign as Unicode superscripts (for :func:`_plain_log_label`).
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_MATHDEFAULT = re.compile(r"\$\\mathdefault\{(.*)\}\$")


def _plain_log_label(label: str) -> str:
    """A log-axis tick label of matplotlib (``$\\mathdefault{10^{3}}$``,
    ``$\\mathdefault{2\\times10^{-1}}$``) as plain text with Unicode superscripts (10³,
    2×10⁻¹): the same look, without mathtext, whose parsing (again for each renderer) is
    about a second of a plot job."""
    match = _MATHDEFAULT.fullmatch(label)
    if match is None:
        return label
    body = re.sub(r"\^\{([^}]*)\}", lambda g: g.group(1).translate(_SUPERSCRIPT), match[1])
    return body.replace("\\times", "×").replace("-", "−")


def _plain_log_labels(fig: Any) -> None:
    """Label the log and symlog axes of ``fig`` in plain text (:func:`_plain_log_label`
    wraps their tick formatters)."""
    from matplotlib.ticker import FuncFormatter, LogFormatterSciNotation

    def plain(fmt: LogFormatterSciNotation) -> FuncFormatter:
        wrapped = FuncFormatter(lambda x, pos=None: _plain_log_label(fmt(x, pos)))
        wrapped.set_locs = fmt.set_locs  # the minor labels depend on the visible decades
        return wrapped

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_formatter(), LogFormatterSciNotation):
                axis.set_major_formatter(plain(axis.get_major_formatter()))
            if isinstance(axis.get_minor_formatter(), LogFormatterSciNotation):
                axis.set_minor_formatter(plain(axis.get_minor_formatter()))


def _drop_invisible_minor_ticks(fig: Any) -> None:
    """Remove the minor ticks that draw nothing: no tick mark, no grid line, an empty
    label at every location (a log axis over several decades in the whitegrid style has
    some 40 of them, each laid out and rendered for nothing in every pass: layout, PNG,
    PDF). The figure's pixels are unchanged (tested)."""
    from matplotlib.ticker import NullLocator

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_minor_locator(), NullLocator):
                continue
            locs = axis.get_minorticklocs()
            if not len(locs):
                continue
            tick = axis.get_minor_ticks(1)[0]
            shown = (tick.tick1line, tick.tick2line, tick.gridline, tick.label2)
            if any(artist.get_visible() for artist in shown):
                continue
            fmt = axis.get_minor_formatter()
            fmt.set_locs(locs)
            if not any(fmt(x, i) for i, x in enumerate(locs)):
                axis.set_minor_locator(NullLocator())


def _tight_layout(fig: Any) -> None:
    """``fig.tight_layout()``, the log and symlog axes first labelled in plain text and the
    minor ticks that draw nothing removed."""
    _plain_log_labels(fig)
    _drop_invisible_minor_ticks(fig)
    fig.tight_layout()


def _save(fig: Any, outdir: Path, name: str) -> list[Path]:
    """Write ``fig`` as ``outdir/name.<format>`` for every format (all or nothing), close it."""
    from .io import atomic_paths

    paths = [outdir / f"{name}.{fmt}" for fmt in FORMATS]
    # The layout is done (tight_layout, then the flag note's margin): without this, the
    # place-holder engine tight_layout leaves behind makes every savefig draw the figure
    # twice (once to lay it out, once to print it).
    fig.set_layout_engine(None)
    with atomic_paths(paths) as tmps:
        for fmt, tmp in zip(FORMATS, tmps, strict=True):
            fig.savefig(tmp, dpi=120, format=fmt)
    plt.close(fig)
    return paths


def draw_all(
    risk: xr.Dataset,
    th: xr.Dataset,
    outdir: str | Path,
    max_panels: int | None = None,
    reference: dict | None = None,
    x_output: str | None = None,
) -> list[Path]:
    """Draw every figure into ``outdir`` (every format, written atomically); return the
    paths."""
    _backend()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="paper")
    makers = {
        "cdf": lambda: cdf_figure(risk, th, max_panels),
        "convergence": lambda: convergence_figure(risk, reference),
        "closed_forms": lambda: closed_forms_figure(risk, th),
        "diagnostics": lambda: diagnostics_figure(risk, th),
        "means": lambda: means_figure(risk, th, x_output),
        "crossing": lambda: crossing_figure(risk, th),
    }
    from .stages import flag_report

    flags = flag_report(risk)
    paths = []
    for name in FIGURES:
        paths += _save(_flag_note(makers[name](), flags), outdir, name)
    return paths


#: At most this many flagged points are listed under a figure (the run's log has all).
FLAG_NOTE_LINES = 4


def _flag_note(fig: Any, lines: list[str]) -> Any:
    """Under the figure, the points with flagged replicates or not yet asymptotic (the
    lines of :func:`twostage.stages.flag_report`), so that no figure hides them."""
    if not lines:
        return fig
    if len(lines) > FLAG_NOTE_LINES:
        more = len(lines) - FLAG_NOTE_LINES + 1
        lines = lines[: FLAG_NOTE_LINES - 1] + [f"... and {more} more point(s): see risk.log"]
    text = "\n".join(["⚠ " + line.split(", point ", 1)[-1] for line in lines])
    height = fig.get_figheight()
    extra = 0.16 * len(lines) + 0.1
    fig.set_figheight(height + extra)
    fig.subplots_adjust(bottom=(fig.subplotpars.bottom * height + extra) / (height + extra))
    fig.text(0.01, 0.005, text, fontsize=6.5, color="firebrick", va="bottom", ha="left")
    return fig
