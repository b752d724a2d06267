#!/usr/bin/env python
"""Stage 1 of the pipeline: a point's population truth and, per replicate, the
pre-training data and the downstream design (raw samples or exact sufficient statistics).
Several shards at once: --point, --replicates and --out repeated together (the workflow
runs a batch of shards per job)."""

from __future__ import annotations

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("simulate.py", __doc__)
    cli.add_point_args(p, repeat=True)
    p.add_argument(
        "--replicates",
        action="append",
        help="replicate range START:STOP (default: all of the point's); with several "
        "--point, once per --point",
    )
    cli.add_outputs(p, "--point")
    args = p.parse_args(argv)
    from twostage import io, stages
    from twostage.errors import ConfigError

    points = cli.resolve_points(args)
    ranges = args.replicates or [None] * len(points)
    items = cli.together(("--point", points), ("--replicates", ranges), ("--out", args.out))
    jobs = []  # every item checked before any work
    for point, text, out in items:
        start, stop = 0, point.replicates
        if stop == 0:
            raise ConfigError(
                "the point has replicates 0 (a theory-only point): there is nothing to simulate"
            )
        if stop is None and not text:
            raise ConfigError(
                "--replicates START:STOP is needed: the --point gives no replicate count"
            )
        if text:
            try:
                start, stop = (int(x) for x in text.split(":"))
            except ValueError:
                raise ConfigError(f"--replicates must be START:STOP; got {text!r}") from None
            problem = stages.range_problem(start, stop, point.replicates)
            if problem:
                raise ConfigError(f"--replicates {text} {problem}")
        jobs.append((point, start, stop, out))
    for point, start, stop, out in jobs:
        io.write_dataset(stages.simulate(point, start, stop), out, "simulate")


if __name__ == "__main__":
    cli.run(main)
