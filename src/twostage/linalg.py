"""Batched linear algebra on stacks of matrices (leading axes are replicates)."""

from __future__ import annotations

import numpy as np


def sym(a: np.ndarray) -> np.ndarray:
    """Symmetric part of each matrix in a stack."""
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def rank_tolerance(eigenvalues: np.ndarray, size: int) -> np.ndarray:
    """numpy's default rank tolerance ``size * eps * max|lambda|``, per matrix."""
    return size * np.finfo(float).eps * np.max(np.abs(eigenvalues), axis=-1, keepdims=True)


def pinv_psd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moore-Penrose pseudo-inverse and rank of each symmetric PSD matrix of a stack.

    Eigenvalues below ``size * eps * max eigenvalue`` are treated as zero (numpy's default
    rank tolerance), so the pseudo-inverse and the rank are consistent: the min-norm
    least-squares solution uses exactly the directions counted in the rank.

    Parameters
    ----------
    a : ndarray of shape (..., p, p)

    Returns
    -------
    pinv : ndarray of shape (..., p, p)
    rank : ndarray of int, shape (...)
    """
    w, v = np.linalg.eigh(sym(a))
    keep = w > rank_tolerance(w, a.shape[-1])
    inv = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
    return (v * inv[..., None, :]) @ np.swapaxes(v, -1, -2), keep.sum(axis=-1)


def eigh_descending(a: np.ndarray, top: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of symmetric matrices with eigenvalues in decreasing order and a
    deterministic sign: the largest-magnitude entry of every eigenvector is positive
    (the convention of scikit-learn's ``svd_flip``). With ``top``, only the ``top``
    leading eigenvectors are returned (all eigenvalues are)."""
    w, v = np.linalg.eigh(sym(a))
    w = w[..., ::-1]
    v = v[..., ::-1] if top is None else v[..., : -top - 1 : -1]
    idx = np.argmax(np.abs(v), axis=-2)[..., None, :]
    signs = np.sign(np.take_along_axis(v, idx, axis=-2))
    signs[signs == 0] = 1.0
    return w, v * signs


def psd_sqrt(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (negative round-off eigenvalues clipped)."""
    w, v = np.linalg.eigh(sym(a))
    return (v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(v, -1, -2)
