"""Symmetry groups of representations and the orbit alignment used for diagnostics.

The downstream risk never needs alignment (Lemma 4.1 of the paper: the min-norm OLS
predictor is invariant under the group); alignment serves parameter-level diagnostics
(CLTs of aligned representatives) and the numerical check of that invariance.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np


def procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthogonal Procrustes over the full group O(k), batched.

    Finds ``Q = argmin_{Q in O(k)} ||a Q - b||_F`` for each matrix of the stack: the polar
    factor ``U V^T`` of ``a^T b = U S V^T``. Reflections (det Q = -1) are members of
    O(k) and are allowed.

    Parameters
    ----------
    a, b : ndarray of shape (..., d, k)

    Returns
    -------
    q : ndarray of shape (..., k, k)
    """
    u, _, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    return u @ vt


def haar_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed element of O(d), d >= 2: the Q factor of a d x d standard Gaussian
    matrix with the signs of R's diagonal moved into Q (Mezzadri, 2007).

    The same algorithm, and the same draws from ``rng``, as ``scipy.stats.ortho_group.rvs(d,
    random_state=rng)`` (bit for bit; tested), without importing scipy.stats, which costs a
    pipeline job about a second of start-up.
    """
    z = rng.normal(size=(d, d))
    q, r = np.linalg.qr(z)
    d_r = r.diagonal()
    q *= (d_r / abs(d_r))[np.newaxis, :]
    return q


def random_orthogonal(k: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed element of O(k)."""
    if k == 1:
        return np.array([[rng.choice([-1.0, 1.0])]])
    return haar_orthogonal(k, rng)


def alignment_variables(
    aligned: np.ndarray,
    g: np.ndarray,
    distance: np.ndarray,
    rep_dims: tuple[str, ...],
    group: str,
) -> dict:
    """The alignment stage's standard variables ``representation_aligned`` (dims
    ``("replicate", *rep_dims)``), ``group_element`` and ``alignment_distance``, as
    ``{name: (dims, array, attrs)}``."""
    return {
        "representation_aligned": (
            ("replicate", *rep_dims),
            aligned,
            {"long_name": f"representative aligned to the true one by {group}"},
        ),
        "group_element": (
            ("replicate", "component", "component_"),
            g,
            {"long_name": f"the element of {group} applied by the alignment"},
        ),
        "alignment_distance": (
            ("replicate",),
            distance,
            {"long_name": f"Frobenius distance to the true representative after {group}"},
        ),
    }


class OrthogonalGroup:
    """O(k) acting on representatives ``A`` of shape (d, k) by ``A -> A Q``; alignment by
    orthogonal Procrustes over the full group (reflections included)."""

    name = "O(k) Procrustes"

    @staticmethod
    def random(rep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A Haar-distributed element acting on representatives shaped like ``rep``."""
        return random_orthogonal(rep.shape[-1], rng)

    @staticmethod
    def act(rep: np.ndarray, g: np.ndarray) -> np.ndarray:
        return rep @ g

    @staticmethod
    def align(rep: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Align each representative to ``target`` (broadcast over replicates).

        Returns
        -------
        aligned : ndarray of shape (..., d, k)
        g : ndarray of shape (..., k, k), the group element with ``aligned = rep @ g``
        distance : ndarray of shape (...), ``||aligned - target||_F``
        """
        target = np.broadcast_to(target, rep.shape)
        g = procrustes(rep, target)
        aligned = rep @ g
        return aligned, g, np.linalg.norm(aligned - target, axis=(-2, -1))


#: Up to this many labels, the matching enumerates the K! relabellings (720 at K = 6),
#: batched over the replicates; beyond, scipy's Hungarian algorithm, one replicate at a time.
ENUMERATE_MAX_LABELS = 6
#: Replicates matched at once by enumeration (bounds the (rows, K!, K) cost array: 35 MB).
ENUMERATE_ROWS = 1024


@functools.cache
def _permutations(k: int) -> np.ndarray:
    """All permutations of range(k), shape (k!, k), in lexicographic order."""
    return np.array(list(itertools.permutations(range(k))), dtype=np.intp).reshape(-1, k)


def assignment(cost: np.ndarray) -> np.ndarray:
    """The optimal assignment of each cost matrix of a stack (R, K, K): ``col`` of shape
    (R, K) minimising ``sum_i cost[r, i, col[r, i]]``, the linear assignment problem.

    For K <= :data:`ENUMERATE_MAX_LABELS` every permutation is scored at once (batched over
    replicates; a tie goes to the first permutation in lexicographic order), which spares a
    job scipy.optimize's import (0.7 s); larger K use
    ``scipy.optimize.linear_sum_assignment`` (Hungarian algorithm) per replicate. Both give
    the exact optimum."""
    cost = np.asarray(cost, dtype=float)
    r, k = cost.shape[0], cost.shape[-1]
    if k > ENUMERATE_MAX_LABELS:
        from scipy.optimize import linear_sum_assignment

        return np.array([linear_sum_assignment(c)[1] for c in cost], dtype=np.intp).reshape(r, k)
    perms = _permutations(k)
    col = np.empty((r, k), dtype=np.intp)
    for start in range(0, r, ENUMERATE_ROWS):
        block = cost[start : start + ENUMERATE_ROWS]
        totals = block[:, np.arange(k), perms].sum(axis=-1)  # (rows, k!)
        col[start : start + ENUMERATE_ROWS] = perms[np.argmin(totals, axis=1)]
    return col


class PermutationGroup:
    """S_K acting on centres U (K x d) by relabelling, ``U -> G U`` with G a permutation
    matrix; alignment by optimal matching of the centres with squared Euclidean cost
    (:func:`assignment`)."""

    name = "S_K Hungarian matching"

    @staticmethod
    def random(rep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random permutation matrix acting on representatives shaped like
        ``rep`` (the rows are relabelled)."""
        return np.eye(rep.shape[-2])[rng.permutation(rep.shape[-2])]

    @staticmethod
    def act(rep: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g @ rep

    @staticmethod
    def align(rep: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Align each representative of a stack (R, K, d) to ``target`` (K, d).

        Returns
        -------
        aligned : ndarray of shape (R, K, d), ``g @ rep``
        g : ndarray of shape (R, K, K), permutation matrices
        distance : ndarray of shape (R,), ``||aligned - target||_F``, the quotient distance
        """
        rep = np.asarray(rep, dtype=float)
        target = np.asarray(target, dtype=float)
        cost = np.sum((rep[:, :, None, :] - target[None, None]) ** 2, axis=-1)
        col = assignment(cost)
        r, k = col.shape
        g = np.zeros(cost.shape)
        g[np.arange(r)[:, None], col, np.arange(k)[None, :]] = 1.0
        aligned = g @ rep
        return aligned, g, np.linalg.norm(aligned - target, axis=(-2, -1))
