"""Mixture case: batched EM for the centres, k-means++ seeding, canonical order."""

from __future__ import annotations

import logging
import math

import numpy as np

from ...progress import Progress

_LOG = logging.getLogger(__name__)

#: Largest number of rows of one replicate's sample per E/M step: the sample is cut into
#: equal chunks and the sums run chunk by chunk (both GEMMs of a chunk read it while it is
#: in cache). Fixed, so that a replicate's round-off depends on m and on this constant
#: only, never on the other replicates.
CHUNK_ROWS = 16384
#: Data points (replicates x m) held by one group of replicates iterated together: small
#: samples are batched to amortise the per-call overhead, large ones run one at a time.
GROUP_POINTS = 16384
#: 1 / ln 2 and ln 2: the logit differences are formed in base 2 (``exp2`` is the cheaper
#: exponential in numpy).
LOG2E = 1.0 / math.log(2.0)
LN2 = math.log(2.0)


# ---------------------------------------------------------------------------- EM
def loglik_constant(k: int, d: int) -> float:
    """``-d/2 log(2 pi) - log K``: the part of the mean log-likelihood of an equal-weight,
    identity-covariance mixture that does not depend on the data or the centres."""
    return -0.5 * d * math.log(2.0 * math.pi) - math.log(k)


def em(x: np.ndarray, init: np.ndarray, tol: float, max_iter: int) -> dict[str, np.ndarray]:
    """EM for the means of an equal-weight, identity-covariance mixture, batched.

    Iteration t computes the E-step at ``U_t`` (which gives the mean log-likelihood
    ``L_t``); it stops at the first t >= 1 with ``|L_t - L_{t-1}| <= tol |L_t|``
    (converged) or at t = ``max_iter`` (not converged), and returns ``U_t``; otherwise the
    M-step ``u_i <- sum_j pi_ij x_j / sum_j pi_ij`` gives ``U_{t+1}``. A component with no
    responsibility mass keeps its centre. Replicates stop independently.

    Computation. The replicates run in groups of about ``GROUP_POINTS`` data points (one
    replicate at a time once m > ``GROUP_POINTS`` / 2), each group iterating until all of
    its replicates have stopped, the arithmetic on those still active. An iteration sweeps
    the sample in equal chunks of at most ``CHUNK_ROWS`` rows, forwards at even t and
    backwards at odd t (the chunks read last are still in cache when the next sweep
    starts), and each chunk goes once through both steps, with the first component
    (index 0) as reference:

    * one GEMM gives the logit differences ``D_ij = <u_i - u_0, x_j> - (|u_i|^2 -
      |u_0|^2) / 2`` (i = 1..K-1, in base-2 units);
    * ``s_j = 1 + sum_i exp(D_ij)``, and the responsibilities are ``1 / s_j`` and
      ``exp(D_ij) / s_j`` (K - 1 exponentials per point);
    * ``sum_j log s_j`` is taken as the logarithms of products of four (at most six)
      ``s_j``, a quarter as many logarithms;
    * a second GEMM gives ``sum_j pi_ij x_j``, and the row sums the masses.

    Then ``L = const + (1/m) sum_j (log s_j + l_0j - |x_j|^2 / 2)`` with
    ``l_0j = <u_0, x_j> - |u_0|^2 / 2``, whose sum over j is ``<u_0, sum_j x_j> -
    m |u_0|^2 / 2`` (the sums of ``x_j`` and ``|x_j|^2`` are taken in the first sweep).
    Where this overflows (an ``s_j`` above about 2^170, i.e. a point some 118 nats more
    likely under another component than under the first), the replicate's iteration is
    redone in the max-shifted form ``exp(l_ij - max_i l_ij)``. Each replicate's numbers
    depend on its own data and initialisation, ``tol``, ``max_iter`` and ``CHUNK_ROWS``
    only: bitwise the same whatever other replicates share the batch. They equal the
    textbook computation up to round-off.

    Parameters
    ----------
    x : ndarray of shape (R, m, d)
    init : ndarray of shape (R, K, d)
    tol : float
        Relative tolerance on the change of the mean log-likelihood.
    max_iter : int
        Largest number of M-steps.

    Returns
    -------
    dict with ``centers`` (R, K, d), ``loglik`` (R,) mean log-likelihood per sample at the
    returned centres, ``n_iter`` (R,) M-steps done, ``converged`` (R,) bool,
    ``monotone`` (R,) bool: no decrease of L_t beyond 1e-12 |L_t| (rounding).
    """
    x = np.asarray(x, dtype=float)
    n_rep, m, _ = x.shape
    out = {
        "centers": np.array(init, dtype=float, copy=True),
        "loglik": np.full(n_rep, np.nan),
        "n_iter": np.zeros(n_rep, dtype=np.int64),
        "converged": np.zeros(n_rep, dtype=bool),
        "monotone": np.ones(n_rep, dtype=bool),
    }
    size = max(1, GROUP_POINTS // m)
    detail = f"group of {{size}} at iteration {{t}}/{max_iter} ({{running}} still running)"
    progress = Progress("EM", n_rep, "replicates finished", detail, _LOG)
    for a in range(0, n_rep, size):
        group = slice(a, min(a + size, n_rep))
        outputs = {key: val[group] for key, val in out.items()}
        _em_group(x[group], tol, max_iter, progress, a, **outputs)
    progress.done(n_rep)
    return out


def _em_group(
    x: np.ndarray,
    tol: float,
    max_iter: int,
    progress: Progress,
    first: int,
    centers: np.ndarray,
    loglik: np.ndarray,
    n_iter: np.ndarray,
    converged: np.ndarray,
    monotone: np.ndarray,
) -> None:
    """:func:`em` on one group of replicates (``first`` replicates done before it); the
    outputs (views) are filled in place."""
    n_rep, m, d = x.shape
    k = centers.shape[1]
    const = loglik_constant(k, d)
    rows = -(-m // -(-m // CHUNK_ROWS))  # equal chunks of at most CHUNK_ROWS rows
    forward = list(range(0, m, rows))
    bufs = (np.empty((n_rep, k, rows)), np.empty((n_rep, rows)), np.empty((n_rep, k, d)))
    sums = (np.zeros((n_rep, d)), np.zeros(n_rep))  # sum_j x_j, sum_j |x_j|^2
    prev = np.full(n_rep, np.nan)
    act = np.arange(n_rep)  # replicates still iterating
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(max_iter + 1):
            progress.update(first + n_rep - len(act), size=n_rep, t=t, running=len(act))
            full = len(act) == n_rep
            u = centers if full else centers[act]
            sq = np.sum(u * u, axis=-1)
            chunks = forward if t % 2 == 0 else forward[::-1]
            rep = None if full else act
            log_s, acc, mass = _sweep(x, rep, u, sq, chunks, rows, bufs, sums if t == 0 else None)
            bad = np.flatnonzero(~np.isfinite(log_s))
            if len(bad):  # the reference form overflowed somewhere: redo in the shifted form
                log_s[bad], acc[bad], mass[bad] = 0.0, 0.0, 0.0
                for a in chunks:
                    part = _shifted(u[bad], x[act[bad], a : a + rows])
                    log_s[bad] += part[0]
                    acc[bad] += part[1]
                    mass[bad] += part[2]
            sum_x, sum_sq = sums if full else (sums[0][act], sums[1][act])
            l_ref = np.sum(u[:, 0] * sum_x, axis=-1) - 0.5 * m * sq[:, 0]
            ll = (log_s + l_ref - 0.5 * sum_sq) / m + const
            if t > 0:
                delta = ll - prev[act]
                monotone[act] &= delta >= -1e-12 * np.abs(ll)
                done = np.abs(delta) <= tol * np.abs(ll)
                converged[act[done]] = True
            else:
                done = np.zeros(len(act), dtype=bool)
            loglik[act] = ll
            prev[act] = ll
            if t == max_iter or done.all():
                break
            go = ~done
            new = acc / np.maximum(mass, 1e-300)[..., None]
            new = np.where((mass > 0)[..., None], new, u)
            act = act[go]
            centers[act] = new[go]
            n_iter[act] += 1


def _sweep(
    x: np.ndarray,
    rep: np.ndarray | None,
    u: np.ndarray,
    sq: np.ndarray,
    chunks: list[int],
    rows: int,
    bufs: tuple[np.ndarray, np.ndarray, np.ndarray],
    sums: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One E-step with the M-step sums, in the reference form of :func:`em`, for the
    replicates ``rep`` of x (all when None) at centres u (g, K, d) with ``sq = |u_i|^2``.

    Returns ``sum_j log s_j`` (natural units; not finite where the reference form
    overflowed), ``sum_j pi_ij x_j`` (g, K, d) and ``sum_j pi_ij`` (g, K); adds
    ``sum_j x_j`` and ``sum_j |x_j|^2`` to ``sums`` when given (first sweep, all replicates).
    """
    g, k, d = u.shape
    m = x.shape[1]
    w_buf, s_buf, m_buf = bufs
    diff = LOG2E * (u[:, 1:] - u[:, :1])  # (g, K-1, d)
    shift = (0.5 * LOG2E) * (sq[:, 1:] - sq[:, :1])[..., None]
    log2_s = np.zeros(g)
    acc = np.zeros((g, k, d))
    mass = np.zeros((g, k))
    for a in chunks:
        b = min(a + rows, m)
        xc = x[:, a:b] if rep is None else x[rep, a:b]
        if sums is not None:
            for i, xi in enumerate(xc):
                sums[0][i] += xi.sum(axis=0)
                sums[1][i] += np.vdot(xi, xi)
        w, s = w_buf[:g, :, : b - a], s_buf[:g, : b - a]
        e, r = w[:, 1:], w[:, 0]
        np.matmul(diff, np.swapaxes(xc, -1, -2), out=e)  # D_ij, base 2
        e -= shift
        np.exp2(e, out=e)
        if k > 1:
            np.add(1.0, e[:, 0], out=s)
        else:
            s.fill(1.0)
        for i in range(1, k - 1):
            s += e[:, i]
        np.divide(1.0, s, out=r)  # pi_0j = 1 / s_j
        e *= r[:, None, :]  # pi_ij = exp(D_ij) / s_j
        log2_s += _sum_log2(s)
        acc += np.matmul(w, xc, out=m_buf[:g])
        mass += w.sum(axis=-1)
    return LN2 * log2_s, acc, mass


def _sum_log2(s: np.ndarray) -> np.ndarray:
    """``sum_j log2 s_j`` per row of s (g, n), s >= 1, overwriting s: the row is folded
    twice (``s_j <- s_j s_{j + n/2}``, an odd last entry into the first), so a quarter as
    many logarithms are taken, of products of at most six entries; an overflow (entries
    above about 2^170) gives a non-finite sum."""
    width = s.shape[-1]
    for _ in range(2):
        if width < 2:
            break
        half = width // 2
        if width % 2:
            s[:, 0] *= s[:, width - 1]
        s[:, :half] *= s[:, half : 2 * half]
        width = half
    return np.log2(s[:, :width], out=s[:, :width]).sum(axis=-1)


def _shifted(u: np.ndarray, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk's E-step sums in the max-shifted form, for replicates where the reference
    form overflows: ``sum_j (log sum_i exp(l_ij) - l_0j)``, ``sum_j pi_ij x_j`` and
    ``sum_j pi_ij``, with ``l_ij = <u_i, x_j> - |u_i|^2 / 2``; u (g, K, d), xc (g, n, d)."""
    logits = u @ np.swapaxes(xc, -1, -2) - 0.5 * np.sum(u * u, axis=-1)[..., None]
    top = logits.max(axis=1, keepdims=True)
    w = np.exp(logits - top)
    s = w.sum(axis=1, keepdims=True)
    w /= s
    log_s = np.sum(np.log(s[:, 0]) + top[:, 0] - logits[:, 0], axis=-1)
    return log_s, w @ xc, w.sum(axis=-1)


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
