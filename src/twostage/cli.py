"""Shared command-line plumbing of the stage scripts in ``scripts/``.

Each script parses its arguments, reads its inputs, calls one function of
:mod:`twostage.stages` and writes its output atomically. User errors (bad arguments,
missing or wrong-stage inputs, invalid configuration) are reported on one line,
``error: ...``, with exit status 2 and no output file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import ConfigError, TwostageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, like every other user error
        self.exit(2, f"error: {self.prog}: {message}\n")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def nc_path(text: str) -> Path:
    """argparse type of an output path: must end in .nc."""
    path = Path(text)
    if path.suffix != ".nc":
        raise argparse.ArgumentTypeError(f"output {text!r} must be a .nc (netCDF) file")
    return path


def add_point_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "point",
        "which point to compute: --point JSON (as Snakemake passes it), or "
        "--config with --study and --point-id (by hand)",
    )
    g.add_argument(
        "--point", help="point description (JSON, as written in every output's 'point' attribute)"
    )
    g.add_argument("--config", type=Path, help="YAML configuration file")
    g.add_argument("--study", help="study name in --config")
    g.add_argument("--point-id", help="point id (12 hex digits); omit to list the study's points")


def resolve_point(args: argparse.Namespace):  # noqa: ANN201
    from .config import Point, expand_study, load_config

    if args.point:
        if args.config or args.study or args.point_id:
            raise ConfigError("give either --point or --config/--study/--point-id, not both")
        return Point.from_json(args.point)
    if not (args.config and args.study):
        raise ConfigError(
            "a point is needed: give --point JSON, or --config FILE --study NAME --point-id ID"
        )
    cfg = load_config(args.config)
    if args.study not in cfg["studies"]:
        raise ConfigError(
            f"study {args.study!r} is not in {args.config}; it has {sorted(cfg['studies'])}"
        )
    points = expand_study(args.study, cfg["studies"][args.study])
    if not args.point_id:
        lines = [f"{p.point_id}  m={p.m} n={p.n}  {p.to_json()}" for p in points]
        raise ConfigError("choose --point-id among:\n" + "\n".join(lines))
    for p in points:
        if p.point_id == args.point_id:
            return p
    raise ConfigError(
        f"no point {args.point_id!r} in study {args.study!r}; ids: {[p.point_id for p in points]}"
    )


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a script's ``main`` with one BLAS thread, turning user errors into one line."""
    from .threads import one_thread

    try:
        with one_thread():
            main(argv)
    except TwostageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
