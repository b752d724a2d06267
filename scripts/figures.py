#!/usr/bin/env python
"""Figures of a study, drawn from its aggregated results only (risk.nc and theory.nc),
plus a CSV table of the per-point summaries."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    p = cli.parser("figures.py", __doc__)
    p.add_argument("--risk", type=Path, required=True, help="aggregated risk.nc of a study")
    p.add_argument("--theory", type=Path, required=True, help="aggregated theory.nc of the study")
    p.add_argument("--outdir", type=Path, required=True, help="folder for the PNG figures")
    p.add_argument("--table", type=Path, help="also write the per-point summary table (CSV)")
    p.add_argument(
        "--max-panels", type=int, default=4, help="at most this many n values per CDF panel"
    )
    args = p.parse_args(argv)
    from twostage import io, plots, stages

    risk = io.read_dataset(args.risk, "risk")
    theory = io.read_dataset(args.theory, "theory_summary")
    if args.max_panels < 1:
        p.error("--max-panels must be >= 1")
    for path in plots.draw_all(risk, theory, args.outdir, args.max_panels):
        print(path)
    if args.table:
        with io.atomic_path(args.table) as tmp:
            stages.summary_table(risk).to_csv(tmp)


if __name__ == "__main__":
    cli.run(main)
