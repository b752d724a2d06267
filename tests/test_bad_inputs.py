"""A corpus of bad inputs: each gets ONE clear line naming the bad key path, flag or file.

The project's rule: bad input (a config, CLI arguments, a corrupt or missing file, API
arguments) is refused before any work starts with one line ``error: ...`` (exit status 2)
that names the bad key path as written (``studies.a.grid.d``), or the bad flag or file,
and what was expected; no output file is written. API calls raise
:class:`twostage.errors.ConfigError` (or ``InputFileError``) with such a message, never
another exception type.

Corpus (parametrized cases, readable ids):

* configs: 112 (``test_bad_config``: YAML texts, dicts and paths; mutations of a valid
  study of every case, given to ``validate_config``/``load_config`` then ``expand_config``);
* CLI calls: 86 (``test_bad_cli``: the stage scripts called in-process through
  ``twostage.cli.run``), 5 of them also run as real subprocesses (``test_bad_cli_subprocess``,
  which also checks that both give the same exit status and the same line);
* API calls: 45 (``test_bad_api``: ``run_point``, ``run_study``, ``validate_config``,
  ``load_config``, ``expand_study``);
* Snakemake: 3 dry runs (``test_bad_config_snakemake``, marked ``workflow``).

Total: 246 bad inputs, plus a property-based test (hypothesis: random mutations of
``tests/configs/tiny.yaml`` either validate into sane points or raise a one-line
ConfigError) and positive tests (numpy scalars are accepted by the API).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from twostage import cli
from twostage.config import expand_config, expand_study, load_config, validate_config
from twostage.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
TINY = ROOT / "tests" / "configs" / "tiny.yaml"
TINY_TEXT = TINY.read_text()
TINY_CFG = yaml.safe_load(TINY_TEXT)
BIN = Path(sys.executable).parent
DELETE = object()  # a mutation that removes the key

# --------------------------------------------------------------------------- helpers


def _env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    return e


#: A valid study of every case (small), named "tiny" (factor) or "s" (the others).
BASES: dict[str, dict[str, Any]] = {
    "factor": TINY_CFG,
    "spectral": {
        "studies": {
            "s": {
                "case": "spectral",
                "replicates": 4,
                "shard_size": 4,
                "population": {"d": 4, "k": 2},
                "n": 100,
                "alpha": 2.0,
            }
        }
    },
    "gmm": {
        "studies": {
            "s": {
                "case": "gmm",
                "replicates": 4,
                "shard_size": 4,
                "population": {"K": 2, "d": 3, "population_size": 1000, "fisher_size": 1000},
                "n": 100,
                "alpha": 2.0,
            }
        }
    },
    "multitask": {
        "studies": {
            "s": {
                "case": "multitask",
                "replicates": 4,
                "shard_size": 4,
                "population": {"d": 5, "k": 2, "n_tasks": 3},
                "n": 100,
                "alpha": 2.0,
            }
        }
    },
}


def mut(case: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The valid config of ``case`` with ``changes``: dotted paths relative to its study
    (``population.k``), or to the top level when they start with '/'; DELETE removes."""
    cfg = copy.deepcopy(BASES[case])
    (name,) = cfg["studies"]
    for path, value in changes.items():
        node = cfg
        keys = path[1:].split(".") if path.startswith("/") else ["studies", name, *path.split(".")]
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return cfg


def tiny_text(old: str, new: str) -> str:
    """tests/configs/tiny.yaml with ``old`` replaced by ``new`` (``old`` must occur once)."""
    assert TINY_TEXT.count(old) == 1, old
    return TINY_TEXT.replace(old, new)


def _line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


class Re(str):
    """An expected key path given as a regular expression."""


def assert_key_message(msg: str, expected: str) -> None:
    """One line, starting with ``invalid config key '<expected>'`` (an index ``[i]`` may
    follow the expected path: it only makes it more precise)."""
    assert "\n" not in msg, f"message is not one line:\n{msg}"
    path = expected if isinstance(expected, Re) else re.escape(expected)
    pattern = rf"invalid config key '{path}(\[\d+\])*'"
    assert re.match(pattern, msg), f"expected key path {expected!r}; got: {msg}"


def raises_config_error(fn: Callable[[], Any]) -> str:
    """Call ``fn``; it must raise ConfigError (anything else, or nothing, fails the test)."""
    try:
        result = fn()
    except ConfigError as exc:
        return str(exc)
    except Exception as exc:  # the corpus's point: no other exception type
        pytest.fail(f"{type(exc).__name__} instead of ConfigError: {exc}")
    pytest.fail(f"no error raised (returned {type(result).__name__})")


# =========================================================================== 1. configs

_T = "studies.tiny"  # the study of tests/configs/tiny.yaml
_P = "studies.s.population"  # the population of the other cases' valid study
_END = len(TINY_TEXT.splitlines()) + 1  # the line of text appended to tiny.yaml
_STUDY_LINE = _line_of(TINY_TEXT, "  tiny:")
_REPLICATES_LINE = _line_of(TINY_TEXT, "    replicates: 60")
_POPULATION_LINE = _line_of(
    TINY_TEXT, "    population: {d: 6, k: 2, factor_strengths: [3.0, 1.0], sigma_nu2: 0.5}"
)

#: (id, kind, payload, expected key path or None for a file error, extra needles)
#: kind: 'dict' (validate_config), 'yaml' (text written to a file, then load_config),
#: 'path' (a special path given to load_config: 'missing', 'directory', 'binary').
CONFIG_CASES: list[tuple[str, str, Any, str | None, tuple[str, ...]]] = [
    # --- study keys: wrong types and out-of-range values
    ("replicates-negative", "dict", mut("factor", {"replicates": -1}), f"{_T}.replicates", ()),
    ("replicates-float", "dict", mut("factor", {"replicates": 1.5}), f"{_T}.replicates", ()),
    ("replicates-string", "dict", mut("factor", {"replicates": "10"}), f"{_T}.replicates", ()),
    ("replicates-1e12", "dict", mut("factor", {"replicates": 10**12}), f"{_T}.replicates", ()),
    ("replicates-bool", "dict", mut("factor", {"replicates": True}), f"{_T}.replicates", ()),
    ("replicates-null", "dict", mut("factor", {"replicates": None}), f"{_T}.replicates", ()),
    ("shard_size-0", "dict", mut("factor", {"shard_size": 0}), f"{_T}.shard_size", ()),
    ("shard_size-big", "dict", mut("factor", {"shard_size": "big"}), f"{_T}.shard_size", ()),
    ("shard_size-negative", "dict", mut("factor", {"shard_size": -3}), f"{_T}.shard_size", ()),
    ("seed-negative", "dict", mut("factor", {"seed": -1}), f"{_T}.seed", ()),
    ("seed-2**40", "dict", mut("factor", {"seed": 2**40}), f"{_T}.seed", ()),
    ("seed-string", "dict", mut("factor", {"seed": "7"}), f"{_T}.seed", ()),
    ("sampling-unknown", "dict", mut("factor", {"sampling": "exact"}), f"{_T}.sampling", ()),
    ("sampling-int", "dict", mut("factor", {"sampling": 3}), f"{_T}.sampling", ()),
    ("case-unknown", "dict", mut("factor", {"case": "spectre"}), f"{_T}.case", ()),
    ("case-null", "dict", mut("factor", {"case": None}), f"{_T}.case", ()),
    ("case-missing", "dict", mut("factor", {"case": DELETE}), f"{_T}.case", ()),
    ("n-0", "dict", mut("factor", {"n": 0}), f"{_T}.n", ()),
    ("n-float", "dict", mut("factor", {"n": 50.5}), f"{_T}.n", ()),
    ("alpha-0", "dict", mut("factor", {"alpha": 0}), f"{_T}.alpha", ()),
    ("alpha-negative", "dict", mut("factor", {"alpha": -1.0}), f"{_T}.alpha", ()),
    ("alpha-string", "dict", mut("factor", {"alpha": "2"}), f"{_T}.alpha", ()),
    (
        "m-below-k-factor",
        "dict",
        mut(
            "factor",
            {
                "population": {"d": 6, "k": 3, "factor_strengths": [3.0, 2.0, 1.0]},
                "grid": {"n": [10]},
                "alpha": 0.1,
            },
        ),
        f"{_T}.alpha",
        ("m = 1",),
    ),
    ("m-0-grid-alpha", "dict", mut("factor", {"grid.alpha": [0.001]}), f"{_T}.grid.alpha", ()),
    ("grid-n-0", "dict", mut("factor", {"grid.n": [50, 0]}), f"{_T}.grid.n", ()),
    ("grid-n-string", "dict", mut("factor", {"grid.n": [50, "x"]}), f"{_T}.grid.n", ()),
    (
        "ks_bootstrap-negative",
        "dict",
        mut("factor", {"ks_bootstrap": -1}),
        f"{_T}.ks_bootstrap",
        (),
    ),
    (
        "p_var_tolerance-0",
        "dict",
        mut("factor", {"p_var_tolerance": 0}),
        f"{_T}.p_var_tolerance",
        (),
    ),
    ("cdf_panels-0", "dict", mut("factor", {"cdf_panels": 0}), f"{_T}.cdf_panels", ()),
    ("fit-unknown", "dict", mut("factor", {"fit": "cubic"}), f"{_T}.fit", ()),
    ("sweep_x-unknown", "dict", mut("factor", {"sweep_x": "nope"}), f"{_T}.sweep_x", ()),
    (
        "reference-not-numbers",
        "dict",
        mut("factor", {"reference": {"n": ["a"]}}),
        f"{_T}.reference.n",
        (),
    ),
    (
        "target_job_seconds-study-negative",
        "dict",
        mut("factor", {"target_job_seconds": -1}),
        f"{_T}.target_job_seconds",
        (),
    ),
    (
        "target_job_seconds-top-0",
        "dict",
        mut("factor", {"/target_job_seconds": 0}),
        "target_job_seconds",
        (),
    ),
    # --- NaN and infinities (YAML .nan/.inf) anywhere
    ("nan-n", "yaml", TINY_TEXT + "    n: .nan\n", f"{_T}.n", ()),
    ("inf-alpha", "yaml", tiny_text("alpha: 2.0", "alpha: .inf"), f"{_T}.alpha", ()),
    ("minus-inf-alpha", "yaml", tiny_text("alpha: 2.0", "alpha: -.inf"), f"{_T}.alpha", ()),
    (
        "nan-population-value",
        "yaml",
        tiny_text("sigma_nu2: 0.5", "sigma_nu2: .nan"),
        f"{_T}.population.sigma_nu2",
        (),
    ),
    (
        "nan-population-list-entry",
        "yaml",
        tiny_text("[3.0, 1.0]", "[3.0, .nan]"),
        f"{_T}.population.factor_strengths",
        (),
    ),
    ("nan-grid-entry", "yaml", tiny_text("[50, 400]", "[50, .nan]"), f"{_T}.grid.n", ()),
    (
        "inf-grid-alpha",
        "yaml",
        tiny_text("{n: [50, 400]}", "{n: [50, 400], alpha: [.inf]}"),
        f"{_T}.grid.alpha",
        (),
    ),
    # --- structure: studies, study names, unknown keys
    ("studies-empty", "yaml", "studies: {}\n", "studies", ()),
    ("studies-null", "yaml", "studies:\n", "studies", ()),
    ("studies-key-missing", "yaml", "target_job_seconds: 5\n", "studies", ()),
    ("empty-file", "yaml", "# nothing here\n", "studies", ()),
    ("studies-a-list", "yaml", "studies: [tiny]\n", "studies", ()),
    ("study-not-a-mapping", "yaml", "studies: {tiny: 5}\n", _T, ()),
    ("study-a-list", "yaml", "studies: {tiny: [1, 2]}\n", _T, ()),
    ("study-null", "yaml", "studies: {tiny: null}\n", _T, ()),
    (
        "unknown-top-level-key",
        "dict",
        mut("factor", {"/stuides": {"x": 1}}),
        "stuides",
        (),
    ),
    ("unknown-study-key", "dict", mut("factor", {"replicats": 5}), f"{_T}.replicats", ()),
    (
        "unknown-population-key",
        "dict",
        mut("factor", {"population.dd": 3}),
        f"{_T}.population.dd",
        (),
    ),
    (
        "unknown-estimator-key-factor",
        "dict",
        mut("factor", {"estimator.gtol": 1e-3}),
        f"{_T}.estimator.gtol",
        (),
    ),
    ("population-not-a-mapping", "dict", mut("factor", {"population": 5}), f"{_T}.population", ()),
    (
        "study-name-starts-with-digit",
        "yaml",
        tiny_text("  tiny:", "  1abc:"),
        "studies.1abc",
        (),
    ),
    ("study-name-with-space", "yaml", tiny_text("  tiny:", "  a b:"), "studies.a b", ()),
    # --- repeated YAML keys: refused with the key path and both line numbers
    (
        "repeated-study-name",
        "yaml",
        TINY_TEXT + "  tiny:\n    case: factor\n",
        _T,
        (f"lines {_STUDY_LINE} and {_END}",),
    ),
    (
        "repeated-key-in-study",
        "yaml",
        TINY_TEXT + "    replicates: 5\n",
        f"{_T}.replicates",
        (f"lines {_REPLICATES_LINE} and {_END}",),
    ),
    (
        "repeated-key-in-flow-mapping",
        "yaml",
        tiny_text("{d: 6, k: 2,", "{d: 6, k: 2, d: 7,"),
        f"{_T}.population.d",
        (f"lines {_POPULATION_LINE} and {_POPULATION_LINE}",),
    ),
    (
        "repeated-top-level-key",
        "yaml",
        TINY_TEXT + "studies: {}\n",
        "studies",
        (f"lines 1 and {_END}",),
    ),
    (
        "key-with-a-newline",
        "yaml",
        tiny_text("{n: [50, 400]}", '{n: [50, 400], "a\\nb": [1]}'),
        Re(r"studies\.tiny\.grid\.\"?a\S*b\"?"),  # named on one line (the newline escaped)
        (),
    ),
    (
        "nan-under-key-with-a-newline",
        "yaml",
        tiny_text("sigma_nu2: 0.5}", 'sigma_nu2: 0.5, "a\\nb": .nan}'),
        Re(r"studies\.tiny\.population\.\"?a\S*b\"?"),  # one line: the newline escaped
        (),
    ),
    # --- grid
    ("grid-unknown-key", "dict", mut("factor", {"grid.nn": [100]}), f"{_T}.grid.nn", ()),
    ("grid-value-not-a-list", "dict", mut("factor", {"grid.n": 50}), f"{_T}.grid.n", ()),
    ("grid-value-a-mapping", "dict", mut("factor", {"grid.n": {"a": 1}}), f"{_T}.grid.n", ()),
    ("grid-empty-list", "dict", mut("factor", {"grid.n": []}), f"{_T}.grid.n", ()),
    ("grid-not-a-mapping", "dict", mut("factor", {"grid": [50, 400]}), f"{_T}.grid", ()),
    ("grid-duplicate-points", "dict", mut("factor", {"grid.n": [50, 50]}), f"{_T}.grid.n", ()),
    (
        "grid-duplicate-list-points",
        "dict",
        mut("factor", {"grid.factor_strengths": [[3, 1], [3.0, 1.0]]}),
        f"{_T}.grid.factor_strengths",
        (),
    ),
    (
        "grid-list-param-not-nested",
        "dict",
        mut("factor", {"grid.factor_strengths": [3.0, 1.0]}),
        f"{_T}.grid.factor_strengths",
        (),
    ),
    (
        "grid-too-big",
        "dict",
        mut(
            "factor",
            {"grid.n": list(range(100, 201)), "grid.alpha": [2.0 + i / 100 for i in range(100)]},
        ),
        f"{_T}.grid",
        ("10100",),
    ),
    (
        "too-many-jobs",
        "dict",
        mut("factor", {"replicates": 10**7, "shard_size": 1}),
        f"{_T}.shard_size",
        (),
    ),
    # --- factor: cross-key checks
    (
        "factor-k-ge-d",
        "dict",
        mut("factor", {"population.k": 6, "population.factor_strengths": [1.0] * 6}),
        f"{_T}.population.k",
        (),
    ),
    ("factor-k-0", "dict", mut("factor", {"population.k": 0}), f"{_T}.population.k", ()),
    ("factor-d-string", "dict", mut("factor", {"population.d": "six"}), f"{_T}.population.d", ()),
    (
        "factor-grid-k-ge-d",
        "dict",
        mut("factor", {"grid.k": [2, 6]}),
        f"{_T}.grid.k",
        (),
    ),
    (
        "factor-strengths-length",
        "dict",
        mut("factor", {"population.factor_strengths": [3.0, 1.0, 0.5]}),
        f"{_T}.population.factor_strengths",
        (),
    ),
    (
        "factor-strengths-zero",
        "dict",
        mut("factor", {"population.factor_strengths": [3.0, 0.0]}),
        f"{_T}.population.factor_strengths",
        (),
    ),
    (
        "factor-beta-length",
        "dict",
        mut("factor", {"population.beta": [1.0, 2.0, 3.0]}),
        f"{_T}.population.beta",
        (),
    ),
    (
        "factor-beta-strings",
        "dict",
        mut("factor", {"population.beta": ["a", "b"]}),
        f"{_T}.population.beta",
        (),
    ),
    (
        "factor-loadings-unknown",
        "dict",
        mut("factor", {"population.loadings": "weird"}),
        f"{_T}.population.loadings",
        (),
    ),
    # --- spectral
    ("spectral-k-ge-d", "dict", mut("spectral", {"population.k": 4}), f"{_P}.k", ()),
    (
        "spectral-beta-length",
        "dict",
        mut("spectral", {"population.beta": [1.0]}),
        f"{_P}.beta",
        (),
    ),
    (
        "spectral-block-key-with-concrete",
        "dict",
        mut("spectral", {"population.a": [1.0, 1.0]}),
        f"{_P}.a",
        (),
    ),
    (
        "spectral-block-diagonal-missing-b",
        "dict",
        mut(
            "spectral",
            {
                "population.instance": "block_diagonal",
                "population.a": [1.0, 1.0],
                "population.c": [0.9, 0.8],
                "population.e": [0.1, 0.1],
            },
        ),
        f"{_P}.b",
        (),
    ),
    (
        "spectral-block-diagonal-c-over-a",
        "dict",
        mut(
            "spectral",
            {
                "population.instance": "block_diagonal",
                "population.a": [1.0, 1.0],
                "population.b": [1.0, 1.0],
                "population.c": [2.0, 0.8],
                "population.e": [0.1, 0.1],
            },
        ),
        f"{_P}.c",
        (),
    ),
    (
        "spectral-instance-unknown",
        "dict",
        mut("spectral", {"population.instance": "abstract"}),
        f"{_P}.instance",
        (),
    ),
    (
        "spectral-n_starts-0",
        "dict",
        mut("spectral", {"estimator.n_starts": 0}),
        "studies.s.estimator.n_starts",
        (),
    ),
    (
        "spectral-gtol-0",
        "dict",
        mut("spectral", {"estimator.gtol": 0}),
        "studies.s.estimator.gtol",
        (),
    ),
    # --- gmm
    ("gmm-d-lt-K", "dict", mut("gmm", {"population.d": 1}), f"{_P}.d", ()),
    (
        "gmm-centers-shape",
        "dict",
        mut("gmm", {"population.centers": [[0.0, 0.0, 0.0], [1.0, 1.0]]}),
        f"{_P}.centers",
        (),
    ),
    (
        "gmm-centers-identical",
        "dict",
        mut("gmm", {"population.centers": [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]}),
        f"{_P}.centers",
        (),
    ),
    (
        "gmm-sampling-sufficient",
        "dict",
        mut("gmm", {"sampling": "sufficient"}),
        "studies.s.sampling",
        (),
    ),
    (
        "gmm-population_size-below-10K2",
        "dict",
        mut("gmm", {"population.K": 3, "population.d": 3, "population.population_size": 50}),
        f"{_P}.population_size",
        (),
    ),
    (
        "gmm-em_init-unknown",
        "dict",
        mut("gmm", {"estimator.em_init": "random"}),
        "studies.s.estimator.em_init",
        (),
    ),
    (
        "gmm-m-below-K",
        "dict",
        mut("gmm", {"n": 10, "alpha": 0.1}),
        "studies.s.alpha",
        (),
    ),
    # --- multitask
    ("multitask-k-ge-d", "dict", mut("multitask", {"population.k": 5}), f"{_P}.k", ()),
    (
        "multitask-tasks-shape",
        "dict",
        mut("multitask", {"population.tasks": [[1.0, 0.0], [0.0, 1.0]]}),
        f"{_P}.tasks",
        (),
    ),
    (
        "multitask-tasks-with-task_diversity",
        "dict",
        mut(
            "multitask",
            {
                "population.tasks": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
                "population.task_diversity": 0.5,
            },
        ),
        f"{_P}.task_diversity",
        (),
    ),
    (
        "multitask-tasks-singular",
        "dict",
        mut("multitask", {"population.tasks": [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]}),
        f"{_P}.tasks",
        (),
    ),
    (
        "multitask-n_tasks-below-k",
        "dict",
        mut("multitask", {"population.n_tasks": 1}),
        f"{_P}.n_tasks",
        (),
    ),
    (
        "multitask-task_diversity-above-1",
        "dict",
        mut("multitask", {"population.task_diversity": 1.5}),
        f"{_P}.task_diversity",
        (),
    ),
    (
        "multitask-method-unknown",
        "dict",
        mut("multitask", {"estimator.method": "sgd"}),
        "studies.s.estimator.method",
        (),
    ),
    # --- files
    ("yaml-unclosed-bracket", "yaml", "studies: [unclosed\n", None, ()),
    ("yaml-tab-indent", "yaml", "studies:\n\ttiny: {}\n", None, ()),
    ("yaml-bad-indent", "yaml", "studies:\n  tiny:\n    case: factor\n   seed: 3\n", None, ()),
    ("yaml-python-tag", "yaml", "studies: !!python/object:os.system {}\n", None, ()),
    ("yaml-top-level-list", "yaml", "- studies\n- tiny\n", None, ()),
    ("yaml-top-level-scalar", "yaml", "just some words\n", None, ()),
    ("file-not-utf8", "path", "binary", None, ()),
    ("file-missing", "path", "missing", None, ()),
    ("file-is-a-directory", "path", "directory", None, ("directory",)),
]


@pytest.mark.parametrize(
    ("kind", "payload", "expected", "needles"),
    [pytest.param(*case[1:], id=case[0]) for case in CONFIG_CASES],
)
def test_bad_config(tmp_path, kind, payload, expected, needles):
    path = tmp_path / "config.yaml"
    if kind == "dict":
        msg = raises_config_error(lambda: expand_config(validate_config(payload)))
    else:
        if kind == "yaml":
            path.write_text(payload)
        elif payload == "binary":
            path.write_bytes(b"\xff\xfe\x00studies: \x80\x81\n")
        elif payload == "directory":
            path.mkdir()
        msg = raises_config_error(lambda: expand_config(load_config(path)))
    assert "\n" not in msg, f"message is not one line:\n{msg}"
    if expected is None:
        assert str(path) in msg, f"the file {path} is not named: {msg}"
    else:
        assert_key_message(msg, expected)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"


def test_config_corpus_bases_are_valid():
    """Each mutated config differs from a valid one by the mutation only."""
    for case, cfg in BASES.items():
        points = expand_config(validate_config(cfg))
        assert points and all(p.case == case for pts in points.values() for p in pts)


# =========================================================================== 2. CLI calls

STAGE_SCRIPTS = (
    "simulate",
    "pretrain",
    "align",
    "downstream",
    "theory",
    "risk",
    "sweep",
    "figures",
    "errata",
)
MAINS = {
    name: runpy.run_path(str(SCRIPTS / f"{name}.py"), run_name="not_main")["main"]
    for name in STAGE_SCRIPTS
}
REPLICATES = 4


def _tiny_point() -> dict[str, Any]:
    cfg = load_config(TINY)
    point = expand_study("tiny", cfg["studies"]["tiny"])[0]
    return {**json.loads(point.to_json()), "replicates": REPLICATES}


POINT = _tiny_point()


def point_json(**changes: Any) -> str:
    """The tiny point (4 replicates) as --point JSON, with changes (DELETE removes)."""
    d = copy.deepcopy(POINT)
    for key, value in changes.items():
        if value is DELETE:
            d.pop(key)
        else:
            d[key] = value
    return json.dumps(d)


def _run_inprocess(name: str, argv: list[str]) -> int:
    try:
        cli.run(MAINS[name], argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        pytest.fail(f"traceback instead of one line: {type(exc).__name__}: {exc}")
    return 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    """Valid inputs of every stage, from the real chain on a tiny point (in-process)."""
    tmp = tmp_path_factory.mktemp("valid")
    f = {
        s: tmp / f"{s}.nc"
        for s in ("simulate", "pretrain", "align", "downstream", "theory", "risk", "thsum")
    }
    f["simulate_half"] = tmp / "simulate_half.nc"
    pj = point_json()
    steps = [
        ("simulate", ["--point", pj, "--out", str(f["simulate"])]),
        ("simulate", ["--point", pj, "--replicates", "0:2", "--out", str(f["simulate_half"])]),
        ("pretrain", ["--in", str(f["simulate"]), "--out", str(f["pretrain"])]),
        ("align", ["--in", str(f["pretrain"]), "--out", str(f["align"])]),
        (
            "downstream",
            [
                "--align",
                str(f["align"]),
                "--simulate",
                str(f["simulate"]),
                "--out",
                str(f["downstream"]),
            ],
        ),
        ("theory", ["--point", pj, "--out", str(f["theory"])]),
        (
            "risk",
            [
                "--downstream",
                str(f["downstream"]),
                "--theory",
                str(f["theory"]),
                "--ks-bootstrap",
                "5",
                "--out-risk",
                str(f["risk"]),
                "--out-theory",
                str(f["thsum"]),
            ],
        ),
    ]
    for name, argv in steps:
        assert _run_inprocess(name, argv) == 0, (name, argv)
    f["foreign"] = tmp / "foreign.nc"  # a valid netCDF file not written by twostage
    xr.Dataset({"x": ("i", np.arange(3.0))}).to_netcdf(f["foreign"], engine="h5netcdf")
    return f


def _placeholders(chain: dict[str, Path], work: Path) -> dict[str, str]:
    """Paths the CLI cases' arguments refer to: the valid inputs, bad inputs made in
    ``work`` and output paths in ``work``."""
    (work / "x.nc").write_text("this is not a netCDF file\n")
    (work / "trunc.nc").write_bytes(chain["simulate"].read_bytes()[:2000])
    (work / "adir.nc").mkdir()
    (work / "afile").write_text("a regular file\n")
    cfg_dir = work / "cfgdir.yaml"
    cfg_dir.mkdir()
    return {
        "sim": str(chain["simulate"]),
        "sim_half": str(chain["simulate_half"]),
        "foreign": str(chain["foreign"]),
        "pre": str(chain["pretrain"]),
        "al": str(chain["align"]),
        "down": str(chain["downstream"]),
        "th": str(chain["theory"]),
        "risk": str(chain["risk"]),
        "thsum": str(chain["thsum"]),
        "cfg": str(TINY),
        "cfgdir": str(cfg_dir),
        "pid": expand_study("tiny", load_config(TINY)["studies"]["tiny"])[0].point_id,
        "txt": str(work / "x.nc"),
        "trunc": str(work / "trunc.nc"),
        "missing": str(work / "missing.nc"),
        "dir": str(work / "adir.nc"),
        "file": str(work / "afile"),
        "out": str(work / "out.nc"),
        "out2": str(work / "out2.nc"),
        "outdir": str(work / "figs"),
        "csv": str(work / "table.csv"),
        "p": point_json(),
    }


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def A(*args: str) -> list[str]:  # noqa: N802 (short: argument lists of the corpus)
    return list(args)


#: (id, script, argv (with {placeholders}), needles that must appear in the error line; a
#: tuple of needles: any one of them)
CLI_CASES: list[tuple[str, str, list[str], list[str | tuple[str, ...]]]] = [
    # --- simulate: the point
    ("simulate-no-args", "simulate", A(), ["--out"]),
    ("simulate-no-point", "simulate", A("--out", "{out}"), ["--point"]),
    (
        "simulate-unknown-flag",
        "simulate",
        A("--point", "{p}", "--bogus", "--out", "{out}"),
        ["--bogus"],
    ),
    (
        "simulate-point-not-json",
        "simulate",
        A("--point", "{not json", "--out", "{out}"),
        ["--point"],
    ),
    ("simulate-point-json-list", "simulate", A("--point", "[1, 2]", "--out", "{out}"), ["--point"]),
    ("simulate-point-json-string", "simulate", A("--point", '"x"', "--out", "{out}"), ["--point"]),
    (
        "simulate-point-missing-keys",
        "simulate",
        A("--point", '{"case": "factor"}', "--out", "{out}"),
        ["--point"],
    ),
    (
        "simulate-point-unknown-case",
        "simulate",
        A("--point", point_json(case="nope"), "--out", "{out}"),
        ["point.case"],
    ),
    (
        "simulate-point-unknown-key",
        "simulate",
        A("--point", point_json(bogus=1), "--out", "{out}"),
        ["point.bogus"],
    ),
    (
        "simulate-point-m-disagrees",
        "simulate",
        A("--point", point_json(m=7), "--out", "{out}"),
        ["point.m"],
    ),
    (
        "simulate-point-with-grid",
        "simulate",
        A("--point", point_json(grid={"n": [50, 400]}), "--out", "{out}"),
        ["--point", "grid"],
    ),
    (
        "simulate-point-with-one-point-grid",
        "simulate",
        A("--point", point_json(grid={"n": [60]}), "--out", "{out}"),
        ["--point", "grid"],
    ),
    (
        "simulate-point-replicates-negative",
        "simulate",
        A("--point", point_json(replicates=-1), "--out", "{out}"),
        ["point.replicates"],
    ),
    (
        "simulate-point-zero-replicates",
        "simulate",
        A("--point", point_json(replicates=0), "--out", "{out}"),
        ["replicates"],
    ),
    (
        "simulate-point-study-not-string",
        "simulate",
        A("--point", point_json(study=5), "--out", "{out}"),
        ["--point"],
    ),
    (
        "simulate-point-bad-study-name",
        "simulate",
        A("--point", point_json(study="a b"), "--out", "{out}"),
        ["point.study"],
    ),
    (
        "simulate-point-nan-alpha",
        "simulate",
        A("--point", point_json(alpha=float("nan")), "--out", "{out}"),
        ["point.alpha"],
    ),
    (
        "simulate-point-and-config",
        "simulate",
        A("--point", "{p}", "--config", "{cfg}", "--study", "tiny", "--out", "{out}"),
        ["--point", "--config"],
    ),
    (
        "simulate-config-missing-file",
        "simulate",
        A("--config", "{missing}.yaml", "--study", "tiny", "--point-id", "{pid}", "--out", "{out}"),
        ["{missing}.yaml"],
    ),
    (
        "simulate-config-is-directory",
        "simulate",
        A("--config", "{cfgdir}", "--study", "tiny", "--point-id", "{pid}", "--out", "{out}"),
        ["{cfgdir}", "directory"],
    ),
    (
        "simulate-config-without-study",
        "simulate",
        A("--config", "{cfg}", "--point-id", "{pid}", "--out", "{out}"),
        ["--study"],
    ),
    (
        "simulate-study-not-in-config",
        "simulate",
        A("--config", "{cfg}", "--study", "nope", "--point-id", "{pid}", "--out", "{out}"),
        ["'nope'", "{cfg}"],
    ),
    (
        "simulate-point-id-unknown",
        "simulate",
        A("--config", "{cfg}", "--study", "tiny", "--point-id", "deadbeef0000", "--out", "{out}"),
        ["--point-id", "deadbeef0000"],
    ),
    (
        "simulate-point-id-missing",
        "simulate",
        A("--config", "{cfg}", "--study", "tiny", "--out", "{out}"),
        ["--point-id"],
    ),
    # --- simulate: --replicates
    (
        "simulate-replicates-5",
        "simulate",
        A("--point", "{p}", "--replicates", "5", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates-a:b",
        "simulate",
        A("--point", "{p}", "--replicates", "a:b", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates--5:3",
        "simulate",
        A("--point", "{p}", "--replicates", "-5:3", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates=-5:3",
        "simulate",
        A("--point", "{p}", "--replicates=-5:3", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates-3:2",
        "simulate",
        A("--point", "{p}", "--replicates", "3:2", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates-0:0",
        "simulate",
        A("--point", "{p}", "--replicates", "0:0", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates-0:1000000",
        "simulate",
        A("--point", "{p}", "--replicates", "0:1000000", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "simulate-replicates-1:2:3",
        "simulate",
        A("--point", "{p}", "--replicates", "1:2:3", "--out", "{out}"),
        ["--replicates"],
    ),
    # --- simulate: outputs
    (
        "simulate-out-not-nc",
        "simulate",
        A("--point", "{p}", "--out", "{file}.txt"),
        ["--out", ".nc"],
    ),
    (
        "simulate-out-is-directory",
        "simulate",
        A("--point", "{p}", "--out", "{dir}"),
        ["--out", "{dir}"],
    ),
    (
        "simulate-out-under-regular-file",
        "simulate",
        A("--point", "{p}", "--out", "{file}/sub/o.nc"),
        ["--out", "{file}"],
    ),
    # --- theory
    ("theory-point-empty-object", "theory", A("--point", "{}", "--out", "{out}"), ["--point"]),
    ("theory-missing-out", "theory", A("--point", "{p}"), ["--out"]),
    (
        "theory-unknown-flag-replicates",
        "theory",
        A("--point", "{p}", "--replicates", "0:2", "--out", "{out}"),
        ["--replicates"],
    ),
    (
        "theory-out-under-regular-file",
        "theory",
        A("--point", "{p}", "--out", "{file}/o.nc"),
        ["--out", "{file}"],
    ),
    (
        "theory-point-k-ge-d",
        "theory",
        A("--point", point_json(population={**POINT["population"], "k": 6}), "--out", "{out}"),
        ["point.population.k"],
    ),
    # --- pretrain
    ("pretrain-missing-in", "pretrain", A("--out", "{out}"), ["--in"]),
    (
        "pretrain-in-missing-file",
        "pretrain",
        A("--in", "{missing}", "--out", "{out}"),
        ["{missing}"],
    ),
    ("pretrain-in-text-file", "pretrain", A("--in", "{txt}", "--out", "{out}"), ["{txt}"]),
    ("pretrain-in-truncated", "pretrain", A("--in", "{trunc}", "--out", "{out}"), ["{trunc}"]),
    (
        "pretrain-in-directory",
        "pretrain",
        A("--in", "{dir}", "--out", "{out}"),
        ["{dir}", "directory"],
    ),
    (
        "pretrain-in-foreign-netcdf",
        "pretrain",
        A("--in", "{foreign}", "--out", "{out}"),
        ["{foreign}", "'simulate'"],
    ),
    (
        "pretrain-in-wrong-stage",
        "pretrain",
        A("--in", "{pre}", "--out", "{out}"),
        ["{pre}", "'simulate'"],
    ),
    ("pretrain-out-equals-in", "pretrain", A("--in", "{sim}", "--out", "{sim}"), ["--out", "--in"]),
    (
        "pretrain-out-is-directory",
        "pretrain",
        A("--in", "{sim}", "--out", "{dir}"),
        ["--out", "{dir}"],
    ),
    ("pretrain-out-not-nc", "pretrain", A("--in", "{sim}", "--out", "{csv}"), ["--out", ".nc"]),
    # --- align
    (
        "align-in-wrong-stage",
        "align",
        A("--in", "{sim}", "--out", "{out}"),
        ["{sim}", "'pretrain'"],
    ),
    ("align-in-missing-file", "align", A("--in", "{missing}", "--out", "{out}"), ["{missing}"]),
    (
        "align-out-under-regular-file",
        "align",
        A("--in", "{pre}", "--out", "{file}/o.nc"),
        ["--out", "{file}"],
    ),
    # --- downstream
    (
        "downstream-missing-align",
        "downstream",
        A("--simulate", "{sim}", "--out", "{out}"),
        ["--align"],
    ),
    (
        "downstream-align-wrong-stage",
        "downstream",
        A("--align", "{sim}", "--simulate", "{sim}", "--out", "{out}"),
        ["{sim}", "'align'"],
    ),
    (
        "downstream-simulate-wrong-stage",
        "downstream",
        A("--align", "{al}", "--simulate", "{al}", "--out", "{out}"),
        ["{al}", "'simulate'"],
    ),
    (
        "downstream-simulate-missing-file",
        "downstream",
        A("--align", "{al}", "--simulate", "{missing}", "--out", "{out}"),
        ["{missing}"],
    ),
    (
        "downstream-simulate-truncated",
        "downstream",
        A("--align", "{al}", "--simulate", "{trunc}", "--out", "{out}"),
        ["{trunc}"],
    ),
    (
        "downstream-out-equals-simulate",
        "downstream",
        A("--align", "{al}", "--simulate", "{sim}", "--out", "{sim}"),
        ["--out", "--simulate"],
    ),
    (
        "downstream-shards-mismatch",
        "downstream",
        A("--align", "{al}", "--simulate", "{sim_half}", "--out", "{out}"),
        [("--simulate", "{sim_half}")],
    ),
    # --- risk
    (
        "risk-out-risk-equals-out-theory",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{th}",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out}",
        ),
        ["--out-risk", "--out-theory"],
    ),
    (
        "risk-ks-bootstrap-negative",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{th}",
            "--ks-bootstrap",
            "-1",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out2}",
        ),
        ["--ks-bootstrap"],
    ),
    (
        "risk-ks-bootstrap-not-int",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{th}",
            "--ks-bootstrap",
            "many",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out2}",
        ),
        ["--ks-bootstrap"],
    ),
    (
        "risk-p-var-tolerance-0",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{th}",
            "--p-var-tolerance",
            "0",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out2}",
        ),
        ["--p-var-tolerance"],
    ),
    (
        "risk-p-var-tolerance-nan",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{th}",
            "--p-var-tolerance",
            "nan",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out2}",
        ),
        ["--p-var-tolerance"],
    ),
    (
        "risk-downstream-wrong-stage",
        "risk",
        A(
            "--downstream",
            "{th}",
            "--theory",
            "{th}",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out2}",
        ),
        ["{th}", "'downstream'"],
    ),
    (
        "risk-theory-wrong-stage",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{down}",
            "--out-risk",
            "{out}",
            "--out-theory",
            "{out2}",
        ),
        ["{down}", "'theory'"],
    ),
    (
        "risk-out-risk-equals-input",
        "risk",
        A(
            "--downstream",
            "{down}",
            "--theory",
            "{th}",
            "--out-risk",
            "{down}",
            "--out-theory",
            "{out2}",
        ),
        ["--out-risk", "--downstream"],
    ),
    (
        "risk-missing-theory",
        "risk",
        A("--downstream", "{down}", "--out-risk", "{out}", "--out-theory", "{out2}"),
        ["--theory"],
    ),
    # --- sweep
    (
        "sweep-fit-unknown",
        "sweep",
        A("--theory", "{th}", "--fit", "cubic", "--out", "{out}"),
        ["--fit"],
    ),
    (
        "sweep-theory-wrong-stage",
        "sweep",
        A("--theory", "{sim}", "--out", "{out}"),
        ["{sim}", "'theory'"],
    ),
    (
        "sweep-out-equals-theory",
        "sweep",
        A("--theory", "{th}", "--out", "{th}"),
        ["--out", "--theory"],
    ),
    ("sweep-x-unknown", "sweep", A("--theory", "{th}", "--x", "nope", "--out", "{out}"), ["--x"]),
    # --- figures
    (
        "figures-risk-without-theory",
        "figures",
        A("--risk", "{risk}", "--outdir", "{outdir}"),
        ["--theory"],
    ),
    (
        "figures-max-panels-0",
        "figures",
        A("--risk", "{risk}", "--theory", "{thsum}", "--max-panels", "0", "--outdir", "{outdir}"),
        ["--max-panels"],
    ),
    (
        "figures-reference-not-json",
        "figures",
        A("--risk", "{risk}", "--theory", "{thsum}", "--reference", "{bad", "--outdir", "{outdir}"),
        ["--reference"],
    ),
    (
        "figures-outdir-under-regular-file",
        "figures",
        A("--risk", "{risk}", "--theory", "{thsum}", "--outdir", "{file}/figs"),
        ["--outdir", "{file}"],
    ),
    (
        "figures-risk-wrong-stage",
        "figures",
        A("--risk", "{thsum}", "--theory", "{thsum}", "--outdir", "{outdir}"),
        ["{thsum}", "'risk'"],
    ),
    (
        "figures-x-unknown",
        "figures",
        A("--risk", "{risk}", "--theory", "{thsum}", "--x", "nope", "--outdir", "{outdir}"),
        ["--x"],
    ),
    (
        "figures-table-not-csv",
        "figures",
        A(
            "--risk",
            "{risk}",
            "--theory",
            "{thsum}",
            "--outdir",
            "{outdir}",
            "--table",
            "{file}.txt",
        ),
        ["--table"],
    ),
    # --- errata
    (
        "errata-out-not-csv",
        "errata",
        A("--risk", "{risk}", "--theory", "{thsum}", "--out", "{file}.txt"),
        ["--out"],
    ),
    ("errata-missing-out", "errata", A("--risk", "{risk}", "--theory", "{thsum}"), ["--out"]),
    (
        "errata-references-not-json",
        "errata",
        A("--risk", "{risk}", "--theory", "{thsum}", "--references", "{bad", "--out", "{csv}"),
        ["--references"],
    ),
    ("errata-risk-without-theory", "errata", A("--risk", "{risk}", "--out", "{csv}"), ["--theory"]),
    (
        "errata-risk-wrong-stage",
        "errata",
        A("--risk", "{down}", "--theory", "{thsum}", "--out", "{csv}"),
        ["{down}", "'risk'"],
    ),
    (
        "errata-sweep-wrong-stage",
        "errata",
        A("--sweep", "{risk}", "--out", "{csv}"),
        ["{risk}", "'sweep'"],
    ),
]


def _fill(item: str, ph: dict[str, str]) -> str:
    for key, value in ph.items():
        item = item.replace("{" + key + "}", value)
    return item


def _expand(items: list, ph: dict[str, str]) -> list:
    """Fill the {placeholders} of ``items`` (JSON and other literal braces kept); a tuple
    (alternative needles) is filled item by item."""
    return [_fill(i, ph) if isinstance(i, str) else tuple(_fill(a, ph) for a in i) for i in items]


def _check_cli_failure(
    code: int, stderr: str, needles: list[str], work: Path, before: dict, inputs: dict
) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit status {code} (expected 2); stderr:\n{stderr}"
    assert len(lines) == 1, f"expected one line on stderr; got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("error:"), line
    for needle in needles:  # a tuple: any of its alternatives
        alternatives = (needle,) if isinstance(needle, str) else needle
        assert any(a in line for a in alternatives), f"{needle!r} not named in: {line}"
    after = _tree(work)
    new = sorted(set(after) - set(before))
    assert not new, f"output written despite the error: {new}"
    assert _tree(inputs["dir"]) == inputs["tree"], "an input file was changed"
    return line


@pytest.fixture
def cli_work(chain, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    ph = _placeholders(chain, work)
    folder = chain["simulate"].parent
    return work, ph, {"dir": folder, "tree": _tree(folder)}


@pytest.mark.parametrize(
    ("script", "argv", "needles"),
    [pytest.param(*case[1:], id=case[0]) for case in CLI_CASES],
)
def test_bad_cli(cli_work, capsys, script, argv, needles):
    work, ph, inputs = cli_work
    before = _tree(work)
    capsys.readouterr()
    code = _run_inprocess(script, _expand(argv, ph))
    err = capsys.readouterr().err
    _check_cli_failure(code, err, _expand(needles, ph), work, before, inputs)


#: CLI cases also run as real subprocesses: same exit status and same line as in-process.
SUBPROCESS_IDS = (
    "simulate-point-not-json",
    "simulate-replicates-3:2",
    "pretrain-in-wrong-stage",
    "risk-out-risk-equals-out-theory",
    "theory-out-under-regular-file",
)


@pytest.mark.parametrize(
    ("script", "argv", "needles"),
    [pytest.param(*case[1:], id=case[0]) for case in CLI_CASES if case[0] in SUBPROCESS_IDS],
)
def test_bad_cli_subprocess(cli_work, capsys, script, argv, needles):
    work, ph, inputs = cli_work
    args = _expand(argv, ph)
    before = _tree(work)
    res = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{script}.py"), *args],
        capture_output=True,
        text=True,
        env=_env(),
    )
    line = _check_cli_failure(
        res.returncode, res.stderr, _expand(needles, ph), work, before, inputs
    )
    capsys.readouterr()
    code = _run_inprocess(script, args)
    err = capsys.readouterr().err
    assert (code, err.strip()) == (res.returncode, line), "in-process differs from the script"


# =========================================================================== 3. API calls


def _rp(*args: Any, **kw: Any) -> Callable[[Path], Any]:
    from twostage import run_point

    kw.setdefault("ks_bootstrap", 0)
    return lambda tmp: run_point(*args, **kw)


def _rs(*args: Any, **kw: Any) -> Callable[[Path], Any]:
    from twostage.api import run_study

    return lambda tmp: run_study(*args, **kw)


SMALL = {"d": 6, "k": 2, "factor_strengths": [3.0, 1.0], "n": 50, "alpha": 2.0}
STUDY = {
    "case": "factor",
    "replicates": 2,
    "population": {"d": 6, "k": 2, "factor_strengths": [3, 1]},
}

#: (id, call taking a tmp folder, acceptable last components of the quoted key path;
#: '<config>' accepts a whole-config message starting with "config")
API_CASES: list[tuple[str, Callable[[Path], Any], tuple[str, ...]]] = [
    ("run_point-unknown-case", _rp("nope", SMALL), ("case",)),
    ("run_point-case-int", _rp(3, SMALL), ("case",)),
    ("run_point-case-none", _rp(None, SMALL), ("case",)),
    ("run_point-unknown-param", _rp("factor", {**SMALL, "bogus": 1}), ("bogus",)),
    ("run_point-params-list", _rp("factor", [("n", 50)]), ("params",)),
    ("run_point-params-string", _rp("factor", "n=50"), ("params",)),
    ("run_point-params-int-key", _rp("factor", {**SMALL, 3: 1}), ("params", "3")),
    ("run_point-replicates-0", _rp("factor", SMALL, replicates=0), ("replicates",)),
    ("run_point-replicates-negative", _rp("factor", SMALL, replicates=-1), ("replicates",)),
    ("run_point-replicates-float", _rp("factor", SMALL, replicates=1.5), ("replicates",)),
    ("run_point-replicates-string", _rp("factor", SMALL, replicates="10"), ("replicates",)),
    ("run_point-replicates-bool", _rp("factor", SMALL, replicates=True), ("replicates",)),
    ("run_point-alpha-nan", _rp("factor", {**SMALL, "alpha": float("nan")}), ("alpha",)),
    ("run_point-alpha-np-nan", _rp("factor", {**SMALL, "alpha": np.float64("nan")}), ("alpha",)),
    ("run_point-n-inf", _rp("factor", {**SMALL, "n": float("inf")}), ("n",)),
    ("run_point-alpha-0", _rp("factor", {**SMALL, "alpha": 0}), ("alpha",)),
    ("run_point-seed-2**40", _rp("factor", SMALL, seed=2**40), ("seed",)),
    ("run_point-seed-negative", _rp("factor", SMALL, seed=-1), ("seed",)),
    ("run_point-sampling-unknown", _rp("factor", SMALL, sampling="exact"), ("sampling",)),
    ("run_point-d-string", _rp("factor", {**SMALL, "d": "six"}), ("d",)),
    ("run_point-k-ge-d", _rp("factor", {**SMALL, "k": 6, "factor_strengths": [1] * 6}), ("k",)),
    ("run_point-m-below-k", _rp("factor", {**SMALL, "n": 10, "alpha": 0.1}), ("alpha",)),
    ("run_point-ks_bootstrap-negative", _rp("factor", SMALL, ks_bootstrap=-1), ("ks_bootstrap",)),
    ("run_point-p_var_tolerance-0", _rp("factor", SMALL, p_var_tolerance=0), ("p_var_tolerance",)),
    ("run_point-study-name-bad", _rp("factor", SMALL, study="a b"), ("study", "a b")),
    ("run_point-gmm-d-lt-K", _rp("gmm", {"K": 4, "d": 2}), ("d",)),
    ("run_study-list", _rs([1, 2]), ("study", "notebook")),
    ("run_study-string", _rs("factor"), ("study", "notebook")),
    ("run_study-none", _rs(None), ("study", "notebook")),
    ("run_study-grid-empty-list", _rs({**STUDY, "grid": {"n": []}}), ("n",)),
    ("run_study-grid-nan", _rs({**STUDY, "grid": {"n": [50, float("nan")]}}), ("n",)),
    ("run_study-grid-duplicates", _rs({**STUDY, "grid": {"n": [50, 50]}}), ("n",)),
    ("run_study-replicates-0", _rs({**STUDY, "replicates": 0}), ("replicates",)),
    ("run_study-case-missing", _rs({"grid": {"n": [50]}}), ("case",)),
    ("run_study-name-bad", _rs(STUDY, name="1abc"), ("name", "1abc")),
    ("validate_config-list", lambda tmp: validate_config([1]), ("<config>",)),
    ("validate_config-none", lambda tmp: validate_config(None), ("<config>",)),
    ("validate_config-string", lambda tmp: validate_config("studies: {}"), ("<config>",)),
    (
        "validate_config-np-nan",
        lambda tmp: validate_config({"studies": {"s": {**STUDY, "alpha": np.float64("nan")}}}),
        ("alpha",),
    ),
    ("load_config-none", lambda tmp: load_config(None), ("<config>",)),
    ("load_config-directory", lambda tmp: load_config(tmp), ("<config>",)),
    ("expand_study-not-a-mapping", lambda tmp: expand_study("s", [1]), ("s",)),
    (
        "expand_study-alpha-string",
        lambda tmp: expand_study("s", {**STUDY, "alpha": "2"}),
        ("alpha",),
    ),
    (
        "expand_study-target_job_seconds-negative",
        lambda tmp: expand_study("s", {**STUDY, "shard_size": "auto"}, target_job_seconds=-1),
        ("target_job_seconds",),
    ),
    ("expand_study-name-bad", lambda tmp: expand_study("1 bad", STUDY), ("name", "1 bad")),
]


@pytest.mark.parametrize(
    ("call", "endings"), [pytest.param(*case[1:], id=case[0]) for case in API_CASES]
)
def test_bad_api(tmp_path, call, endings):
    msg = raises_config_error(lambda: call(tmp_path))
    assert "\n" not in msg, f"message is not one line:\n{msg}"
    match = re.match(r"invalid config key '([^']*)'", msg)
    if match is None:
        assert "<config>" in endings and msg.startswith("config"), (
            f"expected \"invalid config key '...{endings[0]}'\"; got: {msg}"
        )
        return
    path = re.sub(r"(\[\d+\])+$", "", match.group(1))
    assert any(path == e or path.endswith("." + e) for e in endings), (
        f"expected a key path ending in {' or '.join(endings)}; got: {msg}"
    )


def test_api_accepts_numpy_scalars():
    """numpy scalars and arrays are taken as the numbers they hold (positive test)."""
    from twostage import run_point

    plain = run_point("factor", SMALL, replicates=2, seed=7, ks_bootstrap=0)
    numpy = run_point(
        "factor",
        {
            "d": np.int64(6),
            "k": np.int64(2),
            "factor_strengths": np.array([3.0, 1.0]),
            "n": np.int64(50),
            "alpha": np.float64(2.0),
        },
        replicates=np.int64(2),
        seed=np.int64(7),
        ks_bootstrap=np.int64(0),
    )
    for key in ("downstream", "risk"):
        np.testing.assert_array_equal(
            numpy[key]["scaled_excess_risk"].values, plain[key]["scaled_excess_risk"].values
        )


def test_config_accepts_numpy_scalars():
    plain = expand_config(validate_config({"studies": {"s": STUDY}}))
    cfg = {
        "studies": {
            "s": {
                "case": "factor",
                "replicates": np.int64(2),
                "seed": np.uint32(20260),
                "population": {
                    "d": np.int32(6),
                    "k": np.int64(2),
                    "factor_strengths": np.array([3, 1]),
                },
                "alpha": np.float32(2.0),
                "grid": {"n": np.array([1000])},
            }
        }
    }
    points = expand_config(validate_config(cfg))
    assert [p.point_id for p in points["s"]] == [p.point_id for p in plain["s"]]
    assert points["s"][0].replicates == 2 and type(points["s"][0].replicates) is int


# =========================================================================== property test


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, sub in node.items():
            out += _paths(sub, (*prefix, key))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            out += _paths(sub, (*prefix, i))
    return out


TINY_PATHS = _paths(TINY_CFG)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 1, 2, 3, 10**7, 10**7 + 1, 2**32, 2**63, -(2**63), 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["", "auto", "factor", "spectral", "gmm", "multitask", "raw", "sufficient"])
    | st.text(max_size=8)
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
mutations = st.lists(
    st.tuples(
        st.sampled_from(TINY_PATHS),
        st.sampled_from(["replace", "delete", "add"]),
        json_values,
        st.text(max_size=6) | st.integers(-3, 3),
    ),
    min_size=1,
    max_size=3,
)


def _mutate(cfg: dict[str, Any], path: tuple, action: str, value: Any, new_key: Any) -> None:
    node: Any = cfg
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed this path
    last = path[-1]
    try:
        if action == "replace":
            node[last] = value
        elif action == "delete":
            del node[last]
        elif isinstance(node[last], dict):
            node[last][new_key] = value
        elif isinstance(node[last], list):
            node[last].append(value)
        else:
            node[last] = value
    except (KeyError, IndexError, TypeError):
        return


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(mutations)
def test_config_mutations_validate_or_raise_one_line(muts):
    cfg = copy.deepcopy(TINY_CFG)
    for mutation in muts:
        _mutate(cfg, *mutation)
    try:
        points = expand_config(validate_config(cfg))
    except ConfigError as exc:
        msg = str(exc)
        assert "\n" not in msg, msg
        assert msg.startswith(("invalid config key", "config")), msg
        return
    except Exception as exc:
        pytest.fail(f"{type(exc).__name__} instead of ConfigError for {cfg!r}: {exc}")
    for pts in points.values():
        assert pts
        for p in pts:
            assert type(p.n) is int and p.n >= 1 and p.m >= 1, p
            assert math.isfinite(p.alpha) and p.alpha > 0, p
            assert type(p.replicates) is int and 0 <= p.replicates <= 10**7, p
            assert type(p.seed) is int and 0 <= p.seed < 2**32, p


# =========================================================================== Snakemake

SNAKEMAKE_CASES = [
    pytest.param("studies: {}\n", "studies", (), id="studies-empty"),
    pytest.param(
        TINY_TEXT + "  tiny:\n    case: factor\n",
        "studies.tiny",
        (f"lines {_STUDY_LINE} and {_END}",),
        id="repeated-study",
    ),
    pytest.param(
        tiny_text("[50, 400]", "[50, .nan]"), "studies.tiny.grid.n", ("finite",), id="nan-in-grid"
    ),
]


@pytest.fixture(scope="module")
def snakemake_env(tmp_path_factory) -> dict[str, str]:
    """This interpreter's bin first on PATH, and an ``scontrol`` that fails at once: the
    SLURM executor plugin runs ``scontrol show config`` when Snakemake imports it, which
    waits ~10 s for a controller on a machine with the SLURM client but no cluster."""
    shim = tmp_path_factory.mktemp("shim")
    fake = shim / "scontrol"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    e = _env()
    e["PATH"] = f"{shim}{os.pathsep}{e['PATH']}"
    return e


@pytest.mark.workflow
@pytest.mark.parametrize(("text", "expected", "needles"), SNAKEMAKE_CASES)
def test_bad_config_snakemake(tmp_path, snakemake_env, text, expected, needles):
    exe = shutil.which("snakemake", path=snakemake_env["PATH"])
    assert exe, "snakemake is not installed in this environment"
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    work = tmp_path / "run"
    work.mkdir()
    res = subprocess.run(
        [
            exe,
            "-n",
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(work),
            "--configfile",
            str(bad),
        ],
        capture_output=True,
        text=True,
        env=snakemake_env,
        cwd=ROOT,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    lines = [line for line in out.splitlines() if "invalid config key" in line]
    assert lines, out[-3000:]
    assert re.search(rf"invalid config key '{re.escape(expected)}(\[\d+\])*'", lines[0]), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (work / "results").exists()


def test_corpus_size():
    """The module docstring's counts are those of the corpus."""
    doc = __doc__ or ""
    counts = {
        "configs": len(CONFIG_CASES),
        "CLI calls": len(CLI_CASES),
        "API calls": len(API_CASES),
    }
    for kind, n in counts.items():
        assert f"{kind}: {n} " in doc, (kind, n)
    assert len(CONFIG_CASES) >= 60 and len(CLI_CASES) >= 40 and len(API_CASES) >= 20
    total = sum(counts.values()) + len(SNAKEMAKE_CASES)
    assert f"Total: {total} bad inputs" in doc, total
    ids = [c[0] for c in CONFIG_CASES] + [c[0] for c in CLI_CASES] + [c[0] for c in API_CASES]
    assert len(ids) == len(set(ids)), "ids must be unique"
