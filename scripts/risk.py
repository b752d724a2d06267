#!/usr/bin/env python
"""Stage 5: aggregate a study: replicate-level risk terms per (point, replicate), per-point
means with Monte Carlo standard errors, KS distances to the limits and p_var; and the
study's limits in one file."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    from twostage.config import schema, study_defaults

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
    p.add_argument(
        "--flagged",
        choices=schema()["$defs"]["study"]["properties"]["flagged"]["enum"],
        default=defaults["flagged"],
        help="summaries over every replicate (keep) or the unflagged ones only (drop)",
    )
    p.add_argument(
        "--regime-tolerance",
        type=float,
        default=defaults["regime_tolerance"],
        help="relative distance of mean n Rep from its limit that marks a point off-regime",
    )
    p.add_argument(
        "--replicates",
        type=int,
        help="replicates per point the shards must cover (default: as many as they hold)",
    )
    p.add_argument("--out-risk", type=cli.nc_path, required=True, help="aggregated risk.nc")
    p.add_argument("--out-theory", type=cli.nc_path, required=True, help="aggregated theory.nc")
    args = p.parse_args(argv)
    if not (args.p_var_tolerance > 0 and args.regime_tolerance > 0 and args.ks_bootstrap >= 0):
        p.error("--p-var-tolerance and --regime-tolerance must be > 0, --ks-bootstrap >= 0")
    if args.replicates is not None and args.replicates < 1:
        p.error(f"--replicates must be >= 1; got {args.replicates}")
    from twostage import io, stages

    shards = defaultdict(list)
    for path in args.downstream:
        ds = io.read_dataset(path, "downstream")
        shards[ds.attrs.get("point_id")].append(ds)
    theories = [io.read_dataset(path, "theory") for path in args.theory]
    risk, theory = stages.aggregate(
        list(shards.values()),
        theories,
        p_var_tolerance=args.p_var_tolerance,
        ks_bootstrap=args.ks_bootstrap,
        flagged=args.flagged,
        regime_tolerance=args.regime_tolerance,
        replicates=args.replicates,
    )
    for line in stages.flag_report(risk):
        print(f"warning: {line}", file=sys.stderr)
    # both or neither: a failure while writing either leaves no half pair
    io.write_datasets([(theory, args.out_theory, "theory_summary"), (risk, args.out_risk, "risk")])


if __name__ == "__main__":
    cli.run(main)
