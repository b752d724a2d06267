"""The Snakemake workflow's set-up, apart from the end-to-end runs of test_workflow.py (so
that another test worker takes them): dry run and lint of the default config, the
default profile, a bad config stopping the run before any job, a theory-only sweep."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from conftest import ROOT, TINY, env, load_nc, snakemake, snakemake_jobs

pytestmark = pytest.mark.workflow


def test_dry_run_and_lint_are_clean(tmp_path):
    res = snakemake(tmp_path, "-n", "--configfile", str(ROOT / "config" / "config.yaml"))
    assert "simulate" in res.stdout
    # one theory job per study: the limits of its points fit in one batch of the default
    # target_job_seconds (twostage.costs.theory_batches)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, flags=re.M))
    assert counts["theory"] == counts["risk"] == "4", counts
    lint = snakemake(
        tmp_path, "--lint", "--configfile", str(ROOT / "config" / "config.yaml"), check=False
    )
    text = lint.stdout + lint.stderr
    assert lint.returncode == 0 and "Lints for" not in text, text


def test_every_job_outranks_the_jobs_that_read_its_output(tmp_path):
    """Scheduling: each rule takes its priority from common.smk's PRIORITY, and along every
    edge of the rule graph (the paper study has every rule: shard stages, limits, sweeps,
    figures, errata) the producer's priority is higher than its consumer's, so that among
    the jobs ready at once Snakemake runs the ones with a chain still ahead first and the
    figures last. The provenance record (a quick job nothing waits for) outranks all."""
    import ast

    common = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    literal = re.search(r"^PRIORITY = (\{.*?^\})", common, flags=re.M | re.S)
    assert literal, "no PRIORITY mapping in workflow/rules/common.smk"
    priority = ast.literal_eval(literal.group(1))
    declared = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:    .*\n|\n)*)", smk.read_text(), re.M):
            declared[name] = re.search(r"^    priority: PRIORITY\[\"(\w+)\"\]", body, re.M)
    graph = snakemake(
        tmp_path, "--rulegraph", "--configfile", str(ROOT / "config" / "paper.yaml")
    ).stdout
    names = dict(re.findall(r"^\s*(\d+)\[label = \"(\w+)\"", graph, flags=re.M))
    edges = [(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", graph, re.M)]
    rules = set(names.values()) - {"all"}
    assert {"simulate", "theory", "sweep", "plot", "plot_sweep", "errata"} <= rules, rules
    for rule in rules:
        found = declared.get(rule)
        assert found and found.group(1) == rule, f"rule {rule} has no priority: PRIORITY[{rule!r}]"
    assert set(priority) == rules, sorted(set(priority) ^ rules)
    for producer, consumer in edges:
        if consumer != "all":
            assert priority[producer] > priority[consumer], (producer, consumer, priority)
    assert priority["provenance"] == max(priority.values())


def test_default_profile_is_applied_from_any_working_directory(tmp_path):
    """Snakemake finds profiles/default beside the Snakefile: rerun-incomplete, all cores
    and one thread per job apply to a plain `snakemake` run, from the project root or
    (with -s) from elsewhere."""
    exe = shutil.which("snakemake", path=env()["PATH"])
    for cwd in (ROOT, tmp_path):
        res = subprocess.run(
            [exe, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "-n"],
            capture_output=True,
            text=True,
            env=env(),
            cwd=cwd,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        text = res.stdout + res.stderr
        assert "Using workflow specific profile" in text and "profiles/default" in text, text


def test_bad_config_fails_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("replicates: 60", "replicates: -1"))
    res = snakemake(tmp_path, "--cores", "1", "--configfile", str(bad), check=False)
    assert res.returncode != 0
    assert "studies.tiny.replicates" in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_theory_only_sweep_with_fit_and_reference(tmp_path):
    """replicates: 0 makes a study a sweep of the limit: no simulation jobs, one sweep.nc
    with the fit and its R^2, and a figure with the reference values beside ours."""
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(
        "studies:\n"
        "  ks:\n"
        "    case: gmm\n"
        "    replicates: 0\n"
        "    fit: quadratic\n"
        "    population: {d: 6, theta_norm: 1.0, population_size: 20000, fisher_size: 20000}\n"
        "    grid: {K: [2, 3, 4, 5]}\n"
        "    reference: {K: [2, 4], mean_L2: [0.009, 0.031]}\n"
    )
    res = snakemake(tmp_path, "--cores", "2", "--configfile", str(cfg))
    jobs = snakemake_jobs(res)
    assert jobs == {"theory", "sweep", "plot_sweep", "provenance", "errata", "all"}, jobs
    sw = load_nc(tmp_path / "results/ks/sweep.nc")
    assert sw.attrs["swept"] == "K" and list(sw["x"].values) == [2, 3, 4, 5]
    assert 0.9 < float(sw.attrs["fit_r2"]) <= 1.0
    assert (tmp_path / "results/ks/figures/sweep.png").is_file()
