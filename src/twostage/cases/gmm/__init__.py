"""Gaussian mixture with subspace-aware gating (paper section 6.3, Appendices J and K)."""

from __future__ import annotations

from .case import GaussianMixture

CASE = GaussianMixture()

__all__ = ["CASE", "GaussianMixture"]
