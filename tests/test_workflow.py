"""The Snakemake workflow end to end (marked ``workflow``)."""

from __future__ import annotations

import os
import re
import shutil

import pytest
import xarray as xr
from conftest import TINY, TINY_AGGREGATES, load_nc, snakemake, snakemake_jobs

from twostage.plots import FIGURES

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    snakemake(work, "--cores", "2", "--configfile", str(TINY))
    return work


def test_run_writes_figures_and_aggregates(tiny_run):
    figs = sorted(p.name for p in (tiny_run / "results/tiny/figures").iterdir())
    assert figs == sorted(f"{n}.{fmt}" for n in FIGURES for fmt in ("png", "pdf"))
    assert len(FIGURES) == 6
    risk = load_nc(tiny_run / "results/tiny/risk.nc")
    assert risk.sizes == {"point": 2, "replicate": 60}
    assert risk.attrs["stage"] == "risk" and risk.attrs["config_sha256"]
    assert float(risk["orbit_invariance_error"].max()) < 1e-10


def test_every_stage_job_writes_a_log(tiny_run):
    """Each job's log names the file it wrote, its replicates and flagged replicates, and
    the job's wall time; the risk log counts the flagged replicates of the study."""
    logs = sorted((tiny_run / "results/tiny/logs").rglob("*.log"))
    stages = {p.parent.name for p in logs if p.parent.name != "logs"}
    assert {"simulate", "pretrain", "align", "downstream", "theory"} <= stages
    for log in logs:
        text = log.read_text()
        if log.parent.name == "plot" or log.name == "plot.log":
            continue
        assert "wrote " in text and " done in " in text, f"{log}: {text!r}"
    down = next((tiny_run / "results/tiny/logs/downstream").glob("*.log")).read_text()
    assert re.search(r"downstream, point [0-9a-f]{12}, 25 replicates \(\d+\.\.\d+\)", down)
    risk = (tiny_run / "results/tiny/logs/risk.log").read_text()
    assert re.search(r"risk, point several, 60 replicates \(0\.\.59\), \d+ flagged", risk)


def test_results_do_not_depend_on_shards_or_cores(tiny_run, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(TINY.read_text().replace("shard_size: 25", "shard_size: 60"))
    # the aggregates only: they are what is compared (the figures are drawn from them)
    snakemake(tmp_path, *TINY_AGGREGATES, "--cores", "1", "--configfile", str(other))
    a = load_nc(tiny_run / "results/tiny/risk.nc")
    b = load_nc(tmp_path / "results/tiny/risk.nc")
    xr.testing.assert_equal(a, b)
    xr.testing.assert_equal(
        load_nc(tiny_run / "results/tiny/theory.nc"), load_nc(tmp_path / "results/tiny/theory.nc")
    )


def test_all_remakes_a_missing_aggregate_though_its_figures_exist(tiny_run):
    """risk.nc is a target of `all`: after it is lost (e.g. a failed risk job), a plain
    rerun remakes it from the shards (and redraws what depends on it), never 'Nothing to
    be done' beside stale figures."""
    (tiny_run / "results/tiny/risk.nc").unlink()
    res = snakemake(tiny_run, "--cores", "2", "--configfile", str(TINY))
    jobs = snakemake_jobs(res)
    assert "risk" in jobs and not jobs & {"simulate", "pretrain", "align", "downstream"}, jobs
    assert (tiny_run / "results/tiny/risk.nc").is_file()


def test_figures_are_redrawn_from_aggregated_files_copied_elsewhere(tiny_run, tmp_path):
    """Months later, elsewhere: only results/<study>/{risk,theory}.nc, no .snakemake."""
    (tmp_path / "results/tiny").mkdir(parents=True)
    for name in ("risk.nc", "theory.nc"):
        shutil.copy2(tiny_run / "results/tiny" / name, tmp_path / "results/tiny" / name)
    res = snakemake(tmp_path, "figures", "--cores", "1", "--configfile", str(TINY))
    jobs = snakemake_jobs(res)
    assert jobs == {"plot", "figures", "provenance", "errata"}, res.stdout + res.stderr
    assert (tmp_path / "results/tiny/figures/cdf.png").is_file()


# ------------------------------------------------------------------------------ report
#: the command ``make report`` runs (Makefile), plus this test's config
REPORT = ("figures", "--cores", "1", "--report", "results/report.html", "--report-after-run")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _browser():
    """Debian's headless Chromium through selenium, or a skip (a failure when
    TWOSTAGE_REQUIRE_BROWSER=1, which .ci/run sets after installing both)."""
    reason = "the report test needs Debian's chromium and chromium-driver, and selenium"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        selenium_ok = False
    else:
        selenium_ok = True
    if not (CHROMIUM and CHROMEDRIVER and selenium_ok):
        if os.environ.get("TWOSTAGE_REQUIRE_BROWSER") == "1":
            raise RuntimeError(f"TWOSTAGE_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        opts.add_argument(arg)
    # An explicit driver path: selenium never fetches a browser or driver of its own.
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


#: every image of the report decoded in the page: name -> naturalWidth
_LOAD_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Object.entries(results).filter(([, r]) => r.mime_type.startsWith("image/"));
Promise.all(images.map(([path, r]) => new Promise(ok => {
    const img = new Image();
    img.onload = () => ok([path, img.naturalWidth]);
    img.onerror = () => ok([path, 0]);
    img.src = r.data_uri;
}))).then(pairs => done(Object.fromEntries(pairs)));
"""


def _check_report(work, figures, studies=("tiny",)):
    """Open results/report.html in headless Chromium: every figure (by path) is in it and decodes
    (naturalWidth > 0), every caption is there with its study's settings, the app renders;
    a screenshot is saved beside the report."""
    html = work / "results" / "report.html"
    assert html.is_file() and html.stat().st_size > 0
    driver = _browser()
    try:
        driver.set_script_timeout(60)
        driver.get(html.as_uri())
        widths = driver.execute_async_script(_LOAD_IMAGES)
        entries = driver.execute_script(
            "return Object.entries(results).map(([path, r]) => [path, r.caption, r.mime_type]);"
        )
        app = driver.execute_script("return document.getElementById('app').innerText;")
        driver.save_screenshot(str(work / "results" / "report.png"))
    finally:
        driver.quit()
    assert sorted(widths) == sorted(figures), widths
    assert all(w > 0 for w in widths.values()), widths
    for name, caption, _ in entries:
        assert caption.strip(), f"no caption for {name}"
        if name not in ("results/provenance.yaml", "results/errata.csv"):  # the run's
            assert "Monte Carlo replicate" in caption and "Study" in caption, (name, caption)
    assert all(study in app for study in studies), app
    assert (work / "results" / "report.png").stat().st_size > 0


def test_report_opens_in_a_browser_with_every_figure_and_caption(tiny_run):
    snakemake(tiny_run, *REPORT, "--configfile", str(TINY))
    _check_report(tiny_run, [f"results/tiny/figures/{n}.png" for n in FIGURES])
    for name in FIGURES:  # and every figure as PDF too
        assert (tiny_run / f"results/tiny/figures/{name}.pdf").stat().st_size > 0


def test_figures_are_redrawn_after_deleting_all_but_aggregated_files(tiny_run):
    """In place (runs last in this module: it deletes the run's intermediate files)."""
    study = tiny_run / "results/tiny"
    for path in study.iterdir():
        if path.name not in ("risk.nc", "theory.nc"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    res = snakemake(tiny_run, "figures", "--cores", "1", "--configfile", str(TINY))
    assert snakemake_jobs(res) == {"plot", "figures"}, res.stdout + res.stderr
    assert sorted(p.name for p in (study / "figures").iterdir())[0] == "cdf.pdf"
    # and the report from the aggregated files only: no simulation (nor any) rule runs
    (tiny_run / "results/report.html").unlink(missing_ok=True)
    res = snakemake(tiny_run, *REPORT, "--configfile", str(TINY))
    assert snakemake_jobs(res) <= {"figures"}, res.stdout + res.stderr
    _check_report(tiny_run, [f"results/tiny/figures/{n}.png" for n in FIGURES])
