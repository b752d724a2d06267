#!/usr/bin/env python
"""Speed and memory of every case study, in one run (``make bench``).

For each case at fixed points and several pre-training sizes m it measures replicates per
second (one BLAS thread) of:

(a) ``naive``: the per-replicate loop a user would write on raw samples (scikit-learn
    PCA / GaussianMixture / LinearRegression, scipy L-BFGS for the spectral loss);
(b) ``raw``: our stages (simulate, pretrain, align, downstream, in memory, no file I/O)
    on raw samples;
(c) ``exact``: the same on exact draws of the sufficient statistics, where the case has
    them (factor; the downstream design of the linear cases);
(d) ``floor``: the batched linear algebra alone (the draws from one generator, the
    products, decompositions and solves the estimator and the risk cannot avoid);
(e) ``required`` (factor): the floor plus only what the project's contract adds to it
    (each replicate's own random stream, the aligned twin's risk, the baseline's solve);
    ``required / floor`` bounds the c/d that any implementation of the contract can reach.

It writes ``<out>/bench.csv`` and ``<out>/bench.png`` (seaborn, log-log, replicates/s
against m), prints the ratios b/a, c/a and c/d (or b/d where there is no exact path), and,
unless ``--no-workflow``, runs the default study (``--quick``: the tiny test study) through
Snakemake in a temporary folder and prints the peak RSS per stage and the Snakemake
overhead (the sum of the rules' ``benchmark:`` times against the wall time). It also
times each stage job as a process on a tiny shard (start-up: interpreter, imports, file
input/output), writing ``<out>/startup.csv``.

    python benchmarks/run.py [--quick] [--out benchmarks/results] [--no-workflow]

Timings are ratios measured in one run: these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
CASES = ["factor", "spectral", "gmm", "multitask"]


# ---------------------------------------------------------------------------- helpers
def rate(fn: Callable[[], object], replicates: int, repeat: int = 2) -> float:
    """Replicates per second of ``fn`` (which handles ``replicates`` replicates): the best
    of ``repeat`` runs (the least disturbed by other load)."""
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return replicates / best


def point(case: str, params: dict, replicates: int, sampling: str | None = None):
    from twostage.api import study_spec
    from twostage.config import expand_study

    spec = study_spec(case, params, replicates=replicates, sampling=sampling, seed=1)
    (p,) = expand_study("bench", spec)
    return p


def pipeline(p) -> Callable[[], object]:
    """Our stages on one point, in memory."""
    from twostage import stages

    def run():
        sim = stages.simulate(p, 0, p.replicates)
        return stages.downstream(stages.align(stages.pretrain(sim)), sim)

    return run


# ---------------------------------------------------------------------------- factor
FACTOR = {"d": 50, "k": 5, "factor_strengths": [5.0, 4.0, 3.0, 2.0, 1.0]}


def factor_naive(m: int, n: int, reps: int) -> Callable[[], object]:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LinearRegression

    d, k = FACTOR["d"], FACTOR["k"]
    rng = np.random.default_rng(0)
    a = np.linalg.qr(rng.standard_normal((d, k)))[0] * np.sqrt(FACTOR["factor_strengths"])
    beta = np.ones(k) / np.sqrt(k)

    def run():
        for _ in range(reps):
            x = rng.standard_normal((m, k)) @ a.T + rng.standard_normal((m, d))
            comp = PCA(n_components=k).fit(x).components_
            h = rng.standard_normal((n, k))
            xd = h @ a.T + rng.standard_normal((n, d))
            y = h @ beta + np.sqrt(0.5) * rng.standard_normal(n)
            LinearRegression(fit_intercept=False).fit(xd @ comp.T, y)

    return run


def _factor_chain(m: int, n: int, reps: int, draw: Callable, contract: bool) -> Callable:
    """The factor model's batched linear algebra on ``reps`` replicates: two Bartlett draws
    of W_d(Sigma_x, .) (Sigma_x = A A^T + I with the model's factor strengths, so the
    eigendecomposition sees the model's spectrum; ``draw(size, stage, d, lower)`` gives the
    chi-squares (reps, d) and the normals below the diagonal (reps, lower)), the products, a
    batched eigh and the k x k solve of the head; with ``contract``, also the aligned twin's
    risk (a k x k Procrustes SVD, then the same k x k solve) and the downstream-only
    baseline (one batched d x d solve)."""
    d, k = FACTOR["d"], FACTOR["k"]
    rows, cols = np.tril_indices(d, -1)
    a = np.linalg.qr(np.random.default_rng(0).standard_normal((d, k)))[0]
    a_star = a * np.sqrt(FACTOR["factor_strengths"])
    sigma_x = a_star @ a_star.T + np.eye(d)
    chol = np.linalg.cholesky(sigma_x)

    def wishart(size, stage):
        chi, normal = draw(size, stage, d, len(rows))
        b = np.zeros((reps, d, d))
        b[:, np.arange(d), np.arange(d)] = np.sqrt(chi)
        b[:, rows, cols] = normal
        b = chol @ b
        return b @ np.swapaxes(b, -1, -2) / size

    def head(f, s_n):
        sig = f @ s_n @ np.swapaxes(f, -1, -2)
        return np.linalg.solve(sig, f @ s_n[..., :1])

    def run():
        s_m, s_n = wishart(m, "pretrain_data"), wishart(n, "downstream_data")
        _, v = np.linalg.eigh(s_m)
        f = np.swapaxes(v[..., -k:], -1, -2)
        head(f, s_n)
        if contract:
            u, _, vt = np.linalg.svd(f @ a_star)
            head(np.swapaxes(u @ vt, -1, -2) @ f, s_n)
            np.einsum("rii->r", np.linalg.solve(s_n, np.broadcast_to(sigma_x, s_n.shape)))

    return run


def factor_floor(m: int, n: int, reps: int) -> Callable[[], object]:
    """:func:`_factor_chain` with every draw from one generator, batched: the linear algebra
    the estimator and the head cannot avoid."""
    rng = np.random.default_rng(1)

    def draw(size, stage, d, lower):
        return rng.chisquare(size - np.arange(d), (reps, d)), rng.standard_normal((reps, lower))

    return _factor_chain(m, n, reps, draw, contract=False)


def factor_required(m: int, n: int, reps: int) -> Callable[[], object]:
    """The floor plus only the work the project's contract adds to it: each replicate
    draws from its own stream (a generator per replicate and stage, keyed as
    :func:`twostage.seeding.stream` keys them: the price of results independent of shards
    and cores), the aligned twin's risk and the downstream-only baseline
    (:func:`_factor_chain` with ``contract``). ``required / floor`` (in replicates per
    second) is the best c/d any implementation of the contract could reach."""
    from twostage.seeding import stream

    def draw(size, stage, d, lower):
        chi, normal = np.empty((reps, d)), np.empty((reps, lower))
        for i in range(reps):
            g = stream(stage, i, range(8), 1)
            chi[i] = g.chisquare(size - np.arange(d))
            normal[i] = g.standard_normal(lower)
        return chi, normal

    return _factor_chain(m, n, reps, draw, contract=True)


def bench_factor(ms: list[int], reps: int, naive_reps: int) -> list[dict]:
    rows, n = [], 500
    for m in ms:
        params = {**FACTOR, "n": n, "alpha": m / n}
        rows.append(row("factor", m, "naive", rate(factor_naive(m, n, naive_reps), naive_reps, 1)))
        raw_reps = max(2, min(reps, int(2e7 // (m * FACTOR["d"]))))
        rows.append(
            row(
                "factor",
                m,
                "raw",
                rate(pipeline(point("factor", params, raw_reps, "raw")), raw_reps),
            )
        )
        rows.append(
            row(
                "factor",
                m,
                "exact",
                rate(pipeline(point("factor", params, reps, "sufficient")), reps),
            )
        )
        rows.append(row("factor", m, "floor", rate(factor_floor(m, n, reps), reps)))
        rows.append(row("factor", m, "required", rate(factor_required(m, n, reps), reps)))
    return rows


# ---------------------------------------------------------------------------- spectral
def spectral_naive(d: int, m: int, reps: int) -> Callable[[], object]:
    from scipy.optimize import minimize

    k = 3
    c = 1.0 / np.arange(1, d + 1)
    rng = np.random.default_rng(0)

    def run():
        for _ in range(reps):
            x = rng.standard_normal((m, d))
            xp = x * c + rng.standard_normal((m, d)) * np.sqrt(1 - c**2)
            xm = rng.standard_normal((m, d))

            def loss(flat, x=x, xp=xp, xm=xm):
                a = flat.reshape(k, d)
                ax, axp, axm = x @ a.T, xp @ a.T, xm @ a.T
                inner = np.sum(ax * axm, axis=1)
                value = -2 * np.mean(np.sum(ax * axp, axis=1)) + np.mean(inner**2)
                grad = (
                    -2 * (axp.T @ x + ax.T @ xp) / m
                    + 2 * ((inner[:, None] * axm).T @ x + (inner[:, None] * ax).T @ xm) / m
                )
                return value, grad.ravel()

            minimize(loss, rng.standard_normal(k * d) * 0.3, jac=True, method="L-BFGS-B")

    return run


def spectral_floor(d: int, m: int, reps: int) -> Callable[[], object]:
    """The draws (one generator: anchors and negatives, m x d each, in cache-sized blocks
    drawn into the same buffers) and the one GEMM per block that T_hat needs: the
    cross-product of the d(d+1)/2 products of each."""
    from twostage.cases.spectral.data import _products  # one broadcast per row, as ours

    rng = np.random.default_rng(0)
    block = 4096
    z, q = np.empty((2, d, block)), np.empty((2, d * (d + 1) // 2, block))

    def run():
        for _ in range(reps):
            for start in range(0, m, block):
                rows = min(block, m - start)
                drawn = [
                    rng.standard_normal(out=z[j])
                    if rows == block
                    else rng.standard_normal((d, rows))
                    for j in (0, 1)
                ]
                _products(drawn[0], q[0]) @ _products(drawn[1], q[1]).T
                drawn[0] @ drawn[0].T  # the anchors' Gram matrix (for S+)

    return run


def bench_spectral(ds: list[int], ms: list[int], reps: int, naive_reps: int) -> list[dict]:
    rows = []
    for d in ds:
        for m in ms:
            params = {"d": d, "k": 3, "n": 1000, "alpha": m / 1000}
            tag = f"spectral d={d}"
            rows.append(row(tag, m, "naive", rate(spectral_naive(d, m, naive_reps), naive_reps, 1)))
            r = max(2, min(reps, int(2e7 // (m * d * d))))
            rows.append(row(tag, m, "raw", rate(pipeline(point("spectral", params, r, "raw")), r)))
            rows.append(
                row(tag, m, "exact", rate(pipeline(point("spectral", params, r, "sufficient")), r))
            )
            rows.append(row(tag, m, "floor", rate(spectral_floor(d, m, r), r)))
    return rows


# ---------------------------------------------------------------------------- mixture
GMM = {"K": 4, "d": 20, "separation": 2.0, "population_size": 20000, "fisher_size": 20000}


def gmm_naive(m: int, reps: int) -> Callable[[], object]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    k, d = GMM["K"], GMM["d"]
    centers = GMM["separation"] * np.eye(k, d)
    rng = np.random.default_rng(0)

    def run():
        for _ in range(reps):
            x = rng.standard_normal((m, d)) + centers[rng.integers(0, k, m)]
            init = centers + 0.1 * rng.standard_normal((k, d))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                GaussianMixture(k, covariance_type="spherical", means_init=init, tol=1e-10).fit(x)

    return run


def gmm_ours(p) -> Callable[[], object]:
    """Our pre-training stage (sampling and EM from the keyed streams)."""
    from twostage import stages

    sim = stages.simulate(p, 0, p.replicates)
    return lambda: stages.pretrain(sim)


def gmm_floor(m: int, reps: int, iterations: int = 12) -> Callable[[], object]:
    """The draws and, per EM iteration, the two GEMMs of an E- and M-step."""
    k, d = GMM["K"], GMM["d"]
    rng = np.random.default_rng(0)
    u = rng.standard_normal((k, d))

    def run():
        for _ in range(reps):
            x = rng.standard_normal((m, d))
            for _ in range(iterations):
                w = x @ u.T
                w.T @ x

    return run


def bench_gmm(ms: list[int], reps: int, naive_reps: int) -> list[dict]:
    rows = []
    for m in ms:
        params = {**GMM, "n": 1000, "alpha": m / 1000}
        r = max(2, min(reps, int(4e6 // m)))
        rows.append(row("gmm (EM)", m, "naive", rate(gmm_naive(m, naive_reps), naive_reps, 1)))
        rows.append(row("gmm (EM)", m, "raw", rate(gmm_ours(point("gmm", params, r, "raw")), r)))
        rows.append(row("gmm (EM)", m, "floor", rate(gmm_floor(m, r), r)))
    return rows


# ---------------------------------------------------------------------------- multitask
def multitask_naive(m: int, reps: int) -> Callable[[], object]:
    from sklearn.linear_model import LinearRegression

    d, k, t = 10, 3, 6
    rng = np.random.default_rng(0)
    b = np.linalg.qr(rng.standard_normal((d, k)))[0]
    w = b @ rng.standard_normal((k, t))

    def run():
        for _ in range(reps):
            task = rng.integers(0, t, m)
            x = rng.standard_normal((m, d))
            y = np.sum(x * w.T[task], axis=1) + rng.standard_normal(m)
            heads = [
                LinearRegression(fit_intercept=False).fit(x[task == j], y[task == j]).coef_
                for j in range(t)
            ]
            np.linalg.svd(np.array(heads).T)

    return run


def multitask_floor(m: int, reps: int) -> Callable[[], object]:
    d = 10
    rng = np.random.default_rng(0)

    def run():
        for _ in range(reps):
            x = rng.standard_normal((m, d + 1))
            (x * x[:, -1:] ** 2).T @ x
            x.T @ x

    return run


def bench_multitask(ms: list[int], reps: int, naive_reps: int) -> list[dict]:
    rows = []
    for m in ms:
        params = {
            "d": 10,
            "k": 3,
            "n_tasks": 6,
            "task_diversity": 0.5,
            "method": "erm",
            "n": 1000,
            "alpha": m / 1000,
        }
        r = max(2, min(reps, int(2e7 // (m * 10))))
        rows.append(
            row("multitask (erm)", m, "naive", rate(multitask_naive(m, naive_reps), naive_reps, 1))
        )
        rows.append(
            row(
                "multitask (erm)", m, "raw", rate(pipeline(point("multitask", params, r, "raw")), r)
            )
        )
        rows.append(
            row(
                "multitask (erm)",
                m,
                "exact",
                rate(pipeline(point("multitask", params, r, "sufficient")), r),
            )
        )
        rows.append(row("multitask (erm)", m, "floor", rate(multitask_floor(m, r), r)))
    return rows


# ---------------------------------------------------------------------------- report
def row(case: str, m: int, path: str, per_s: float) -> dict:
    print(f"  {case:>16}  m={m:>8}  {path:>6}: {per_s:10.2f} replicates/s", flush=True)
    return {"case": case, "m": m, "path": path, "replicates_per_s": per_s}


def ratios(rows: list[dict]) -> list[str]:
    lines = []
    table: dict[tuple, dict] = {}
    for r in rows:
        table.setdefault((r["case"], r["m"]), {})[r["path"]] = r["replicates_per_s"]
    for (case, m), paths in table.items():
        parts = []
        for num, den in (
            ("raw", "naive"),
            ("exact", "naive"),
            ("exact", "floor"),
            ("raw", "floor"),
            ("exact", "required"),
            ("required", "floor"),
        ):
            if (
                num in paths
                and den in paths
                and not (num == "raw" and den == "floor" and "exact" in paths)
            ):
                parts.append(f"{num}/{den} = {paths[num] / paths[den]:.2f}")
        lines.append(f"{case:>16}  m={m:>8}  " + ", ".join(parts))
    return lines


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    df = pd.DataFrame(rows)
    grid = sns.relplot(
        data=df,
        x="m",
        y="replicates_per_s",
        hue="path",
        col="case",
        col_wrap=3,
        kind="line",
        marker="o",
        facet_kws={"sharey": False},
        height=3.2,
    )
    grid.set(xscale="log", yscale="log")
    grid.set_axis_labels("m (pre-training samples)", "replicates / s (1 thread)")
    grid.figure.savefig(path, dpi=110)
    plt.close(grid.figure)


STARTUP_STAGES = ("simulate", "pretrain", "align", "downstream", "theory")


def startup(cases: list[str], repeat: int) -> list[dict]:
    """Wall time of each per-shard and per-point stage job as a process (interpreter,
    imports, reading and writing its files, and the science) on a case's tiny point and
    25-replicate shard, the median of ``repeat`` runs, and of ``pretrain.py --help``."""
    from twostage.api import study_spec
    from twostage.cases import get_case
    from twostage.config import expand_study

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def seconds(args: list[str], cwd: Path) -> float:
        t = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=cwd, check=True, env=env, capture_output=True)
        return time.perf_counter() - t

    scripts = ROOT / "scripts"
    out = [
        {
            "case": "-",
            "stage": "pretrain --help",
            "seconds": float(
                np.median(
                    [seconds([str(scripts / "pretrain.py"), "--help"], ROOT) for _ in range(repeat)]
                )
            ),
        }
    ]
    for case in cases:
        spec = study_spec(case, get_case(case).tiny_params(), replicates=25, seed=1)
        (p,) = expand_study("bench", spec)
        args = {
            "simulate": ["--point", p.job_json(), "--replicates", "0:25", "--out", "sim.nc"],
            "pretrain": ["--in", "sim.nc", "--out", "pre.nc"],
            "align": ["--in", "pre.nc", "--out", "al.nc"],
            "downstream": ["--align", "al.nc", "--simulate", "sim.nc", "--out", "down.nc"],
            "theory": ["--point", p.job_json(), "--out", "theory.nc"],
        }
        times: dict[str, list[float]] = {s: [] for s in STARTUP_STAGES}
        with tempfile.TemporaryDirectory(prefix="twostage-startup-") as work:
            for _ in range(repeat):
                for stage in STARTUP_STAGES:
                    times[stage].append(
                        seconds([str(scripts / f"{stage}.py"), *args[stage]], Path(work))
                    )
        out += [
            {"case": case, "stage": s, "seconds": float(np.median(v))} for s, v in times.items()
        ]
    return out


def workflow(quick: bool) -> list[str]:
    """Run a study through Snakemake in a temporary folder; peak RSS per rule and the
    Snakemake overhead from the rules' benchmark files."""
    config = ROOT / ("tests/configs/tiny.yaml" if quick else "config/config.yaml")
    work = Path(tempfile.mkdtemp(prefix="twostage-bench-"))
    exe = shutil.which(
        "snakemake", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t = time.perf_counter()
    subprocess.run(
        [
            exe,
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(work),
            "--cores",
            "all",
            "--configfile",
            str(config),
            "--quiet",
            "all",
        ],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    wall = time.perf_counter() - t
    per_rule: dict[str, list[tuple[float, float]]] = {}
    for tsv in work.glob("results/*/benchmarks/**/*.tsv"):
        rule = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        with open(tsv) as fh:
            rec = list(csv.DictReader(fh, delimiter="\t"))[-1]
        per_rule.setdefault(rule, []).append((float(rec["s"]), float(rec["max_rss"])))
    shutil.rmtree(work, ignore_errors=True)
    total = sum(s for recs in per_rule.values() for s, _ in recs)
    jobs = sum(len(v) for v in per_rule.values())
    lines = [
        f"study {config.relative_to(ROOT)}: Snakemake wall {wall:.1f} s; sum of job times "
        f"{total:.1f} s over {jobs} jobs (cores: {os.cpu_count()})"
    ]
    for rule, recs in sorted(per_rule.items()):
        seconds, peak = sum(s for s, _ in recs), max(r for _, r in recs)
        lines.append(
            f"  {rule:>12}: {len(recs):3d} jobs, {seconds:7.1f} s, peak RSS {peak:7.1f} MB"
        )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="the smallest m of each case only, few replicates (seconds), for the tests",
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--no-workflow", action="store_true", help="skip the Snakemake study")
    p.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        default=CASES,
        metavar="CASE",
        help=f"the cases to measure (default: all of {', '.join(CASES)})",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with threadpool_limits(limits=1):
        quick = {
            "factor": lambda: bench_factor([1000], reps=50, naive_reps=2),
            "spectral": lambda: bench_spectral([6], [1000], reps=10, naive_reps=1),
            "gmm": lambda: bench_gmm([2000], reps=4, naive_reps=1),
            "multitask": lambda: bench_multitask([1000], reps=20, naive_reps=2),
        }
        full = {
            "factor": lambda: bench_factor([1000, 10000, 100000, 1000000], reps=1000, naive_reps=3),
            "spectral": lambda: bench_spectral(
                [6, 8, 10], [1000, 10000, 100000], reps=100, naive_reps=2
            ),
            "gmm": lambda: bench_gmm([2000, 20000, 200000], reps=20, naive_reps=2),
            "multitask": lambda: bench_multitask([1000, 10000, 100000], reps=200, naive_reps=3),
        }
        for case in args.cases:
            rows += (quick if args.quick else full)[case]()
    with open(args.out / "bench.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "m", "path", "replicates_per_s"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "bench.png")
    print("\nratios (b = raw, c = exact, a = naive loop, d = floor, required = d + the contract):")
    print("\n".join(ratios(rows)))
    jobs = startup(args.cases[:1] if args.quick else args.cases, repeat=1 if args.quick else 3)
    with open(args.out / "startup.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case", "stage", "seconds"])
        writer.writeheader()
        writer.writerows(jobs)
    print("\nstage jobs on a tiny 25-replicate shard, as processes (median wall s):")
    for job in jobs:
        print(f"  {job['case']:>10} {job['stage']:>16}: {job['seconds']:.2f} s")
    if not args.no_workflow:
        print()
        print("\n".join(workflow(args.quick)))
    print(
        f"\nwrote {args.out / 'bench.csv'}, {args.out / 'startup.csv'} and {args.out / 'bench.png'}"
    )


if __name__ == "__main__":
    main()
