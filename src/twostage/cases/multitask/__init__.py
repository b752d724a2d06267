"""Supervised multi-task pre-training of a shared linear representation (method of moments
and ERM), the setting of Du et al. (ICLR 2021) and Tripuraneni et al. (ICML 2021)."""

from __future__ import annotations

from .case import MultiTask

CASE = MultiTask()

__all__ = ["CASE", "MultiTask"]
