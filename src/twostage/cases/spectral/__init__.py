"""Linear spectral (contrastive) pre-training (paper section 6.1, Appendix H)."""

from __future__ import annotations

from .case import SpectralPretraining

CASE = SpectralPretraining()

__all__ = ["CASE", "SpectralPretraining"]
