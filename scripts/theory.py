#!/usr/bin/env python
"""The limit of Theorem 5.1 at a point: sigma^2 d_eff + ||L(Z)||^2 / alpha with the
generalized chi-square weights computed numerically (V and G_L), and the case's closed
forms (printed and corrected) alongside. Several points at once: --point and --out
repeated in pairs (the workflow computes a batch of points per job)."""

from __future__ import annotations

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("theory.py", __doc__)
    cli.add_point_args(p, repeat=True)
    cli.add_outputs(p, "--point")
    args = p.parse_args(argv)
    items = cli.together(("--point", cli.resolve_points(args)), ("--out", args.out))
    from twostage import io, stages

    # all or nothing: the files are renamed into place once every limit is written
    io.write_datasets([(stages.theory(point), out, "theory") for point, out in items])


if __name__ == "__main__":
    cli.run(main)
