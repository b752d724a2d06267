#!/usr/bin/env python
"""Stage 4: min-norm OLS on the pre-trained features and the exact conditional risk
decomposition n(R - sigma^2) = n Rep + n Leak + n Var per replicate (Prop. B.1)."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("downstream.py", __doc__)
    p.add_argument("--align", type=Path, required=True, help="align.nc of a shard")
    p.add_argument("--simulate", type=Path, required=True, help="simulate.nc of the same shard")
    p.add_argument("--out", type=cli.nc_path, required=True, help="output netCDF file")
    args = p.parse_args(argv)
    from twostage import io, stages

    al = io.read_shard(args.align, "align")
    sim = io.read_shard(args.simulate, "simulate")
    if not stages.same_shard(al, sim):
        from twostage.errors import InputFileError

        raise InputFileError(
            f"--simulate {args.simulate} and --align {args.align} belong to different points "
            "or replicate ranges; expected the files of one shard"
        )
    io.write_dataset(stages.downstream(al, sim), args.out, "downstream")


if __name__ == "__main__":
    cli.run(main)
