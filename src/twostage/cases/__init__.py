"""Case studies: one folder each under ``twostage/cases``, registered here by one line.

A folder ``cases/<name>/`` holds the case (a :class:`CaseStudy` subclass, instantiated as
``CASE`` in the folder's ``__init__``), its schema fragment ``schema.yaml`` and optionally
its cluster cost model ``costs.yaml``. Cases are imported on first use, so reading the
configuration schema does not import any case's science.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..yamlload import safe_load
from ._base import Bound, CaseStudy, ClosedForm, Output, Outputs

#: registry name -> folder of twostage/cases (one line per case study)
REGISTRY: dict[str, str] = {
    "factor": "factor",
    "spectral": "spectral",
    "gmm": "gmm",
    "multitask": "multitask",
}

_HERE = Path(__file__).resolve().parent


def _folder(name: str) -> str:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown case study {name!r}; expected one of {sorted(REGISTRY)}"
        ) from None


@cache
def _load(folder: str) -> CaseStudy:
    case = importlib.import_module(f"{__name__}.{folder}").CASE
    if not isinstance(case, CaseStudy):
        raise TypeError(f"twostage.cases.{folder}.CASE is not a CaseStudy instance")
    return case


def get_case(name: str) -> CaseStudy:
    """The case study registered under ``name`` (imported on first use)."""
    return _load(_folder(name))


@cache
def _fragment(folder: str) -> dict[str, Any]:
    with open(_HERE / folder / "schema.yaml") as fh:
        return safe_load(fh)


def fragment(name: str) -> dict[str, Any]:
    """The schema fragment of a case (``cases/<name>/schema.yaml``): ``description``,
    ``sampling`` (allowed values and default), ``population`` and ``estimator`` (JSON
    schemas of objects whose properties each carry a type, a range, a description and a
    default)."""
    return _fragment(_folder(name))


def costs(name: str) -> dict[str, Any]:
    """The case's cluster cost model (``cases/<name>/costs.yaml``), or {} when it has none."""
    path = _HERE / _folder(name) / "costs.yaml"
    if not path.is_file():
        return {}
    with open(path) as fh:
        return safe_load(fh) or {}


__all__ = [
    "REGISTRY",
    "Bound",
    "CaseStudy",
    "ClosedForm",
    "Output",
    "Outputs",
    "costs",
    "fragment",
    "get_case",
]
