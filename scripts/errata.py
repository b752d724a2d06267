#!/usr/bin/env python
"""The errata table of a run: every closed form the paper prints (the cases' declared
errata) against its correction, our numerical limit and the Monte Carlo, and every value
read off the paper's figures (the studies' ``reference``) against our limit; written as CSV
and LaTeX (booktabs) beside it."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("errata.py", __doc__)
    p.add_argument("--risk", type=Path, nargs="*", default=[], help="risk.nc of each study")
    p.add_argument(
        "--theory", type=Path, nargs="*", default=[], help="theory.nc of each study (same order)"
    )
    p.add_argument("--sweep", type=Path, nargs="*", default=[], help="sweep.nc of each sweep")
    p.add_argument("--references", default="{}", help="JSON mapping: study -> its reference values")
    p.add_argument("--out", type=Path, required=True, help="output CSV (.tex written beside it)")
    args = p.parse_args(argv)
    if args.out.suffix != ".csv":
        p.error(f"--out must be a .csv file; got {str(args.out)!r}")
    if len(args.risk) != len(args.theory):
        p.error("give one --theory per --risk, in the same order")
    import json

    from twostage import io
    from twostage.tables import errata, write_table

    try:
        references = json.loads(args.references)
    except json.JSONDecodeError:
        p.error(f"--references must be JSON; got {args.references!r}")
    mc = [
        (io.read_dataset(r, "risk"), io.read_dataset(t, "theory_summary"))
        for r, t in zip(args.risk, args.theory, strict=True)
    ]
    sweeps = []
    for path in args.sweep:
        sw = io.read_dataset(path, "sweep")
        sweeps.append((sw, references.get(str(sw.attrs.get("study")))))
    for path in write_table(errata(mc, sweeps, references), args.out):
        print(path)


if __name__ == "__main__":
    cli.run(main)
