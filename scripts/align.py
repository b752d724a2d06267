#!/usr/bin/env python
"""Stage 3: orbit alignment of each pre-trained representative to the truth
(diagnostics: parameter-level CLTs and the orbit invariance of the risk). Several shards at
once: --in and --out repeated in pairs (the workflow runs a batch of shards per job)."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("align.py", __doc__)
    p.add_argument("--in", dest="inp", type=Path, action="append", required=True,
                   help="pretrain.nc of a shard")  # fmt: skip
    cli.add_outputs(p, "--in")
    args = p.parse_args(argv)
    items = cli.together(("--in", args.inp), ("--out", args.out))
    cli.check_inputs(args.inp)
    from twostage import io, stages

    for inp, out in items:
        io.write_dataset(stages.align(io.read_shard(inp, "pretrain")), out, "align")


if __name__ == "__main__":
    cli.run(main)
