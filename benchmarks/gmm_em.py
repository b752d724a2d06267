#!/usr/bin/env python
"""EM of the Gaussian-mixture case against a loop of scikit-learn ``GaussianMixture`` fits.

Setting: K = 4 components, d = 20, equal weights 1/K and identity covariances known (only
the means are estimated), centres U* = 2 I_(K,d), initialisation U* + 0.1 N(0, I) (the
case's ``perturbed_truth``), ``em_tol`` = 1e-10, ``em_max_iter`` = 1000; m = 2e3, 2e4 and
2e5 samples per replicate, one BLAS thread.

Three fits of the same data from the same initialisation:

* ours: :func:`twostage.cases.gmm.em.em`, all replicates in one call;
* constrained scikit-learn: ``GaussianMixture(covariance_type='spherical')`` with the
  weights and variances put back to 1/K and 1 after each M-step (our model), one fit per
  replicate;
* plain scikit-learn: the same spherical model with the weights and variances estimated
  too (another estimator, K + K - 1 more parameters), started from the same point.

Matching the stopping rules. Ours stops after the E-step at U_t when
``|L_t - L_{t-1}| <= tol |L_t|`` and returns U_t after t M-steps; scikit-learn runs E-step,
M-step, then stops when ``|L_{n-1} - L_{n-2}| < tol_abs`` (L_{n-1} from the E-step of
that iteration), returning U_n after n M-steps, and does one more E-step for the labels.
With ``tol_abs = tol |L|`` (L our final mean log-likelihood of the replicate; |L| changes
by far less than 1e-6 relative over the last iterations, so this is our relative rule) it
stops with n = t + 1, one M-step (and one E-step) more than ours; its ``max_iter`` is
therefore ``em_max_iter + 1``. Its ``init_params`` is 'random_from_data': every parameter is given
(``means_init``, ``weights_init``, ``precisions_init``), so the responsibilities of its
initialisation are discarded and this cheapest choice does not change the fit (the default
'kmeans' would add a k-means run whose result is discarded too). The estimates are
compared at the same number of M-steps (ours continued by the extra M-step scikit-learn
takes, outside the timing) and as returned (one M-step apart, about 1e-5 at this
tolerance: the EM's own step size).

Timings interleave the three methods in each round and report the median over rounds of
ms per replicate; the ratios are medians of the per-round ratios (the machine is shared,
so only ratios measured in the same run are meaningful).

    python benchmarks/gmm_em.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_limits

from twostage.cases.gmm.em import em
from twostage.cases.gmm.population import mixture_sample
from twostage.cases.gmm.sklearn_reference import FixedWeightsAndVariance

K, D, SEPARATION, INIT_SCALE, TOL, MAX_ITER = 4, 20, 2.0, 0.1, 1e-10, 1000


def sklearn_loop(cls, x: np.ndarray, init: np.ndarray, tol_abs: np.ndarray) -> list:
    """One scikit-learn fit per replicate, from ``init`` with the known weights and
    variances as starting values."""
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for xi, ui, ti in zip(x, init, tol_abs, strict=True):
            fit = cls(
                n_components=K,
                covariance_type="spherical",
                means_init=ui,
                weights_init=np.full(K, 1.0 / K),
                precisions_init=np.ones(K),
                init_params="random_from_data",
                tol=float(ti),
                max_iter=MAX_ITER + 1,
                random_state=0,
            )
            fits.append(fit.fit(xi))
    return fits


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def run(m: int, n_rep: int, rounds: int) -> dict:
    """Timings and estimate differences at one sample size."""
    centers = SEPARATION * np.eye(K, D)
    x = np.stack([mixture_sample(centers, m, np.random.default_rng([m, i])) for i in range(n_rep)])
    init = centers + INIT_SCALE * np.random.default_rng([m, n_rep]).standard_normal((n_rep, K, D))
    times = {"ours": [], "constrained": [], "plain": []}
    for _ in range(rounds):
        ours, t = timed(em, x, init, TOL, MAX_ITER)
        times["ours"].append(t)
        tol_abs = TOL * np.abs(ours["loglik"])
        fixed, t = timed(sklearn_loop, FixedWeightsAndVariance, x, init, tol_abs)
        times["constrained"].append(t)
        plain, t = timed(sklearn_loop, SkGaussianMixture, x, init, tol_abs)
        times["plain"].append(t)
    # ours continued by the M-steps scikit-learn took beyond ours (one, by the rules above)
    same_steps = np.empty_like(ours["centers"])
    for i, fit in enumerate(fixed):
        extra = int(fit.n_iter_) - int(ours["n_iter"][i])
        if extra < 0:
            raise RuntimeError(f"scikit-learn stopped before ours (replicate {i})")
        step = em(x[i : i + 1], ours["centers"][i : i + 1], 0.0, extra)
        same_steps[i] = step["centers"][0]
    sk_means = np.array([f.means_ for f in fixed])
    t = {key: np.array(val) for key, val in times.items()}
    return {
        "m": m,
        "R": n_rep,
        "ms": {key: 1e3 * float(np.median(val)) / n_rep for key, val in t.items()},
        "ratio_constrained": float(np.median(t["constrained"] / t["ours"])),
        "ratio_plain": float(np.median(t["plain"] / t["ours"])),
        "diff_same_steps": float(np.abs(sk_means - same_steps).max()),
        "diff_returned": float(np.abs(sk_means - ours["centers"]).max()),
        "diff_plain": float(np.abs(np.array([f.means_ for f in plain]) - ours["centers"]).max()),
        "iters": (
            float(ours["n_iter"].mean()),
            float(np.mean([f.n_iter_ for f in fixed])),
            float(np.mean([f.n_iter_ for f in plain])),
        ),
        "converged": bool(ours["converged"].all()),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer replicates, one round")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds (default 3)")
    args = p.parse_args()
    sizes = {2000: 64, 20000: 16, 200000: 4}
    if args.quick:
        sizes = {2000: 8, 20000: 2, 200000: 1}
    rounds = args.rounds or (1 if args.quick else 3)
    rows = []
    with threadpool_limits(1):
        for m, n_rep in sizes.items():
            rows.append(run(m, n_rep, rounds))
    print(
        f"{'m':>7} {'R':>3} {'ours':>9} {'sk fixed':>9} {'sk plain':>9} "
        f"{'x fixed':>7} {'x plain':>7} {'|dU| same':>9} {'|dU| ret':>9} {'|dU| plain':>10} "
        f"{'iterations o/f/p':>17}"
    )
    for r in rows:
        ms = r["ms"]
        it = "/".join(f"{v:.1f}" for v in r["iters"])
        print(
            f"{r['m']:>7} {r['R']:>3} {ms['ours']:>6.2f} ms {ms['constrained']:>6.2f} ms "
            f"{ms['plain']:>6.2f} ms {r['ratio_constrained']:>7.2f} {r['ratio_plain']:>7.2f} "
            f"{r['diff_same_steps']:>9.1e} {r['diff_returned']:>9.1e} {r['diff_plain']:>10.1e} "
            f"{it:>17}"
        )
    print(
        "ms per replicate (median over rounds); x = scikit-learn time / ours (median of the "
        "per-round ratios);\n|dU| same: constrained scikit-learn vs ours at the same number "
        "of M-steps; ret: as returned\n(scikit-learn's rule takes one more M-step); plain: "
        "the unconstrained spherical fit (another estimator)."
    )
    if not all(r["converged"] for r in rows):
        print("warning: some EM runs did not converge")


if __name__ == "__main__":
    main()
