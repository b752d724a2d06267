"""Exact moments of products of Gaussian linear forms (Isserlis' theorem).

For ``g ~ N(0, Sigma)`` and vectors ``f_1, ..., f_r``,
``E[prod_l f_l^T g]`` is the sum over the perfect matchings of {1, ..., r} of the products
of the covariances ``f_l^T Sigma f_m`` of the matched pairs (zero for odd r). Scores that
are polynomials in Gaussian data (e.g. ``-y^2 x^T xi x`` of the method of moments, a
product of linear forms of ``(x, eps)``) then have exactly computable covariances, with no
Monte Carlo error.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def perfect_matchings(items: Sequence[int]) -> Iterator[list[tuple[int, int]]]:
    """Every partition of ``items`` (an even number of them) into pairs."""
    items = list(items)
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for i, other in enumerate(rest):
        for tail in perfect_matchings(rest[:i] + rest[i + 1 :]):
            yield [(first, other), *tail]


def linear_form_moment(factors: Sequence[np.ndarray], cov: np.ndarray) -> np.ndarray:
    """``E[prod_l f_l^T g]`` for ``g ~ N(0, cov)``, exactly.

    Parameters
    ----------
    factors : sequence of ndarray of shape (..., p)
        The vectors f_l; their leading axes broadcast together (so one call evaluates a
        whole table of moments, e.g. over pairs of tangent directions).
    cov : ndarray of shape (p, p)

    Returns
    -------
    ndarray of the broadcast leading shape (0 for an odd number of factors)
    """
    r = len(factors)
    shape = np.broadcast_shapes(*(np.shape(f)[:-1] for f in factors))
    if r % 2:
        return np.zeros(shape)
    weighted = [np.asarray(f) @ cov for f in factors]
    pair = {}
    for i in range(r):
        for j in range(i + 1, r):
            pair[i, j] = np.einsum("...p,...p->...", weighted[i], np.asarray(factors[j]))
    total = np.zeros(shape)
    for matching in perfect_matchings(range(r)):
        term = np.ones(shape)
        for i, j in matching:
            term = term * pair[i, j]
        total = total + term
    return total
