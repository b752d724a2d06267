"""Spectral case: the positive-pair coupling, chunked draws and the sufficient statistics.

``x ~ N(0, Sigma_pre)``; a positive view ``x+`` with ``Cov(x+) = Sigma_pre`` and
``E[x+ x^T] = Sigma_plus`` by the Gaussian coupling in whitened coordinates
``z = Sigma^{-1/2} x``: ``z+ = Ct z + (I - Ct^2)^{1/2} xi``, ``Ct = Sigma^{-1/2} Sigma_plus
Sigma^{-1/2}`` (the paper does not say how pairs are generated); an independent negative
``x-``. The empirical loss depends on the data only through ``S+ = sym(mean x x+^T)`` and
``T = mean (x x^T) kron (x- x-^T)`` (d^2 x d^2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ...linalg import psd_sqrt, sym

#: Rows of raw samples processed (and drawn) at once; fixed, so that draws do not depend
#: on it changing between runs (never change it: results depend on it).
CHUNK = 4096


# ---------------------------------------------------------------------------- instance
def instance_blocks(params: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """Diagonals ``(a, b, c, e)`` of Sigma_pre = diag(a, b) and Sigma_plus = diag(c, e)."""
    d, k = int(params["d"]), int(params["k"])
    if params.get("instance", "concrete") == "concrete":
        inv = 1.0 / np.arange(1, d + 1)
        return np.ones(k), np.ones(d - k), inv[:k], inv[k:]
    return tuple(np.asarray(params[key], dtype=float) for key in ("a", "b", "c", "e"))


def _coupling(
    sigma_pre: np.ndarray, sigma_plus: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """``(Sigma^{1/2}, Ct, (I - Ct^2)^{1/2}, diagonal)``; for diagonal inputs the three
    matrices are returned as their diagonals (then exact: sqrt of each entry)."""
    if (
        np.count_nonzero(sigma_pre - np.diag(np.diag(sigma_pre))) == 0
        and np.count_nonzero(sigma_plus - np.diag(np.diag(sigma_plus))) == 0
    ):
        s, sp = np.diag(sigma_pre), np.diag(sigma_plus)
        ct = sp / s
        return np.sqrt(s), ct, np.sqrt(np.clip(1.0 - ct**2, 0.0, None)), True
    root = psd_sqrt(sigma_pre)
    root_inv = np.linalg.inv(root)
    ct = sym(root_inv @ sigma_plus @ root_inv)
    return root, ct, psd_sqrt(np.eye(len(ct)) - ct @ ct), False


def _draw_chunks(
    rng: np.random.Generator, size: int, coupling: tuple
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pre-training samples ``(x, x+, x-)`` in chunks of :data:`CHUNK` rows.

    Per chunk the stream gives z, then xi, then z- (standard normal, rows x d), and
    ``x = Sigma^{1/2} z``, ``x+ = Sigma^{1/2} (Ct z + (I - Ct^2)^{1/2} xi)``,
    ``x- = Sigma^{1/2} z-``. For the concrete instance ``x+ = C x + (I - C^2)^{1/2} xi``.
    """
    root, ct, noise, diagonal = coupling
    d = len(root)
    for start in range(0, size, CHUNK):
        rows = min(CHUNK, size - start)
        z = rng.standard_normal((rows, d))
        xi = rng.standard_normal((rows, d))
        zm = rng.standard_normal((rows, d))
        if diagonal:
            yield z * root, (z * ct + xi * noise) * root, zm * root
        else:
            yield z @ root, (z @ ct + xi @ noise) @ root, zm @ root


def _accumulate(
    chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, d: int
) -> tuple[np.ndarray, np.ndarray]:
    """``S+ = sym(mean x x+^T)`` and ``T = mean u u^T``, ``u = x kron x-`` (row-major),
    so that ``vec(M)^T T vec(M) = mean (x^T M x-)^2``. Cost O(size d^4)."""
    cross = np.zeros((d, d))
    t = np.zeros((d * d, d * d))
    for x, xp, xm in chunks:
        cross += x.T @ xp
        u = (x[:, :, None] * xm[:, None, :]).reshape(len(x), d * d)
        t += u.T @ u
    return sym(cross / size), sym(t / size)


def statistics_from_samples(
    x: np.ndarray, xplus: np.ndarray, xminus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sufficient statistics ``(S+, T)`` of raw samples of shape (R, m, d), batched.

    The rows are taken in chunks of :data:`CHUNK`, exactly as the sufficient-statistics
    path accumulates them, so both paths give the same numbers from the same draws.
    """
    r, m, d = x.shape
    s = np.empty((r, d, d))
    t = np.empty((r, d * d, d * d))
    for i in range(r):
        chunks = (
            (x[i, j : j + CHUNK], xplus[i, j : j + CHUNK], xminus[i, j : j + CHUNK])
            for j in range(0, m, CHUNK)
        )
        s[i], t[i] = _accumulate(chunks, m, d)
    return s, t
