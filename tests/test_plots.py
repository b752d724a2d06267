"""Figures for a grid over any parameter: one series per combination of the other swept
parameters, each point with its own limit (a two-parameter grid, n x d)."""

from __future__ import annotations

import numpy as np
import pytest

from twostage import plots, run_study

STUDY = {
    "case": "factor",
    "replicates": 30,
    "seed": 5,
    "sampling": "sufficient",
    "alpha": 2.0,
    "population": {"k": 2, "factor_strengths": [3.0, 1.0]},
    "grid": {"n": [40, 200], "d": [5, 7]},
    "ks_bootstrap": 5,
}


@pytest.fixture(scope="module")
def study():
    return run_study(STUDY, "grid2")


def _xy(line):
    return tuple(np.asarray(line.get_xdata(), float)), tuple(np.asarray(line.get_ydata(), float))


def test_layout_names_the_swept_parameters(study):
    risk, _ = study
    x_name, x, labels = plots.layout(risk, "n")
    assert x_name == "n" and sorted(set(labels)) == ["d=5", "d=7"]
    x_name, x, labels = plots.layout(risk, "m")
    assert x_name == "d" and sorted(set(labels)) == ["n=200", "n=40"]
    assert sorted(x) == [5, 5, 7, 7]


def test_two_parameter_grid_gives_one_series_per_other_value(study):
    risk, th = study
    plots._backend()
    fig = plots.convergence_figure(risk)
    ax = fig.axes[0]
    # one errorbar series per d, each along n = (40, 200); never a line joining two d's
    series = [c.lines[0] for c in ax.containers]
    assert len(series) == 2
    for line in series:
        assert _xy(line)[0] == (40.0, 200.0)
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"d=5", "d=7"}
    plots.plt.close(fig)

    fig = plots.means_figure(risk, th)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "d"
    # each series' limit line passes through its own points' E||L(Z)||^2 (one per point)
    limit_lines = [line for line in ax.lines if line.get_linestyle() == "--"]
    want = set()
    for label in ("n=40", "n=200"):
        _, x, labels = plots.layout(risk, "m")
        sel = np.flatnonzero(labels == label)
        sel = sel[np.argsort(x[sel])]
        want.add((tuple(x[sel]), tuple(th["mean_L2"].values[sel])))
    assert {_xy(line) for line in limit_lines} == want
    assert all(len(set(y)) == 2 for _, y in want)  # d changes the limit: one per point
    plots.plt.close(fig)

    fig = plots.cdf_figure(risk, th, max_panels=2)
    assert len(fig.axes) == 2 * 3  # a row per d
    titles = [ax.get_title() for ax in fig.axes]
    assert any("d=5" in t for t in titles) and any("d=7" in t for t in titles)
    plots.plt.close(fig)


def test_every_figure_of_a_two_parameter_grid_is_drawn(study, tmp_path):
    risk, th = study
    paths = plots.draw_all(risk, th, tmp_path)
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{fmt}" for n in plots.FIGURES for fmt in plots.FORMATS
    )
    assert all(p.stat().st_size > 0 for p in paths)


def test_means_against_a_scalar_output_of_the_limit():
    """A Monte Carlo grid over factor_strengths drawn against the limit's D (sweep_x)."""
    risk, th = run_study(
        {
            "case": "factor",
            "replicates": 20,
            "sampling": "sufficient",
            "n": 2000,
            "alpha": 2.0,
            "sweep_x": "D",
            "population": {"d": 6, "k": 2, "loadings": "canonical"},
            "grid": {"factor_strengths": [[1.0, 0.5], [4.0, 2.0], [16.0, 8.0]]},
        },
        "xd",
    )
    x_name, x, labels = plots.layout(risk, "m", "D", th)
    assert x_name == "D" and sorted(x) == [1.0, 2.0, 4.0] and set(labels) == {""}
    fig = plots.means_figure(risk, th, "D")
    assert fig.axes[0].get_xlabel() == "D"
    plots.plt.close(fig)


@pytest.mark.parametrize(
    "mathtext, plain",
    [
        (r"$\mathdefault{10^{3}}$", "10³"),
        (r"$\mathdefault{2\times10^{-1}}$", "2×10⁻¹"),
        (r"$\mathdefault{-10^{-16}}$", "−10⁻¹⁶"),
        (r"$\mathdefault{0}$", "0"),
        ("", ""),
        ("0.5", "0.5"),
    ],
)
def test_log_tick_labels_are_plain_text(mathtext, plain):
    assert plots._plain_log_label(mathtext) == plain


def _log_axes_figure():
    """Three panels: log x over four decades (unlabelled minor ticks), log x within one
    decade (labelled minor ticks), linear."""
    fig, axes = plots.plt.subplots(1, 3, figsize=(9, 3))
    axes[0].plot([1e2, 1e3, 1e4, 1e5], [0.16, 0.03, 0.02, 0.025], marker="o")
    axes[0].set_xscale("log")
    axes[1].plot([300, 900], [1.0, 2.0], marker="o")
    axes[1].set_xscale("log")
    axes[2].plot([0, 1], [1, 0])
    return fig, axes


def test_minor_ticks_that_draw_nothing_are_dropped_and_the_pixels_do_not_change():
    """In the figures' style (no tick marks, major grid only) the unlabelled minor ticks of
    a wide log axis are dropped; a narrow log axis keeps its labelled ones; the image is
    the same, pixel for pixel, as with every minor tick kept. Where tick marks are drawn
    (matplotlib's default style) no minor tick is dropped."""
    from matplotlib.ticker import NullLocator

    plots._backend()
    images = []
    with plots.sns.axes_style("whitegrid"):
        for prune in (True, False):
            fig, axes = _log_axes_figure()
            if prune:
                plots._tight_layout(fig)
                assert isinstance(axes[0].xaxis.get_minor_locator(), NullLocator)
                assert not isinstance(axes[1].xaxis.get_minor_locator(), NullLocator)
                assert any(t.get_text() for t in axes[1].get_xticklabels(minor=True))
            else:
                plots._plain_log_labels(fig)
                fig.tight_layout()
                assert len(axes[0].xaxis.get_minorticklocs()) > 20
            fig.canvas.draw()
            images.append(np.asarray(fig.canvas.buffer_rgba()).copy())
            plots.plt.close(fig)
    np.testing.assert_array_equal(images[0], images[1])
    with plots.plt.style.context("default"):
        fig, axes = _log_axes_figure()
        plots._tight_layout(fig)
        assert not isinstance(axes[0].xaxis.get_minor_locator(), NullLocator)
        plots.plt.close(fig)


def test_log_and_symlog_axes_are_laid_out_without_mathtext():
    """After the layout no tick label of a log or symlog axis is mathtext, and each is
    matplotlib's own label rewritten (the same ticks and exponents)."""
    plots._backend()
    fig, (a, b) = plots.plt.subplots(1, 2)
    a.plot([1e2, 1e5], [3e-3, 2e1])
    a.set_xscale("log")
    a.set_yscale("log")
    b.plot([0, 1], [0, 1e-12])
    b.set_yscale("symlog", linthresh=1e-16)
    fig.canvas.draw()
    before = [[t.get_text() for t in ax.get_yticklabels()] for ax in (a, b)]
    plots._tight_layout(fig)
    fig.canvas.draw()
    after = [[t.get_text() for t in ax.get_yticklabels()] for ax in (a, b)]
    assert any("$" in label for labels in before for label in labels)
    assert after == [[plots._plain_log_label(label) for label in labels] for labels in before]
    assert not any("$" in label for labels in after for label in labels)
    assert "10⁵" in [t.get_text() for t in a.get_xticklabels()]
    plots.plt.close(fig)
