#!/usr/bin/env python
"""Cost per replicate of each factor-model stage, against n (and m = 2n).

With exact sufficient-statistic sampling (Wishart draws of S_m and S_n) the cost must not
grow with n; with raw sampling it grows linearly. Targets (2-core machine, one BLAS
thread): sufficient sampling <= 2 ms per replicate per stage at d = 20, k = 3, and the
ratio of the costs at n = 1e5 and n = 1e2 below 1.5.

    python benchmarks/factor_stages.py [--replicates 1000] [--check]
"""

from __future__ import annotations

import argparse
import time

from threadpoolctl import threadpool_limits

from twostage import stages
from twostage.config import expand_study


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args()
    r = args.replicates
    rows = []
    with threadpool_limits(1):
        for sampling, grid in (("sufficient", [100, 1000, 10000, 100000]), ("raw", [100, 1000])):
            for n in grid:
                spec = {
                    "case": "factor",
                    "replicates": r,
                    "sampling": sampling,
                    "n": n,
                    "alpha": 2.0,
                }
                (point,) = expand_study("bench", spec)
                sim, t_sim = timed(stages.simulate, point, 0, r)
                pre, t_pre = timed(stages.pretrain, sim)
                al, t_al = timed(stages.align, pre)
                _, t_down = timed(stages.downstream, al, sim)
                rows.append((sampling, n, t_sim, t_pre, t_al, t_down))
    print(
        f"{'sampling':>10} {'n':>7} "
        + " ".join(f"{s:>12}" for s in ("simulate", "pretrain", "align", "downstream"))
    )
    for sampling, n, *ts in rows:
        print(f"{sampling:>10} {n:>7} " + " ".join(f"{1e3 * t / r:9.3f} ms" for t in ts))
    suff = [row for row in rows if row[0] == "sufficient"]
    worst = max(max(row[2:]) for row in suff) / r
    ratio = sum(suff[-1][2:]) / sum(suff[0][2:])
    print(f"worst sufficient-path cost {1e3 * worst:.3f} ms/replicate/stage")
    print(f"cost(n=1e5) / cost(n=1e2) = {ratio:.2f}")
    if args.check and (worst > 2e-3 or ratio > 1.5):
        raise SystemExit("benchmark target missed")


if __name__ == "__main__":
    main()
