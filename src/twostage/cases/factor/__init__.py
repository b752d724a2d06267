"""Factor model with probabilistic-PCA pre-training (paper section 6.2, Appendix I)."""

from __future__ import annotations

from .case import FactorModel, features, population_residual

CASE = FactorModel()

__all__ = ["CASE", "FactorModel", "features", "population_residual"]
