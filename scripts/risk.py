#!/usr/bin/env python
"""Stage 5: aggregate a study: replicate-level risk terms per (point, replicate), per-point
means with Monte Carlo standard errors, KS distances to the limits and p_var; and the
study's limits in one file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    from twostage.config import study_defaults

    defaults = study_defaults()
    p = cli.parser("risk.py", __doc__)
    p.add_argument(
        "--downstream", type=Path, nargs="+", required=True, help="downstream.nc of every shard"
    )
    p.add_argument("--theory", type=Path, nargs="+", required=True, help="theory.nc of every point")
    p.add_argument(
        "--p-var-tolerance",
        type=float,
        default=defaults["p_var_tolerance"],
        help="relative tolerance of p_var",
    )
    p.add_argument(
        "--ks-bootstrap",
        type=int,
        default=defaults["ks_bootstrap"],
        help="bootstrap resamples for KS s.e.",
    )
    p.add_argument("--out-risk", type=cli.nc_path, required=True, help="aggregated risk.nc")
    p.add_argument("--out-theory", type=cli.nc_path, required=True, help="aggregated theory.nc")
    args = p.parse_args(argv)
    from twostage import io, stages

    shards = defaultdict(list)
    for path in args.downstream:
        ds = io.read_dataset(path, "downstream")
        shards[ds.attrs.get("point_id")].append(ds)
    theories = [io.read_dataset(path, "theory") for path in args.theory]
    if args.p_var_tolerance <= 0 or args.ks_bootstrap < 0:
        p.error("--p-var-tolerance must be > 0 and --ks-bootstrap >= 0")
    risk, theory = stages.aggregate(
        list(shards.values()),
        theories,
        p_var_tolerance=args.p_var_tolerance,
        ks_bootstrap=args.ks_bootstrap,
    )
    # both or neither: a failure while writing either leaves no half pair
    io.write_datasets([(theory, args.out_theory, "theory_summary"), (risk, args.out_risk, "risk")])


if __name__ == "__main__":
    cli.run(main)
