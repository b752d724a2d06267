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

#: argument destinations that name outputs (every other path argument is an input)
OUTPUT_DESTS = ("out", "out_risk", "out_theory", "table", "outdir")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, like every other user error
        if message.endswith("expected one argument"):
            message += " (a value that starts with '-' is written --option=VALUE)"
        self.exit(2, f"error: {self.prog}: {message}\n")

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201
        ns = super().parse_args(args, namespace)
        check_paths(self, ns)
        return ns


def _flag(dest: str) -> str:
    return "--" + ("in" if dest == "inp" else dest.replace("_", "-"))


def _writable_dir(path: Path) -> str | None:
    """Why files cannot be created in ``path`` (created if missing), or None."""
    import os

    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a directory"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"directory {probe} is not writable"
    return None


def check_paths(p: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    """Before any work: no output may be an input or another output (it would be
    overwritten), a file output may not be an existing directory, and every output's
    directory must be creatable and writable."""
    outs = []
    for dest in OUTPUT_DESTS:
        value = getattr(ns, dest, None)
        if value is not None:  # a repeatable output (action="append") is a list
            outs += [(dest, Path(v)) for v in (value if isinstance(value, list) else [value])]
    ins = []
    for dest, value in vars(ns).items():
        if dest in OUTPUT_DESTS:
            continue
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, Path):
                ins.append((dest, v))
    seen: dict[Path, str] = {}
    for dest, path in outs:
        key = path.resolve()
        for in_dest, in_path in ins:
            if in_path.resolve() == key:
                flags = f"{_flag(dest)} {path} is also the input {_flag(in_dest)}"
                p.error(f"{flags}: refusing to overwrite it")
        if key in seen:
            p.error(f"{_flag(dest)} and {seen[key]} are the same file {path}")
        seen[key] = _flag(dest)
        if dest != "outdir" and path.is_dir():
            p.error(f"{_flag(dest)} {path} is a directory; expected a file path")
        why = _writable_dir(path if dest == "outdir" else path.parent)
        if why:
            p.error(f"{_flag(dest)} {path}: {why}")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(
        prog=prog,
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )


def suffix_path(suffix: str, what: str = "") -> Callable[[str], Path]:
    """argparse type of an output path that must end in ``suffix``."""

    def check(text: str) -> Path:
        path = Path(text)
        if path.suffix != suffix:
            kind = f" ({what})" if what else ""
            raise argparse.ArgumentTypeError(f"output {text!r} must be a {suffix}{kind} file")
        return path

    return check


#: argparse type of a netCDF output path
nc_path = suffix_path(".nc", "netCDF")


def add_point_args(p: argparse.ArgumentParser, repeat: bool = False) -> None:
    """The point options; with ``repeat``, ``--point`` may be given several times (read by
    :func:`resolve_points`)."""
    g = p.add_argument_group(
        "point",
        "which point to compute: --point JSON (as Snakemake passes it), or "
        "--config with --study and --point-id (by hand)",
    )
    what = "point description (JSON, as written in every output's 'point' attribute)"
    if repeat:
        g.add_argument("--point", action="append", help=f"{what}; repeat it for several points")
    else:
        g.add_argument("--point", help=what)
    g.add_argument("--config", type=Path, help="YAML configuration file")
    g.add_argument("--study", help="study name in --config")
    g.add_argument("--point-id", help="point id (12 hex digits); omit to list the study's points")


def add_outputs(p: argparse.ArgumentParser, per: str) -> None:
    """``--out``, repeatable: one output netCDF file per item (each ``per`` option)."""
    p.add_argument(
        "--out",
        type=nc_path,
        action="append",
        required=True,
        help=f"output netCDF file; one per {per}, in the same order",
    )


def together(*options: tuple[str, Sequence]) -> list[tuple]:
    """The values of repeated options taken together in order, one tuple per item (a stage
    job over a batch of shards gets ``--in F --out G`` once per shard): ``options`` are
    ``(flag, values)`` pairs; a ConfigError unless every option has as many values."""
    counts = {len(values) for _, values in options}
    if len(counts) != 1:
        given = " and ".join(f"{len(values)} {flag}" for flag, values in options)
        flags = ", ".join(flag for flag, _ in options)
        raise ConfigError(f"{given} given; expected {flags} once per item, in the same order")
    return list(zip(*(values for _, values in options), strict=True))


def check_inputs(paths: Sequence[Path]) -> None:
    """Before any work: every input file exists (a job over a batch of shards reads them
    one after the other)."""
    from .io import check_input

    for path in paths:
        check_input(path)


def resolve_points(args: argparse.Namespace) -> list:
    """:func:`resolve_point` for a repeatable ``--point`` (:func:`add_point_args` with
    ``repeat``): every point given, in order."""
    from .config import Point

    texts = args.point or []
    if len(texts) <= 1:
        single = argparse.Namespace(**{**vars(args), "point": next(iter(texts), None)})
        return [resolve_point(single)]
    if args.config or args.study or args.point_id:
        raise ConfigError("give either --point or --config/--study/--point-id, not both")
    return [Point.from_json(text) for text in texts]


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
    ids = "; ".join(f"{p.point_id} (n={p.n}, m={p.m})" for p in points)
    if not args.point_id:
        raise ConfigError(f"--point-id is needed: study {args.study!r} has the points {ids}")
    for p in points:
        if p.point_id == args.point_id:
            return p
    raise ConfigError(
        f"--point-id {args.point_id!r} is not a point of study {args.study!r}; it has {ids}"
    )


def run(main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a script's ``main`` with one BLAS thread, turning user errors into one line.

    The job's log (stderr) gets the progress lines of long loops (:mod:`twostage.progress`),
    one line per file written (stage, replicates, flagged replicates: :func:`io.summary`)
    and the wall time at the end."""
    import logging
    import time

    from .progress import configure
    from .threads import one_thread

    configure()
    start = time.monotonic()
    try:
        with one_thread():
            main(argv)
    except TwostageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    name = Path(sys.argv[0]).name if argv is None else "stage"
    logging.getLogger("twostage.cli").info("%s done in %.2f s", name, time.monotonic() - start)
