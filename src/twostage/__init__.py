"""twostage: simulation studies of self-supervised pre-training followed by fine-tuning.

Reference: Tinati & Tu, "On the Asymptotics of Self-Supervised Pre-training: Two-Stage
M-Estimation and Representation Symmetry", COLT 2026.

The public names are imported on first use (PEP 562), so that a stage script that only
parses its arguments, or uses one submodule, does not pay for the others' imports.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

#: public name -> submodule defining it
_LAZY = {
    "run_point": "api",
    "run_study": "api",
    "REGISTRY": "cases",
    "get_case": "cases",
    "Point": "config",
    "expand_config": "config",
    "load_config": "config",
    "validate_config": "config",
    "GeneralizedChiSquare": "gchisq",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'twostage' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
