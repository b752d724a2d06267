#!/usr/bin/env python
"""Stage 2: pre-training estimation (the stage-1 M-estimator) for every replicate. Several
shards at once: --in and --out repeated in pairs (the workflow runs a batch of shards per
job)."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("pretrain.py", __doc__)
    p.add_argument("--in", dest="inp", type=Path, action="append", required=True,
                   help="simulate.nc of a shard")  # fmt: skip
    cli.add_outputs(p, "--in")
    args = p.parse_args(argv)
    items = cli.together(("--in", args.inp), ("--out", args.out))
    cli.check_inputs(args.inp)
    from twostage import io, stages

    for inp, out in items:
        io.write_dataset(stages.pretrain(io.read_shard(inp, "simulate")), out, "pretrain")


if __name__ == "__main__":
    cli.run(main)
