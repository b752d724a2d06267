#!/usr/bin/env python
"""Stage 4: min-norm OLS on the pre-trained features and the exact conditional risk
decomposition n(R - sigma^2) = n Rep + n Leak + n Var per replicate (Prop. B.1). Several
shards at once: --align, --simulate and --out repeated together (the workflow runs a batch
of shards per job)."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("downstream.py", __doc__)
    p.add_argument("--align", type=Path, action="append", required=True,
                   help="align.nc of a shard")  # fmt: skip
    p.add_argument("--simulate", type=Path, action="append", required=True,
                   help="simulate.nc of the same shard")  # fmt: skip
    cli.add_outputs(p, "--align")
    args = p.parse_args(argv)
    items = cli.together(
        ("--align", args.align), ("--simulate", args.simulate), ("--out", args.out)
    )
    cli.check_inputs([*args.align, *args.simulate])
    from twostage import io, stages
    from twostage.errors import InputFileError

    for align, simulate, out in items:
        al = io.read_shard(align, "align")
        sim = io.read_shard(simulate, "simulate")
        if not stages.same_shard(al, sim):
            raise InputFileError(
                f"--simulate {simulate} and --align {align} belong to different points "
                "or replicate ranges; expected the files of one shard"
            )
        io.write_dataset(stages.downstream(al, sim), out, "downstream")


if __name__ == "__main__":
    cli.run(main)
