"""twostage: simulation studies of self-supervised pre-training followed by fine-tuning.

Reference: Tinati & Tu, "On the Asymptotics of Self-Supervised Pre-training: Two-Stage
M-Estimation and Representation Symmetry", COLT 2026.
"""

from __future__ import annotations

from ._version import __version__
from .api import run_point
from .cases import REGISTRY, get_case
from .config import Point, expand_config, load_config, validate_config
from .gchisq import GeneralizedChiSquare

__all__ = [
    "REGISTRY",
    "GeneralizedChiSquare",
    "Point",
    "__version__",
    "expand_config",
    "get_case",
    "load_config",
    "run_point",
    "validate_config",
]
