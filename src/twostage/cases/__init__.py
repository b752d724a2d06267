"""Case studies. A new case study is one module here plus one line in :data:`REGISTRY`."""

from __future__ import annotations

from ..errors import ConfigError
from ._base import CaseStudy
from .factor import FactorModel
from .gmm import GaussianMixture
from .spectral import SpectralPretraining

REGISTRY: dict[str, type[CaseStudy]] = {
    FactorModel.name: FactorModel,
    SpectralPretraining.name: SpectralPretraining,
    GaussianMixture.name: GaussianMixture,
}


def get_case(name: str) -> type[CaseStudy]:
    """The case-study class registered under ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown case study {name!r}; expected one of {sorted(REGISTRY)}"
        ) from None


__all__ = [
    "REGISTRY",
    "CaseStudy",
    "FactorModel",
    "GaussianMixture",
    "SpectralPretraining",
    "get_case",
]
