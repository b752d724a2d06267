"""Mixture case: the fixed Monte Carlo samples of the population (common random numbers).

Population expectations (Sigma, beta(U), Rep, G_L) are averages over one fixed stratified
sample of ``population_size`` points, regenerated on demand from ``population_seed`` (drawn
from the point's truth stream, so it depends on the population parameters only); the
Fisher sample (``fisher_size`` points) uses an independent stream of the same seed. Both
are cached in-process, and so are the population fits of the downstream stage (see
:func:`relabelled_population_fit`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache

import numpy as np

from ...linalg import pinv_psd, sym
from .features import SWEEP_ROWS, feature_map, features_t, gate_basis, reduce_theta, residual_sums

#: Purposes of the streams derived from ``population_seed`` (never renumber).
POPULATION, FISHER = 0, 1
#: Bytes of population fits kept in-process by :func:`relabelled_population_fit` (about
#: 5 kB each at K = 4, d = 20: some 12,000 replicates), least recently used dropped first.
FIT_CACHE_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------- population
def _keyed_generator(seed: int, purpose: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), purpose])))


def mixture_sample(
    centers: np.ndarray, size: int, rng: np.random.Generator, out: np.ndarray | None = None
) -> np.ndarray:
    """``size`` i.i.d. points of the mixture (labels, then noise, drawn from ``rng``),
    written into ``out`` (shape (size, d), C-contiguous) when given."""
    labels = rng.integers(0, len(centers), size=size)
    x = rng.standard_normal((size, centers.shape[1]), out=out)
    x += centers[labels]
    return x


@lru_cache(maxsize=2)
def _stratified(seed: int, purpose: int, size: int, key: bytes, k: int, d: int) -> np.ndarray:
    centers = np.frombuffer(key, dtype=float).reshape(k, d)
    x = _keyed_generator(seed, purpose).standard_normal((size, d))
    x += centers[np.arange(size) % k]
    x.setflags(write=False)
    return x


def stratified_sample(truth: Mapping[str, np.ndarray], purpose: int) -> np.ndarray:
    """The fixed population (``POPULATION``) or Fisher (``FISHER``) sample of a truth:
    component ``j mod K`` for row j, noise from the stream keyed by ``population_seed``."""
    centers = np.ascontiguousarray(truth["centers"], dtype=float)
    size = int(truth["population_size"] if purpose == POPULATION else truth["fisher_size"])
    k, d = centers.shape
    return _stratified(int(truth["population_seed"]), purpose, size, centers.tobytes(), k, d)


@lru_cache(maxsize=2)
def _target(seed: int, size: int, key: bytes, theta_key: bytes, k: int, d: int, r: int):
    centers = np.frombuffer(key, dtype=float).reshape(k, d)
    theta = np.frombuffer(theta_key, dtype=float)
    x = _stratified(seed, POPULATION, size, key, k, d)
    f = regression_function(x, centers, theta, r)
    f.setflags(write=False)
    return f


def regression_function(
    x: np.ndarray, centers: np.ndarray, theta: np.ndarray, r: int
) -> np.ndarray:
    """``f*(x) = <theta, psi_U(x)>`` for each row of x (via the reduced coordinates)."""
    q = gate_basis(centers, r)
    return feature_map(x, centers, q, reduce_theta(theta, q, len(centers)))


def population(truth: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The fixed population sample and f* on it (cached)."""
    centers = np.ascontiguousarray(truth["centers"], dtype=float)
    theta = np.ascontiguousarray(truth["theta"], dtype=float)
    k, d = centers.shape
    args = (
        int(truth["population_seed"]),
        int(truth["population_size"]),
        centers.tobytes(),
    )
    x = _stratified(args[0], POPULATION, args[1], args[2], k, d)
    f = _target(*args, theta.tobytes(), k, d, int(truth["rank_S"]))
    return x, f


def population_fit(truth: Mapping[str, np.ndarray], centers: np.ndarray) -> dict[str, np.ndarray]:
    """Population least squares of f* on the features of one representative ``centers``.

    Returns the reduced basis ``q``, ``sigma`` = E psi~ psi~^T, its pseudo-inverse,
    ``beta`` = Sigma^+ E[psi~ f*], and ``rep`` = E (f* - psi~^T beta)^2, all on the fixed
    population sample.

    Computation: one sweep of :func:`.features.residual_sums` over the sample (chunks of
    ``SWEEP_ROWS`` rows, whose features stay in cache), around ``beta_0``, the
    least-squares coefficient on the first chunk: with ``g = f* - psi~^T beta_0`` it gives
    ``sum psi~ psi~^T``, ``sum psi~ g`` and ``sum g^2``; then ``E[psi~ f*] = E[psi~ g] +
    Sigma beta_0`` and, with ``delta = beta - beta_0``, ``Rep = E g^2 - 2 delta^T E[psi~ g]
    + delta^T Sigma delta``, exactly ``E (f* - psi~^T beta)^2`` (its three terms are of the
    size of Rep, not of E f*^2, so no digits cancel). The residual itself is
    :func:`fit_residual`.
    """
    x, f = population(truth)
    r = int(truth["rank_S"])
    q = gate_basis(centers, r)
    n = len(x)
    head, _ = features_t(x[:SWEEP_ROWS], centers, q)
    beta0 = pinv_psd(sym(head @ head.T))[0] @ (head @ f[:SWEEP_ROWS])
    gram, psi_g, g2 = residual_sums(x, centers, q, f, beta0)
    sigma = sym(gram) / n
    sigma_pinv, _ = pinv_psd(sigma)
    beta = sigma_pinv @ (psi_g / n + sigma @ beta0)
    delta = beta - beta0
    rep = g2 / n - 2.0 * (delta @ psi_g) / n + delta @ sigma @ delta
    return {
        "q": q,
        "sigma": sigma,
        "sigma_pinv": sigma_pinv,
        "beta": beta,
        "rep": np.float64(rep),
    }


def fit_residual(truth: Mapping[str, np.ndarray], centers: np.ndarray) -> np.ndarray:
    """The residual ``e = f* - psi~^T beta(U)`` of :func:`population_fit` at each point of the
    population sample (its mean square is ``rep`` up to round-off)."""
    x, f = population(truth)
    fit = population_fit(truth, centers)
    return f - feature_map(x, centers, fit["q"], fit["beta"])


#: key -> (lexicographic order of the centres as first seen, their population fit)
_FITS: OrderedDict[tuple, tuple[np.ndarray, dict[str, np.ndarray]]] = OrderedDict()
_FIT_BYTES = [0]


def _truth_key(truth: Mapping[str, np.ndarray]) -> tuple:
    """What the population fit of a set of centres depends on besides the centres."""
    return (
        int(truth["population_seed"]),
        int(truth["population_size"]),
        np.ascontiguousarray(truth["centers"], dtype=float).tobytes(),
        np.ascontiguousarray(truth["theta"], dtype=float).tobytes(),
        int(truth["rank_S"]),
    )


def relabelled_population_fit(
    truth: Mapping[str, np.ndarray], centers: np.ndarray
) -> dict[str, np.ndarray]:
    """:func:`population_fit`, computed once per set of centres.

    A relabelling ``G U`` of the same centres (the aligned twin of an estimate, Lemma 4.1)
    has the same gating subspace and the reduced features of U with the blocks permuted,
    so its fit is the stored one with ``sigma``, ``sigma_pinv`` and ``beta`` permuted
    blockwise (exactly, no arithmetic), the same basis ``q`` and the same ``rep``. The key
    is the truth and the centres in lexicographic order; the fit is computed in the order
    in which the set is first seen (then it equals :func:`population_fit` bitwise) and kept
    in-process, at most ``FIT_CACHE_BYTES``, the least recently used dropped first. The
    returned arrays are read-only.
    """
    centers = np.ascontiguousarray(centers, dtype=float)
    order = np.lexsort(centers.T[::-1])
    key = (_truth_key(truth), centers[order].tobytes())
    hit = _FITS.get(key)
    if hit is None:
        fit = population_fit(truth, centers)
        for arr in fit.values():
            arr.setflags(write=False)
        _FITS[key] = (order, fit)
        _FIT_BYTES[0] += sum(arr.nbytes for arr in fit.values()) + len(key[1])
        while _FIT_BYTES[0] > FIT_CACHE_BYTES and len(_FITS) > 1:
            old_key, (_, old) = _FITS.popitem(last=False)
            _FIT_BYTES[0] -= sum(arr.nbytes for arr in old.values()) + len(old_key[1])
        return fit
    _FITS.move_to_end(key)
    first, fit = hit
    # centre i here is centre src[i] of the stored fit (both sorted to the same sequence)
    src = first[np.argsort(order)]
    if np.array_equal(src, np.arange(len(src))):
        return fit
    width = len(fit["beta"]) // len(src)
    idx = (src[:, None] * width + np.arange(width)).ravel()
    out = {
        "q": fit["q"],
        "sigma": fit["sigma"][np.ix_(idx, idx)],
        "sigma_pinv": fit["sigma_pinv"][np.ix_(idx, idx)],
        "beta": fit["beta"][idx],
        "rep": fit["rep"],
    }
    for arr in out.values():
        arr.setflags(write=False)
    return out


def clear_fit_cache() -> None:
    """Forget the fits kept by :func:`relabelled_population_fit`."""
    _FITS.clear()
    _FIT_BYTES[0] = 0
