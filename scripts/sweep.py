#!/usr/bin/env python
"""Theory-only study (replicates: 0): the limit at every point of the grid in one file,
E||L(Z)||^2 against the swept parameter, with a fitted curve and its R^2."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("sweep.py", __doc__)
    p.add_argument("--theory", type=Path, nargs="+", required=True, help="theory.nc of every point")
    from twostage.config import schema, study_defaults

    fits = schema()["$defs"]["study"]["properties"]["fit"]["enum"]
    p.add_argument("--fit", choices=fits, default=study_defaults()["fit"])
    p.add_argument(
        "--x", default=None, help="a scalar theory output as x (default: the swept parameter)"
    )
    p.add_argument("--out", type=cli.nc_path, required=True, help="output sweep.nc")
    args = p.parse_args(argv)
    from twostage import io, stages

    theories = [io.read_dataset(path, "theory") for path in args.theory]
    if args.x is not None:
        from twostage.config import check_sweep_x

        check_sweep_x(str(theories[0].attrs.get("case")), args.x, "--x")
    io.write_dataset(stages.sweep(theories, args.fit, args.x), args.out, "sweep")


if __name__ == "__main__":
    cli.run(main)
