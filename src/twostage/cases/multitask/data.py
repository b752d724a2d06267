"""Multi-task case: the truth (representation and tasks) and the pre-training data.

Each pre-training sample draws a task index t uniformly from 1..T, then ``x ~ N(0, I_d)``
and ``y = theta_t^T B*^T x + eps``, ``eps ~ N(0, sigma2_pre)``. Both estimators depend on
the data through per-replicate statistics, accumulated from the raw draws in fixed chunks
(so raw and sufficient paths give identical estimates):

* ``counts[t]`` = number of samples of task t;
* ``scatter[t] = (1/m) sum_{i in task t} z_i z_i^T`` with ``z = (x, y)`` ((d+1) x (d+1)):
  the per-task ``S_t``, ``c_t = (1/m) sum y x`` and ``(1/m) sum y^2`` that least squares
  needs (ERM);
* ``moment = (1/m) sum_i y_i^2 x_i x_i^T`` (the method of moments).

``y^2 x x^T`` has no fixed-size exact law, so the statistics cost O(m d^2) per replicate.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

#: Rows drawn and accumulated at once; fixed, so that the draws do not depend on it
#: changing between runs (never change it: results depend on it).
CHUNK = 4096


def diverse_tasks(n_tasks: int, k: int, diversity: float) -> np.ndarray:
    """Deterministic tasks Theta (T x k) with ``(1/T) Theta^T Theta = diag(lambda)``,
    ``lambda_i = diversity^((i-1)/(k-1))``: ``Theta = sqrt(T) Q diag(lambda)^{1/2}`` with Q
    the first k columns of the orthonormal DCT-II basis of R^T (requires T >= k)."""
    from scipy.fft import dct

    q = dct(np.eye(n_tasks), type=2, norm="ortho", axis=0).T[:, :k]
    lam = diversity ** (np.arange(k) / max(k - 1, 1))
    return np.sqrt(n_tasks) * q * np.sqrt(lam)


def task_matrix(population: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """The source tasks Theta (T x k): explicit, built from ``task_diversity``, or drawn
    from N(0, I_k) by the truth stream."""
    k, n_tasks = int(population["k"]), int(population["n_tasks"])
    if population.get("tasks") is not None:
        return np.asarray(population["tasks"], dtype=float).reshape(n_tasks, k)
    if population.get("task_diversity") is not None:
        return diverse_tasks(n_tasks, k, float(population["task_diversity"]))
    return rng.standard_normal((n_tasks, k))


def draw_chunks(
    rng: np.random.Generator, size: int, weights: np.ndarray, noise_sd: float
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Samples ``(t, x, y)`` in chunks of :data:`CHUNK` rows. Per chunk the stream gives the
    task indices, then x (rows x d), then the standard normal noise. ``weights`` is
    ``B* Theta^T`` (d x T): the regression vector of each task."""
    d, n_tasks = weights.shape
    for start in range(0, size, CHUNK):
        rows = min(CHUNK, size - start)
        t = rng.integers(0, n_tasks, size=rows)
        x = rng.standard_normal((rows, d))
        eps = rng.standard_normal(rows)
        y = np.einsum("rd,rd->r", x, weights.T[t]) + noise_sd * eps
        yield t, x, y


def accumulate(
    chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, n_tasks: int, d: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts`` (T,), ``scatter`` (T, d+1, d+1) and ``moment`` (d, d) of a sample given in
    chunks (see the module docstring)."""
    counts = np.zeros(n_tasks, dtype=np.int64)
    scatter = np.zeros((n_tasks, d + 1, d + 1))
    moment = np.zeros((d, d))
    for t, x, y in chunks:
        z = np.concatenate([x, y[:, None]], axis=1)
        for task in range(n_tasks):
            zt = z[t == task]
            counts[task] += len(zt)
            scatter[task] += zt.T @ zt
        moment += (x * (y * y)[:, None]).T @ x
    return counts, scatter / size, 0.5 * (moment + moment.T) / size


def statistics_from_samples(
    t: np.ndarray, x: np.ndarray, y: np.ndarray, n_tasks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The statistics of raw samples of shape (R, m), (R, m, d), (R, m), batched, in the
    chunks :func:`accumulate` uses (so both paths give the same numbers)."""
    r, m, d = x.shape
    out = [accumulate(_chunks(t[i], x[i], y[i]), m, n_tasks, d) for i in range(r)]
    return tuple(np.array([o[j] for o in out]) for j in range(3))  # type: ignore[return-value]


def _chunks(t: np.ndarray, x: np.ndarray, y: np.ndarray):  # noqa: ANN202
    for j in range(0, len(x), CHUNK):
        yield t[j : j + CHUNK], x[j : j + CHUNK], y[j : j + CHUNK]
