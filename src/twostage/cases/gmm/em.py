"""Mixture case: batched EM for the centres, k-means++ seeding, canonical order."""

from __future__ import annotations

import math

import numpy as np


# ---------------------------------------------------------------------------- EM
def loglik_constant(k: int, d: int) -> float:
    return -0.5 * d * math.log(2.0 * math.pi) - math.log(k)


def em(x: np.ndarray, init: np.ndarray, tol: float, max_iter: int) -> dict[str, np.ndarray]:
    """EM for the means of an equal-weight, identity-covariance mixture, batched.

    Iteration t computes the E-step at ``U_t`` (which gives the mean log-likelihood
    ``L_t``); it stops at the first t >= 1 with ``|L_t - L_{t-1}| <= tol |L_t|``
    (converged) or at t = ``max_iter`` (not converged), and returns ``U_t``; otherwise the
    M-step ``u_i <- sum_j pi_ij x_j / sum_j pi_ij`` gives ``U_{t+1}``. A component with no
    responsibility mass keeps its centre. Replicates stop independently; the arithmetic
    runs on the replicates still active (compacted when a quarter of them has stopped).

    Parameters
    ----------
    x : ndarray of shape (R, m, d)
    init : ndarray of shape (R, K, d)

    Returns
    -------
    dict with ``centers`` (R, K, d), ``loglik`` (R,) mean log-likelihood per sample at the
    returned centres, ``n_iter`` (R,) M-steps done, ``converged`` (R,) bool,
    ``monotone`` (R,) bool: no decrease of L_t beyond 1e-12 |L_t| (rounding).
    """
    x = np.asarray(x, dtype=float)
    n_rep, m, d = x.shape
    k = init.shape[1]
    const = loglik_constant(k, d)
    centers = np.array(init, dtype=float, copy=True)
    loglik = np.full(n_rep, np.nan)
    n_iter = np.zeros(n_rep, dtype=np.int64)
    converged = np.zeros(n_rep, dtype=bool)
    monotone = np.ones(n_rep, dtype=bool)
    batch = np.arange(n_rep)  # replicates held in xb
    xb = x
    half = 0.5 * np.einsum("rmd,rmd->rm", x, x)
    live = np.ones(n_rep, dtype=bool)  # per row of xb: still iterating
    prev = np.full(n_rep, np.nan)
    for t in range(max_iter + 1):
        u = centers[batch]
        # (R', K, m) layout: the reductions over K run along contiguous rows of length m
        logits = u @ np.swapaxes(xb, -1, -2) - 0.5 * np.sum(u**2, axis=-1)[..., None]
        top = logits.max(axis=1, keepdims=True)
        w = np.exp(logits - top)
        s = w.sum(axis=1, keepdims=True)
        ll = np.mean(np.log(s[:, 0]) + top[:, 0] - half, axis=-1) + const
        idx = batch[live]
        ll_live = ll[live]
        if t > 0:
            delta = ll_live - prev[idx]
            monotone[idx] &= delta >= -1e-12 * np.abs(ll_live)
            done = np.abs(delta) <= tol * np.abs(ll_live)
        else:
            done = np.zeros(len(idx), dtype=bool)
        loglik[idx] = ll_live
        prev[idx] = ll_live
        converged[idx[done]] = True
        if t == max_iter:
            break
        go = live.copy()
        go[live] = ~done
        if not go.any():
            break
        w /= s  # responsibilities, (R', K, m); rows already stopped are computed, not used
        mass = w.sum(axis=-1)  # (R', K)
        new = (w @ xb) / np.maximum(mass, 1e-300)[..., None]
        new = np.where((mass > 0)[..., None], new, u)
        rows = batch[go]
        centers[rows] = new[go]
        n_iter[rows] += 1
        live = go
        if live.sum() <= 0.75 * len(batch):
            batch, xb, half = batch[live], xb[live], half[live]
            live = np.ones(len(batch), dtype=bool)
    return {
        "centers": centers,
        "loglik": loglik,
        "n_iter": n_iter,
        "converged": converged,
        "monotone": monotone,
    }


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): first centre uniform among the
    points, then each next one with probability proportional to the squared distance to
    the nearest centre chosen so far (no greedy local trials)."""
    m = len(x)
    out = np.empty((k, x.shape[1]))
    out[0] = x[rng.integers(m)]
    d2 = np.sum((x - out[0]) ** 2, axis=1)
    for i in range(1, k):
        out[i] = x[rng.choice(m, p=d2 / d2.sum())]
        d2 = np.minimum(d2, np.sum((x - out[i]) ** 2, axis=1))
    return out


def canonical_order(centers: np.ndarray) -> np.ndarray:
    """Centres of each replicate in lexicographic order (first coordinate first): a
    deterministic orbit representative, like scikit-learn's ``svd_flip`` sign rule."""
    out = np.empty_like(centers)
    for i, u in enumerate(centers):
        out[i] = u[np.lexsort(u.T[::-1])]
    return out
