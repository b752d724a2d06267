"""Spectral case: the positive-pair coupling, chunked draws and the sufficient statistics.

``x ~ N(0, Sigma_pre)``; a positive view ``x+`` with ``Cov(x+) = Sigma_pre`` and
``E[x+ x^T] = Sigma_plus`` by the Gaussian coupling in whitened coordinates
``z = Sigma^{-1/2} x``: ``z+ = Ct z + (I - Ct^2)^{1/2} xi``, ``Ct = Sigma^{-1/2} Sigma_plus
Sigma^{-1/2}`` (the paper does not say how pairs are generated); an independent negative
``x-``. The empirical loss depends on the data only through ``S+ = sym(mean x x+^T)`` and
``T = mean (x x^T) kron (x- x-^T)`` (d^2 x d^2).

Exact sampling of the statistics. With ``R = Sigma^{1/2}`` (rows: ``x = z R``),
``X^T X+ = R (Z^T Z Ct + Z^T Xi N) R``, ``N = (I - Ct^2)^{1/2}``, and given Z the columns of
``Z^T Xi`` are independent ``N(0, Z^T Z)``: ``Z^T Xi`` is drawn as ``(Z^T Z)^{1/2} G`` with G
a d x d standard normal matrix, so the positive views are never drawn (d^2 normals instead
of m d). ``T`` has entries ``mean x_a x_c x-_b x-_d``: it is the cross-product
``mean q(x) q(x-)^T`` of the d(d+1)/2 products ``q(x) = (x_a x_c)_{a <= c}``, spread over
the d^2 x d^2 index pairs, and ``T_x = (R kron R)^T T_z (R kron R)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
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


def _right(a: np.ndarray, b: np.ndarray, diagonal: bool) -> np.ndarray:
    """``a @ b`` for a matrix ``b``, or ``a * b`` when ``b`` holds a diagonal."""
    return a * b if diagonal else a @ b


def _whitened_chunks(rng: np.random.Generator, size: int, d: int) -> Iterator[tuple]:
    """Whitened anchors and negatives ``(z, z-)`` in chunks of :data:`CHUNK` samples,
    each stored as columns (``d x rows``, standard normal): per chunk the stream gives z,
    then z-. The full chunks are drawn into the same two buffers (fresh arrays of this
    size cost page faults on every chunk): a consumer copies what it keeps."""
    buffers = np.empty((2, d, CHUNK))
    for start in range(0, size, CHUNK):
        rows = min(CHUNK, size - start)
        if rows < CHUNK:
            yield rng.standard_normal((d, rows)), rng.standard_normal((d, rows))
        else:
            yield rng.standard_normal(out=buffers[0]), rng.standard_normal(out=buffers[1])


def draw_samples(
    rng: np.random.Generator, size: int, coupling: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw pre-training samples ``(x, x+, x-)``, each ``size x d``: the stream gives the
    chunks of :func:`_whitened_chunks`, then xi (``size x d``); ``x = z R``, ``x- = z- R``,
    ``x+ = (z Ct + xi N) R`` (for the concrete instance ``x+ = C x + (I - C^2)^{1/2} xi``).
    The anchors and negatives are those of :func:`draw_statistics` on the same stream."""
    root, ct, noise, diagonal = coupling
    z, zm = np.empty((2, size, len(root)))
    for start, (u, v) in zip(
        range(0, size, CHUNK), _whitened_chunks(rng, size, len(root)), strict=True
    ):
        z[start : start + u.shape[1]], zm[start : start + v.shape[1]] = u.T, v.T
    xi = rng.standard_normal(z.shape)
    plus = _right(z, ct, diagonal) + _right(xi, noise, diagonal)
    return tuple(_right(v, root, diagonal) for v in (z, plus, zm))


@functools.cache
def _pairs(d: int) -> np.ndarray:
    """For each (a, c) of the d^2 row-major indices, the position in the products q of its
    pair ``(min, max)``: the pairs ``a <= c`` in row-major order (read-only: cached)."""
    first, second = np.triu_indices(d)
    where = np.empty((d, d), dtype=np.intp)
    where[first, second] = where[second, first] = np.arange(len(first))
    where.flags.writeable = False
    return where


def _spread(cross: np.ndarray, d: int) -> np.ndarray:
    """``T[(a, b), (c, e)] = cross[q(a, c), q(b, e)]`` (row-major vec): the d^2 x d^2
    matrix from the ``d(d+1)/2``-square cross-product of the products q."""
    where = _pairs(d)
    rows = where[:, None, :, None]  # (a, ., c, .)
    cols = where[None, :, None, :]  # (., b, ., e)
    return cross[rows, cols].reshape(d * d, d * d)


def _kron_congruence(t: np.ndarray, root: np.ndarray, diagonal: bool) -> np.ndarray:
    """``(R kron R)^T t (R kron R)`` (R symmetric, or its diagonal)."""
    if diagonal:
        scale = np.outer(root, root).ravel()
        return t * scale[:, None] * scale[None, :]
    kron = np.kron(root, root)
    return kron.T @ t @ kron


def _products(columns: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``q(u) = (u_a u_c)_{a <= c}`` of each sample ``u``, stored as columns, into ``out``
    (``d(d+1)/2 x rows`` from ``d x rows``), in the order of :func:`_pairs`: one broadcast
    product ``u_a * u_{a..d-1}`` per a (numpy's fancy indexing is several times slower)."""
    d, rows = columns.shape
    out = out[:, :rows]
    start = 0
    for a in range(d):
        np.multiply(columns[a], columns[a:], out=out[start : start + d - a])
        start += d - a
    return out


def _cross_products(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], d: int, gram: np.ndarray | None = None
) -> np.ndarray:
    """``sum q(u) q(v)^T`` over chunks of samples ``(u, v)`` stored as columns (``d x rows``,
    rows <= :data:`CHUNK`): the ``d(d+1)/2``-square cross-product behind ``T``; ``gram``,
    when given, is incremented by ``sum u u^T``."""
    pairs = d * (d + 1) // 2
    cross = np.zeros((pairs, pairs))
    q, qm = np.empty((2, pairs, CHUNK))
    for u, v in chunks:
        if gram is not None:
            gram += u @ u.T
        cross += _products(u, q) @ _products(v, qm).T
    return cross


def draw_statistics(
    rng: np.random.Generator, size: int, coupling: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Exact draw of ``(S+, T)`` for ``size`` samples: the chunks of
    :func:`_whitened_chunks`, then G (d x d) for ``Z^T Xi = (Z^T Z)^{1/2} G``. Cost: 2 size d
    normals and the ``d(d+1)/2``-square cross-product of the products, O(size d^4 / 4)."""
    root, ct, noise, diagonal = coupling
    d = len(root)
    gram = np.zeros((d, d))
    cross = _cross_products(_whitened_chunks(rng, size, d), d, gram)
    xi_cross = psd_sqrt(gram) @ rng.standard_normal((d, d))
    zz_plus = _right(gram, ct, diagonal) + _right(xi_cross, noise, diagonal)
    xx_plus = root[:, None] * zz_plus * root[None, :] if diagonal else root @ zz_plus @ root
    t = _kron_congruence(_spread(cross, d), root, diagonal)
    return sym(xx_plus / size), sym(t / size)


def statistics_from_samples(
    x: np.ndarray, xplus: np.ndarray, xminus: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sufficient statistics ``(S+, T)`` of raw samples of shape (R, m, d), batched: ``T``
    by the same cross-product of products as :func:`draw_statistics`, in chunks of
    :data:`CHUNK` rows."""
    r, m, d = x.shape
    s = sym(np.swapaxes(x, -1, -2) @ xplus) / m
    t = np.empty((r, d * d, d * d))
    for i in range(r):
        u, v = x[i].T, xminus[i].T
        chunks = ((u[:, j : j + CHUNK], v[:, j : j + CHUNK]) for j in range(0, m, CHUNK))
        t[i] = sym(_spread(_cross_products(chunks, d), d) / m)
    return s, t
