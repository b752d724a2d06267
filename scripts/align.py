#!/usr/bin/env python
"""Stage 3: orbit alignment of each pre-trained representative to the truth
(diagnostics: parameter-level CLTs and the orbit invariance of the risk)."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("align.py", __doc__)
    p.add_argument("--in", dest="inp", type=Path, required=True, help="pretrain.nc of a shard")
    p.add_argument("--out", type=cli.nc_path, required=True, help="output netCDF file")
    args = p.parse_args(argv)
    from twostage import io, stages

    io.write_dataset(stages.align(io.read_shard(args.inp, "pretrain")), args.out, "align")


if __name__ == "__main__":
    cli.run(main)
