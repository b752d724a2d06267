#!/usr/bin/env python
"""Figures of a study, drawn from its aggregated results only: risk.nc and theory.nc
(Monte Carlo studies, plus a CSV table of the per-point summaries), or sweep.nc
(theory-only studies, plus a CSV table of E||L(Z)||^2 and the fit)."""

from __future__ import annotations

from pathlib import Path

from twostage import cli


def main(argv=None) -> None:
    from twostage.config import study_defaults

    p = cli.parser("figures.py", __doc__)
    p.add_argument("--risk", type=Path, help="aggregated risk.nc of a study")
    p.add_argument("--theory", type=Path, help="aggregated theory.nc of the study")
    p.add_argument("--sweep", type=Path, help="sweep.nc of a theory-only study")
    p.add_argument("--outdir", type=Path, required=True, help="folder for the PNG figures")
    p.add_argument(
        "--table",
        type=cli.suffix_path(".csv"),
        help="also write the per-point summary table (CSV; .tex beside it)",
    )
    p.add_argument("--reference", default="null", help="paper values to overlay (JSON mapping)")
    p.add_argument(
        "--max-panels",
        type=int,
        default=study_defaults()["cdf_panels"],
        help="at most this many n values per CDF panel",
    )
    p.add_argument(
        "--x", default=None, help="means figure: a scalar theory output as x (study key sweep_x)"
    )
    args = p.parse_args(argv)
    if bool(args.sweep) == bool(args.risk or args.theory) or bool(args.risk) != bool(args.theory):
        p.error("give --risk and --theory, or --sweep")
    if args.max_panels < 1:
        p.error("--max-panels must be >= 1")
    import json

    from twostage import io, plots, stages

    try:
        reference = json.loads(args.reference)
    except json.JSONDecodeError:
        p.error(f"--reference must be JSON; got {args.reference!r}")
    if args.sweep:
        sw = io.read_dataset(args.sweep, "sweep")
        paths = plots.draw_sweep(sw, args.outdir, reference)
        table = sw[[v for v in sw.data_vars if sw[v].dims == ("point",)]].to_dataframe()
    else:
        risk = io.read_dataset(args.risk, "risk")
        theory = io.read_dataset(args.theory, "theory_summary")
        if args.x is not None:
            from twostage.config import check_sweep_x

            check_sweep_x(str(risk.attrs.get("case")), args.x, "--x")
        paths = plots.draw_all(risk, theory, args.outdir, args.max_panels, reference, args.x)
        table = stages.summary_table(risk)
    for path in paths:
        print(path)
    if args.table:  # CSV, and LaTeX (booktabs) beside it
        from twostage.tables import write_table

        for path in write_table(table, args.table):
            print(path)


if __name__ == "__main__":
    cli.run(main)
