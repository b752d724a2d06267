#!/usr/bin/env python
"""Stage 1 of the pipeline: a point's population truth and, per replicate, the
pre-training data and the downstream design (raw samples or exact sufficient statistics)."""

from __future__ import annotations

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("simulate.py", __doc__)
    cli.add_point_args(p)
    p.add_argument("--replicates", help="replicate range START:STOP (default: all of the point's)")
    p.add_argument("--out", type=cli.nc_path, required=True, help="output netCDF file")
    args = p.parse_args(argv)
    from twostage import io, stages
    from twostage.errors import ConfigError

    point = cli.resolve_point(args)
    start, stop = 0, point.replicates
    if stop == 0:
        raise ConfigError(
            "the point has replicates 0 (a theory-only point): there is nothing to simulate"
        )
    if stop is None and not args.replicates:
        raise ConfigError("--replicates START:STOP is needed: the --point gives no replicate count")
    if args.replicates:
        try:
            start, stop = (int(x) for x in args.replicates.split(":"))
        except ValueError:
            raise ConfigError(f"--replicates must be START:STOP; got {args.replicates!r}") from None
        problem = stages.range_problem(start, stop, point.replicates)
        if problem:
            raise ConfigError(f"--replicates {args.replicates} {problem}")
    io.write_dataset(stages.simulate(point, start, stop), args.out, "simulate")


if __name__ == "__main__":
    cli.run(main)
