"""Symmetry groups of representations and the orbit alignment used for diagnostics.

The downstream risk never needs alignment (Lemma 4.1 of the paper: the min-norm OLS
predictor is invariant under the group); alignment serves parameter-level diagnostics
(CLTs of aligned representatives) and the numerical check of that invariance.
"""

from __future__ import annotations

import numpy as np


def procrustes(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthogonal Procrustes over the full group O(k), batched.

    Finds ``Q = argmin_{Q in O(k)} ||a Q - b||_F`` for each matrix of the stack: the polar
    factor ``U V^T`` of ``a^T b = U S V^T``. Reflections (det Q = -1) are members of
    O(k) and are allowed; for an SO(k) symmetry use :func:`procrustes_special`.

    Parameters
    ----------
    a, b : ndarray of shape (..., d, k)

    Returns
    -------
    q : ndarray of shape (..., k, k)
    """
    u, _, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    return u @ vt


def procrustes_special(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Orthogonal Procrustes restricted to rotations SO(k) (Kabsch's sign correction)."""
    u, _, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    det = np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[..., :, -1] *= det[..., None]
    return u @ vt


def random_orthogonal(k: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed element of O(k)."""
    from scipy.stats import ortho_group

    if k == 1:
        return np.array([[rng.choice([-1.0, 1.0])]])
    return ortho_group.rvs(k, random_state=rng)


def alignment_variables(
    aligned: np.ndarray,
    g: np.ndarray,
    distance: np.ndarray,
    rep_dims: tuple[str, str],
    target: str,
    group: str,
) -> dict:
    """The alignment stage's standard variables ``representation_aligned`` (dims
    ``("replicate", *rep_dims)``), ``group_element`` and ``alignment_distance``, as
    ``{name: (dims, array, attrs)}``."""
    return {
        "representation_aligned": (
            ("replicate", *rep_dims),
            aligned,
            {"long_name": f"representative aligned to {target} by {group}"},
        ),
        "group_element": (
            ("replicate", "component", "component_"),
            g,
            {"long_name": f"the {group} element applied by the alignment"},
        ),
        "alignment_distance": (
            ("replicate",),
            distance,
            {"long_name": f"Frobenius distance to {target} after alignment"},
        ),
    }


class OrthogonalGroup:
    """O(k) acting on representatives ``A`` of shape (d, k) by ``A -> A Q``."""

    name = "O(k)"

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
