#!/usr/bin/env python
"""Stage 2: pre-training estimation (the stage-1 M-estimator) for every replicate."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("pretrain.py", __doc__)
    p.add_argument("--in", dest="inp", type=Path, required=True, help="simulate.nc of a shard")
    p.add_argument("--out", type=cli.nc_path, required=True, help="output netCDF file")
    args = p.parse_args(argv)
    from twostage import io, stages

    io.write_dataset(stages.pretrain(io.read_shard(args.inp, "simulate")), args.out, "pretrain")


if __name__ == "__main__":
    cli.run(main)
