#!/usr/bin/env python
"""Measure the per-replicate cost of every shard stage of a case at a point, to calibrate
its cost model (``twostage/cases/<case>/costs.yaml``; defaults in
``twostage/data/costs.yaml``), which sizes ``shard_size: auto`` and the cluster resource
requests.

Each stage function runs in this process (one BLAS thread) on R and 2R replicates, with
its netCDF output written to a temporary file as the stage script does; the per-replicate
cost is the difference divided by R (start-up is measured separately: ``base_s`` is the
wall time of ``scripts/<stage>.py --help`` plus the imports the stage needs). Peak memory
per replicate is estimated from the output sizes.

    python benchmarks/calibrate.py factor '{"d": 20, "k": 3, "n": 1000, "alpha": 2}' [-R 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from twostage import io, stages
from twostage.api import study_spec
from twostage.config import expand_study


def stage_times(case: str, params: dict, replicates: int, sampling: str | None) -> dict:
    spec = study_spec(case, params, replicates=replicates, sampling=sampling, seed=1)
    (point,) = expand_study("calibrate", spec)
    out = {}
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(limits=1):
        t = time.perf_counter()
        sim = stages.simulate(point, 0, replicates)
        io.write_dataset(sim, Path(tmp) / "sim.nc", "simulate")
        out["simulate"] = time.perf_counter() - t
        t = time.perf_counter()
        pre = stages.pretrain(sim)
        io.write_dataset(pre, Path(tmp) / "pre.nc", "pretrain")
        out["pretrain"] = time.perf_counter() - t
        t = time.perf_counter()
        al = stages.align(pre)
        io.write_dataset(al, Path(tmp) / "al.nc", "align")
        out["align"] = time.perf_counter() - t
        t = time.perf_counter()
        down = stages.downstream(al, sim)
        io.write_dataset(down, Path(tmp) / "down.nc", "downstream")
        out["downstream"] = time.perf_counter() - t
        sizes = {
            name: (Path(tmp) / f).stat().st_size
            for name, f in (
                ("simulate", "sim.nc"),
                ("pretrain", "pre.nc"),
                ("align", "al.nc"),
                ("downstream", "down.nc"),
            )
        }
    return {"seconds": out, "bytes": sizes, "m": point.m}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("case")
    p.add_argument("params", help="flat JSON mapping of the point's parameters")
    p.add_argument("-R", "--replicates", type=int, default=200)
    p.add_argument("--sampling", default=None)
    args = p.parse_args()
    params = json.loads(args.params)
    stage_times(args.case, params, 2, args.sampling)  # warm up (imports, caches)
    one = stage_times(args.case, params, args.replicates, args.sampling)
    two = stage_times(args.case, params, 2 * args.replicates, args.sampling)
    print(
        f"{args.case} {params} (m = {one['m']}), R = {args.replicates} and {2 * args.replicates}:"
    )
    for stage in ("simulate", "pretrain", "align", "downstream"):
        per = (two["seconds"][stage] - one["seconds"][stage]) / args.replicates
        mb = (two["bytes"][stage] - one["bytes"][stage]) / args.replicates / 2**20
        print(
            f"  {stage:>10}: {per * 1e3:9.3f} ms per replicate, output {mb:8.4f} MB per replicate"
        )


if __name__ == "__main__":
    main()
