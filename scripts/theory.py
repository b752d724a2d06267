#!/usr/bin/env python
"""The limit of Theorem 5.1 at a point: sigma^2 d_eff + ||L(Z)||^2 / alpha with the
generalized chi-square weights computed numerically (V and G_L), and the case's closed
forms (printed and corrected) alongside."""

from __future__ import annotations

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("theory.py", __doc__)
    cli.add_point_args(p)
    p.add_argument("--out", type=cli.nc_path, required=True, help="output netCDF file")
    args = p.parse_args(argv)
    from twostage import io, stages

    io.write_dataset(stages.theory(cli.resolve_point(args)), args.out, "theory")


if __name__ == "__main__":
    cli.run(main)
