"""Gaussian mixture with subspace-aware gating (paper section 6.3, Appendices J and K).

Model. Pre-training data ``z ~ (1/K) sum_i N(u*_i, I_d)`` (equal weights and identity
covariance known); the centres ``U* = (u*_1, ..., u*_K)`` (rows of a K x d matrix) are
``beta * I_{K,d}`` (centre i at ``beta e_i``) or given explicitly. The downstream design
comes from the same mixture and ``y = <theta*, psi_{U*}(x)> + eps``, ``Var eps = sigma2``.

Features (paper (6.3)-(6.4)). ``S(U) = sum_i (u_i - u_bar)(u_i - u_bar)^T``, ``r* = rank
S(U*)`` (K - 1 for distinct centres in general position), ``P_U`` the projector onto the
top-r* eigenspace of ``S(U)`` (orthonormal basis ``Q_U``, d x r*), projected
responsibilities ``pi_i(x; U) = softmax_i(<P u_i, P x> - |P u_i|^2 / 2)`` and
``psi_U(x) = (pi_1 P(x - u_1), pi_1, ..., pi_K P(x - u_K), pi_K)`` in the ambient
coordinates R^{K(d+1)} (dimension ``basis``). The symmetry is the relabelling of the
centres (S_K), under which psi is permuted blockwise (Lemma 4.1: the predictor is
invariant).

Reduced coordinates. ``psi_U(x) = B_U psi~_U(x)`` with ``B_U = blockdiag((Q_U, 0; 0, 1))``
(orthonormal columns) and ``psi~_U(x) = (pi_i Q_U^T (x - u_i), pi_i)_i`` in R^{K(r*+1)}.
Every Gram matrix in the ambient coordinates is ``B Sigma~ B^T``, so the min-norm
least-squares solutions are ``B`` times the reduced ones. All computations run in the
reduced coordinates: this is the ambient pseudo-inverse with its rank fixed at
``d_eff = K(r*+1)`` (smooth in U; the code of the authors uses a ridge of 1e-6 instead),
and, inside that space, numpy's rank tolerance (the population Gram is full rank there
for the configurations of the paper; ``d_eff_n = rank Sigma_n`` with the same tolerance).

Population expectations (Sigma, beta(U), Rep) are averages over one fixed Monte Carlo
sample of ``population_size`` points of the mixture, the same for every replicate (common
random numbers) and for the theory (G_L). It is stratified (exactly ``size / K`` points
per component, up to rounding) and is regenerated on demand from ``population_seed``,
a 63-bit integer drawn from the point's truth stream (so it depends on the population
parameters only) and stored in the truth; the Fisher sample (``fisher_size`` points) uses
an independent stream of the same seed. Both are cached in-process.

Pre-training. EM for the means (equal weights and identity covariance known), batched over
replicates with per-replicate stopping (relative change of the mean log-likelihood), flags
``converged``, ``n_iter``, ``loglik``, ``loglik_monotone``; initialised at U* plus
N(0, em_init_scale^2) noise or by k-means++ with restarts (best log-likelihood kept), from
the replicate's own generator. Label switching is harmless (Lemma 4.1); Hungarian matching
to U* is a diagnostic only.

Theory. The quotient (R^d)^K / S_K is locally Euclidean (discrete group), so the tangent
coordinates are the Kd entries of U and the retraction is U + v. The MLE is well specified:
``V = I(U*)^{-1}``, the Fisher information estimated by the score outer products
``s_i = pi_i^full(x)(x - u_i)`` on the Fisher sample. ``L(v) = -(I - Pi_{U*}) h_v`` with
``h_v = <theta*, D psi_U[v]>`` (Prop. G.23), computed analytically (including the
derivative of the eigenprojector P_U) and checked against central differences of the
population residual itself; ``G_L`` is its Gram matrix on the population sample and the
weights are ``eig(V^1/2 G_L V^1/2)``. No closed form exists (paper Cor. 6.6).

Notes. For r* = K - 1 the projected gate equals the full posterior (u_i - u_j lie in
range P_U, so the softmax arguments differ by terms common to all i); the code computes
the projected form (6.3) as printed, which also covers r* < K - 1. For U* = beta I_{K,d},
P* 1_d = 0, so f* = sum_i b_i pi_i.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..groups import PermutationGroup, alignment_variables
from ..limits import directional_derivatives, gchisq_weights, gram, sandwich
from ..linalg import pinv_psd, sym
from ._base import CaseStudy, Variables

C, C_, F, B = "component", "component_", "feature", "basis"
T, T_ = "tangent", "tangent_"

#: Defaults of the estimator settings (the schema's defaults), used when ``pretrain`` is
#: called without ``params``.
EM_DEFAULTS: dict[str, Any] = {
    "em_init": "perturbed_truth",
    "em_init_scale": 0.1,
    "em_restarts": 5,
    "em_tol": 1e-10,
    "em_max_iter": 1000,
}
#: The EM settings travel with the truth (every stage file carries it), so that ``pretrain``
#: can be called as ``pretrain(truth, data, rngs)``.
_EM_TRUTH: dict[str, tuple[Any, str]] = {
    "em_init": (str, "EM initialisation: perturbed_truth or kmeans++"),
    "em_init_scale": (float, "standard deviation of the perturbation of perturbed_truth"),
    "em_restarts": (int, "k-means++ seedings (kmeans++)"),
    "em_tol": (float, "EM tolerance on the relative change of the log-likelihood"),
    "em_max_iter": (int, "maximum number of EM iterations"),
}
#: Purposes of the streams derived from ``population_seed`` (never renumber).
POPULATION, FISHER = 0, 1
#: Relative eigenvalue size below which S(U*) is singular (defines r* = rank S(U*)).
RANK_RTOL = 1e-9
#: Rows per chunk in the Monte Carlo loops of the theory.
CHUNK = 8192
#: Groups of the jackknife standard error of E ||L(Z)||^2.
JACKKNIFE_GROUPS = 20


# ---------------------------------------------------------------------------- instance
def true_centers(params: Mapping[str, Any]) -> np.ndarray:
    """U* of shape (K, d): ``params['centers']`` or ``separation * I_{K,d}``."""
    k, d = int(params["K"]), int(params["d"])
    if params.get("centers") is not None:
        return np.array(params["centers"], dtype=float).reshape(k, d)
    return float(params["separation"]) * np.eye(k, d)


def true_theta(k: int, d: int, norm: float) -> np.ndarray:
    """theta* in R^{K(d+1)}: block i (= (theta_i, b_i)) proportional to (1/i) 1_{d+1},
    normalised to ``norm`` (paper App. K; the authors' code uses norm 10)."""
    theta = np.repeat(1.0 / np.arange(1, k + 1), d + 1)
    return norm * theta / np.linalg.norm(theta)


def scatter_rank(centers: np.ndarray) -> int:
    """r* = numerical rank of S(U) (eigenvalues above ``RANK_RTOL`` times the largest)."""
    c = centers - centers.mean(axis=0)
    s = np.linalg.svd(c, compute_uv=False) ** 2
    return int(np.sum(s > RANK_RTOL * s.max())) if s.max() > 0 else 0


# ---------------------------------------------------------------------------- features
def gate_basis(centers: np.ndarray, r: int) -> np.ndarray:
    """Orthonormal basis Q_U of the top-r eigenspace of S(U), shape (..., d, r)."""
    c = centers - centers.mean(axis=-2, keepdims=True)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return np.swapaxes(vt[..., :r, :], -1, -2)


def _softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    w = np.exp(logits - logits.max(axis=axis, keepdims=True))
    w /= w.sum(axis=axis, keepdims=True)
    return w


def responsibilities(x: np.ndarray, centers: np.ndarray, q: np.ndarray | None) -> np.ndarray:
    """Projected responsibilities (6.3) ``softmax_i(<Pu_i, Px> - |Pu_i|^2/2)``, or the full
    posterior when ``q`` is None. x of shape (..., N, d), centers (..., K, d); returns
    (..., N, K)."""
    if q is None:
        xp, up = x, centers
    else:
        xp, up = x @ q, centers @ q
    logits = xp @ np.swapaxes(up, -1, -2) - 0.5 * np.sum(up**2, axis=-1)[..., None, :]
    return _softmax(logits)


def features_t(x: np.ndarray, centers: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reduced features, transposed (feature-major, the fast layout): psi~ of shape
    (K (r + 1), N) and pi of shape (K, N), for x (N, d), centers (K, d), q (d, r)."""
    xq = (x @ q).T  # (r, N)
    uq = centers @ q  # (K, r)
    pi = _softmax(uq @ xq - 0.5 * np.sum(uq**2, axis=-1)[:, None], axis=0)
    k, r = uq.shape
    psi = np.empty((k, r + 1, xq.shape[1]))
    np.subtract(xq[None], uq[:, :, None], out=psi[:, :r])
    psi[:, :r] *= pi[:, None, :]
    psi[:, r] = pi
    return psi.reshape(k * (r + 1), -1), pi


def features_reduced(
    x: np.ndarray, centers: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reduced features ``psi~_U(x) = (pi_i Q^T (x - u_i), pi_i)_i``.

    Parameters
    ----------
    x : ndarray of shape (N, d)
    centers : ndarray of shape (K, d)
    q : ndarray of shape (d, r), from :func:`gate_basis`

    Returns
    -------
    psi : ndarray of shape (N, K (r + 1))
    pi : ndarray of shape (N, K)
    """
    psi, pi = features_t(x, centers, q)
    return psi.T, pi.T


def features(x: np.ndarray, centers: np.ndarray, r: int) -> np.ndarray:
    """The ambient feature map (6.4), shape (N, K (d + 1)), written literally (used to
    check the reduced coordinates)."""
    q = gate_basis(centers, r)
    p = q @ q.T
    pi = responsibilities(x, centers, q)
    z = (x[:, None, :] - centers) @ p
    psi = np.concatenate([pi[..., None] * z, pi[..., None]], axis=-1)
    return psi.reshape(len(x), -1)


def reduce_theta(theta: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """``B_U^T theta`` for an ambient coefficient vector of length K(d+1)."""
    blocks = theta.reshape(k, -1)
    return np.concatenate([blocks[:, :-1] @ q, blocks[:, -1:]], axis=1).ravel()


def embed_theta(coef: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """``B_U coef``: reduced coefficients of length K(r+1) to ambient R^{K(d+1)}."""
    blocks = coef.reshape(k, -1)
    return np.concatenate([blocks[:, :-1] @ q.T, blocks[:, -1:]], axis=1).ravel()


# ---------------------------------------------------------------------------- population
def _keyed_generator(seed: int, purpose: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), purpose])))


def mixture_sample(centers: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` i.i.d. points of the mixture (labels, then noise, drawn from ``rng``)."""
    labels = rng.integers(0, len(centers), size=size)
    x = rng.standard_normal((size, centers.shape[1]))
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
    psi, _ = features_reduced(x, centers, q)
    return psi @ reduce_theta(theta, q, len(centers))


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
    """
    x, f = population(truth)
    r = int(truth["rank_S"])
    q = gate_basis(centers, r)
    psi, _ = features_t(x, centers, q)
    n = len(x)
    sigma = sym(psi @ psi.T) / n
    sigma_pinv, _ = pinv_psd(sigma)
    beta = sigma_pinv @ (psi @ f) / n
    e = f - beta @ psi
    return {
        "q": q,
        "sigma": sigma,
        "sigma_pinv": sigma_pinv,
        "beta": beta,
        "rep": np.float64(e @ e / n),
        "residual": e,
    }


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


# ---------------------------------------------------------------------------- theory
def _eigen(centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = centers - centers.mean(axis=0)
    lam, vec = np.linalg.eigh(c.T @ c)
    return lam[::-1], vec[:, ::-1]


def projector_derivatives(centers: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """Derivatives of the gating projector: ``DP_U[E_jk] = Q_t M_jk Q_b^T + Q_b M_jk^T Q_t^T``
    for every coordinate direction (centre j, coordinate k) of U.

    With S = sum_i c_i c_i^T (c_i = u_i - u_bar), ``DS[E_jk] = e_k c_j^T + c_j e_k^T``, and
    the eigenprojector onto the top-r eigenspace moves by
    ``sum_{a <= r < b} (q_a^T DS q_b) / (lam_a - lam_b) (q_a q_b^T + q_b q_a^T)``.

    Returns
    -------
    vec : ndarray of shape (d, d), eigenvectors of S(U) (decreasing eigenvalues): Q_t is the
        first r columns, Q_b the others
    m : ndarray of shape (K, d, r, d - r), ``m[j, k] = M_jk``
    """
    lam, vec = _eigen(centers)
    top, bot = vec[:, :r], vec[:, r:]
    c = centers - centers.mean(axis=0)
    ct, cb = c @ top, c @ bot  # (K, r), (K, d - r)
    gap = lam[:r, None] - lam[None, r:]
    # m[j, k, a, b] = (q_a[k] c~_j[b] + c~_j[a] q_b[k]) / (lam_a - lam_b)
    m = (
        top[None, :, :, None] * cb[:, None, None, :] + ct[:, None, :, None] * bot[None, :, None, :]
    ) / gap
    return vec, m


def _h_chunk(
    x: np.ndarray,
    centers: np.ndarray,
    vec: np.ndarray,
    r: int,
    theta_sp: np.ndarray,
    b: np.ndarray,
    mflat: np.ndarray,
    ca: np.ndarray,
    ct: np.ndarray,
    ptheta: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``h_v(x) = <theta*, D psi_U(x)[v]>`` at U* for all Kd coordinate directions v, and the
    reduced features at U*, on one chunk of points.

    With ``z_i = x - u_i``, ``g_i = theta_i^T P z_i + b_i`` (so f* = sum pi_i g_i),
    ``rho_i = pi_i (g_i - f*)`` and the softmax arguments ``a_i = u_i^T P x - u_i^T P u_i/2``:
    ``h_v = sum_i rho_i D a_i[v] + sum_i pi_i theta_i^T DP[v] z_i - pi_j (P theta_j)_k``
    for v = E_jk, ``D a_i[v] = delta_ij (P z_j)_k + (DP[v] u_i)^T (x - u_i / 2)``. The
    terms in DP[v] x reduce, by the low rank of DP, to ``<M_v, a x_b^T + x_t b^T>`` with
    ``x_t = Q_t^T x``, ``x_b = Q_b^T x``, ``a = sum_i (rho_i Q_t^T u_i + pi_i Q_t^T theta_i)``
    and ``b`` the same with Q_b: one matrix product of size n x r(d-r) x Kd.

    Returns (h of shape (n, Kd), psi~ of shape (n, K(r+1))).
    """
    n, d = x.shape
    k = len(centers)
    q = vec[:, :r]
    psi, pi = features_reduced(x, centers, q)
    xt, xb = x @ q, x @ vec[:, r:]
    ut, ub = centers @ q, centers @ vec[:, r:]
    pzq = xt[:, None, :] - ut  # (n, K, r): Q^T z_i
    g = np.einsum("nkr,kr->nk", pzq, theta_sp @ q) + b
    f = np.sum(pi * g, axis=1, keepdims=True)
    rho = pi * (g - f)
    h = ((rho[..., None] * pzq) @ q.T).reshape(n, k * d)  # rho_j (P z_j)_k
    at = rho @ ut + pi @ (theta_sp @ q)  # (n, r)
    ab = rho @ ub + pi @ (theta_sp @ vec[:, r:])  # (n, d - r)
    xi = at[:, :, None] * xb[:, None, :] + xt[:, :, None] * ab[:, None, :]
    h += xi.reshape(n, -1) @ mflat
    h -= rho @ ca + pi @ ct
    h -= (pi[..., None] * ptheta).reshape(n, k * d)
    return h, psi


def residual_derivative_gram(
    truth: Mapping[str, np.ndarray], groups: int = JACKKNIFE_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums for G_L by the analytic derivative (paper Prop. G.23).

    For any theta with ``T_{U*} theta = f*`` (here the ambient theta* itself),
    ``e_U = (I - Pi_U)(T_{U*} - T_U) theta`` exactly, hence
    ``L(v) = -(I - Pi_{U*}) h_v`` with ``h_v = <theta*, D psi_U[v]>`` (see
    :func:`_h_chunk`). This equals the implicit-function derivative
    ``-D psi[v]^T beta - psi^T D beta[v]``, ``D beta = Sigma^+ (Dc - D Sigma beta)``,
    without forming D beta; Pi_{U*} is the least-squares projection on the same sample.

    Returns
    -------
    hh : (G, Kd, Kd) sums of h h^T per group
    ph : (G, p, Kd) sums of psi~ h^T
    pp : (G, p, p) sums of psi~ psi~^T
    counts : (G,) rows per group
    """
    centers = np.asarray(truth["centers"], dtype=float)
    theta = np.asarray(truth["theta"], dtype=float)
    r = int(truth["rank_S"])
    k, d = centers.shape
    kd = k * d
    x, _ = population(truth)
    vec, m = projector_derivatives(centers, r)
    q = vec[:, :r]
    blocks = theta.reshape(k, d + 1)
    theta_sp, b = blocks[:, :d], blocks[:, d]
    dp = q @ m @ vec[:, r:].T
    dp = (dp + np.swapaxes(dp, -1, -2)).reshape(kd, d, d)  # DP[E_jk], flat over (j, k)
    ca = 0.5 * np.einsum("vab,ia,ib->iv", dp, centers, centers)  # u_i^T DP_v u_i / 2
    ct = np.einsum("vab,ia,ib->iv", dp, theta_sp, centers)  # theta_i^T DP_v u_i
    mflat = m.reshape(kd, -1).T  # (r (d - r), Kd)
    ptheta = theta_sp @ (q @ q.T)  # (K, d): P theta_i
    p = k * (r + 1)
    hh = np.zeros((groups, kd, kd))
    ph = np.zeros((groups, p, kd))
    pp = np.zeros((groups, p, p))
    edges = np.linspace(0, len(x), groups + 1).astype(int)
    for g in range(groups):
        for start in range(edges[g], edges[g + 1], CHUNK):
            xc = x[start : min(start + CHUNK, edges[g + 1])]
            h, psi = _h_chunk(xc, centers, vec, r, theta_sp, b, mflat, ca, ct, ptheta)
            hh[g] += h.T @ h
            ph[g] += psi.T @ h
            pp[g] += psi.T @ psi
    return hh, ph, pp, np.diff(edges)


def fisher_sums(
    truth: Mapping[str, np.ndarray], groups: int = JACKKNIFE_GROUPS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group sums of the score outer products ``s s^T`` (s_i = pi_i^full (x - u_i)),
    and of ``E[pi_i] I - E[pi_i z_i z_i^T]`` (the block-diagonal part of the expected
    Hessian minus the score covariance), on the Fisher sample."""
    centers = np.asarray(truth["centers"], dtype=float)
    k, d = centers.shape
    x = stratified_sample(truth, FISHER)
    ss = np.zeros((groups, k * d, k * d))
    extra = np.zeros((k, d, d))
    edges = np.linspace(0, len(x), groups + 1).astype(int)
    for g in range(groups):
        for start in range(edges[g], edges[g + 1], CHUNK):
            xc = x[start : min(start + CHUNK, edges[g + 1])]
            pi = responsibilities(xc, centers, None)
            z = xc[:, None, :] - centers
            s = (pi[..., None] * z).reshape(len(xc), k * d)
            ss[g] += s.T @ s
            zt = np.swapaxes(z, 0, 1)  # (K, n, d)
            extra += np.swapaxes(pi.T[..., None] * zt, -1, -2) @ zt
            extra -= pi.sum(axis=0)[:, None, None] * np.eye(d)
    return ss, -extra / len(x), np.diff(edges)


def _g_l(hh: np.ndarray, ph: np.ndarray, pp: np.ndarray, n: float) -> np.ndarray:
    """``G_L = (1/n) sum (I - Pi) h ((I - Pi) h)^T`` from sums over n points."""
    pinv, _ = pinv_psd(pp / n)
    return sym(hh / n - (ph / n).T @ pinv @ (ph / n))


# ---------------------------------------------------------------------------- the case
class GaussianMixture(CaseStudy):
    """Gaussian mixture with subspace-aware gating; EM pre-training of the centres."""

    name: ClassVar[str] = "gmm"
    group: ClassVar[Any] = PermutationGroup
    #: raw samples at m = 2e5 are too large to store: the stages regenerate them from the
    #: keyed streams (see :meth:`pretrain_from_streams` for a memory-bounded loop)
    stores_data: ClassVar[bool] = False

    @classmethod
    def check_params(cls, params: Mapping[str, Any], prefix: str = "params") -> None:
        k, d = int(params["K"]), int(params["d"])
        centers = params.get("centers")
        if centers is None:
            if d < k:
                raise ConfigError(
                    f"invalid config key '{prefix}.d': the centres separation * I_(K,d) need "
                    f"d >= K = {k}; got d = {d} (or give 'centers')"
                )
        else:
            rows = list(centers)
            if len(rows) != k or any(len(row) != d for row in rows):
                raise ConfigError(
                    f"invalid config key '{prefix}.centers': expected K = {k} lists of d = {d} "
                    f"numbers; got {len(rows)} rows of lengths {[len(r) for r in rows]}"
                )
            u = np.array(rows, dtype=float)
            dist = np.linalg.norm(u[:, None] - u[None], axis=-1)
            dist = np.where(np.eye(k, dtype=bool), np.inf, dist)
            if dist.min() <= 1e-9 * max(1.0, float(np.abs(u).max())):
                raise ConfigError(
                    f"invalid config key '{prefix}.centers': the centres must be distinct"
                )
        for key, least in (("population_size", 10 * k * k), ("fisher_size", 10 * k * d)):
            if key in params and int(params[key]) < least:
                raise ConfigError(
                    f"invalid config key '{prefix}.{key}': expected at least {least} points "
                    f"(K = {k}, d = {d}); got {params[key]}"
                )

    # ------------------------------------------------------------------ truth and data
    @classmethod
    def truth(cls, params: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        k, d = int(params["K"]), int(params["d"])
        centers = true_centers(params)
        theta = true_theta(k, d, float(params["theta_norm"]))
        r = scatter_rank(centers)
        seed = int(rng.integers(0, 2**63 - 1))
        return {
            "centers": ((C, F), centers, {"long_name": "true centres U* (K x d)"}),
            "theta": ((B,), theta, {"long_name": "downstream coefficients theta* (K(d+1))"}),
            "sigma2": ((), np.float64(params["sigma2"]), {"long_name": "label noise variance"}),
            "rank_S": (
                (),
                np.int64(r),
                {"long_name": "r* = rank S(U*), dimension of the gating subspace"},
            ),
            "population_seed": (
                (),
                np.int64(seed),
                {"long_name": "seed of the fixed population and Fisher Monte Carlo samples"},
            ),
            "population_size": (
                (),
                np.int64(params["population_size"]),
                {"long_name": "size of the population Monte Carlo sample"},
            ),
            "fisher_size": (
                (),
                np.int64(params["fisher_size"]),
                {"long_name": "size of the Fisher-information Monte Carlo sample"},
            ),
            **{
                key: ((), np.asarray(cast(params.get(key, EM_DEFAULTS[key]))), {"long_name": text})
                for key, (cast, text) in _EM_TRUTH.items()
            },
        }

    @classmethod
    def sample(
        cls,
        truth: Mapping[str, np.ndarray],
        size: int,
        rngs: Sequence[np.random.Generator],
        role: str,
        sampling: str,
    ) -> Variables:
        """Raw mixture samples; for each replicate the labels, then the noise, come from its
        generator, so fresh generators with the same keys give the same data."""
        if role not in ("pretrain", "downstream"):
            raise ValueError(f"role must be 'pretrain' or 'downstream'; got {role!r}")
        if sampling != "raw":
            raise ValueError(
                "the Gaussian mixture has no fixed-size sufficient statistic: sampling must be "
                f"'raw'; got {sampling!r}"
            )
        centers = np.asarray(truth["centers"], dtype=float)
        x = np.empty((len(rngs), size, centers.shape[1]))
        for i, rng in enumerate(rngs):
            x[i] = mixture_sample(centers, size, rng)
        if role == "pretrain":
            return {
                "x_pre": (("replicate", "sample_pre", F), x, {"long_name": "pre-training samples"})
            }
        return {
            "x_down": (("replicate", "sample", F), x, {"long_name": "downstream design samples"})
        }

    # ------------------------------------------------------------------ estimators
    @classmethod
    def pretrain(
        cls,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        rngs: Sequence[np.random.Generator] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> Variables:
        """EM from ``em_init``: ``perturbed_truth`` (U* + em_init_scale N(0, I), one run) or
        ``kmeans++`` (``em_restarts`` seedings, the run of largest final log-likelihood
        kept). ``rngs``: one generator per replicate for the initialisation (the
        ``pretrain_algorithm`` stream). The EM settings are read from ``params`` if given,
        else from the truth (``em_*`` variables), else :data:`EM_DEFAULTS`."""
        cfg = dict(EM_DEFAULTS)
        for key, (cast, _) in _EM_TRUTH.items():
            if params is not None and key in params:
                cfg[key] = params[key]
            elif key in truth:
                cfg[key] = cast(np.asarray(truth[key]).item())
        x = np.asarray(data["x_pre"], dtype=float)
        n_rep = len(x)
        if rngs is None or len(rngs) != n_rep:
            raise ValueError(
                "GaussianMixture.pretrain needs rngs: one generator per replicate "
                f"({n_rep}) for the EM initialisation"
            )
        centers = np.asarray(truth["centers"], dtype=float)
        k, d = centers.shape
        tol, max_iter = float(cfg["em_tol"]), int(cfg["em_max_iter"])
        if cfg["em_init"] == "perturbed_truth":
            init = np.array(
                [centers + cfg["em_init_scale"] * g.standard_normal((k, d)) for g in rngs]
            )
            best = em(x, init, tol, max_iter)
        elif cfg["em_init"] == "kmeans++":
            best = None
            for _ in range(int(cfg["em_restarts"])):
                init = np.array([kmeans_plus_plus(xi, k, g) for xi, g in zip(x, rngs, strict=True)])
                run = em(x, init, tol, max_iter)
                if best is None:
                    best = run
                else:
                    better = run["loglik"] > best["loglik"]
                    for key in best:
                        best[key] = np.where(
                            better.reshape((-1,) + (1,) * (best[key].ndim - 1)), run[key], best[key]
                        )
        else:
            raise ValueError(
                f"em_init must be 'perturbed_truth' or 'kmeans++'; got {cfg['em_init']!r}"
            )
        rep = best["centers"]
        return {
            "representation": (
                ("replicate", C, F),
                rep,
                {"long_name": "EM estimate of the centres U_hat (K x d), EM's labelling"},
            ),
            "descriptor": (
                ("replicate", C, F),
                canonical_order(rep),
                {"long_name": "orbit-invariant descriptor: the centres in lexicographic order"},
            ),
            "converged": (
                ("replicate",),
                best["converged"],
                {"long_name": f"EM stopped on relative log-likelihood change <= {tol:g}"},
            ),
            "n_iter": (("replicate",), best["n_iter"], {"long_name": "EM iterations (M-steps)"}),
            "loglik": (
                ("replicate",),
                best["loglik"],
                {"long_name": "mean log-likelihood per pre-training sample at U_hat"},
            ),
            "loglik_monotone": (
                ("replicate",),
                best["monotone"],
                {"long_name": "EM log-likelihood never decreased (beyond 1e-12 relative)"},
            ),
        }

    @classmethod
    def align(
        cls, truth: Mapping[str, np.ndarray], est: Mapping[str, np.ndarray], m: int
    ) -> Variables:
        """Hungarian matching of the centres to U* (squared Euclidean cost)."""
        aligned, g, dist = PermutationGroup.align(est["representation"], truth["centers"])
        return {
            **alignment_variables(
                aligned, g, dist, (C, F), "U*", "Hungarian matching (permutation G U_hat)"
            ),
            "center_error": (
                ("replicate",),
                m * dist**2,
                {"long_name": "m ||G U_hat - U*||_F^2 (matched centres)"},
            ),
        }

    @classmethod
    def downstream(
        cls,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        design: Mapping[str, np.ndarray],
        n: int,
    ) -> Variables:
        """Exact conditional risk (Prop. B.1) with population expectations on the fixed
        population sample: Rep = E e^2, e = f* - psi^T beta(U_hat); with the design's
        ``theta_bar = Sigma_n^+ (1/n) sum psi(x_i) f*(x_i)`` (the noise-averaged min-norm
        OLS coefficient), Leak = (theta_bar - beta)^T Sigma (theta_bar - beta) (=
        theta_e^T Sigma theta_e, theta_e = Sigma_n^+ (1/n) sum psi e, when Sigma_n is
        invertible); Var = sigma2 tr(Sigma Sigma_n^+) / n."""
        x_down = np.asarray(design["x_down"], dtype=float)
        centers_star = np.asarray(truth["centers"], dtype=float)
        theta = np.asarray(truth["theta"], dtype=float)
        r = int(truth["rank_S"])
        sigma2 = float(truth["sigma2"])
        n_rep, k = len(representation), centers_star.shape[0]
        d = centers_star.shape[1]
        out = {name: np.empty(n_rep) for name in ("rep", "leak", "var")}
        rank = np.empty(n_rep, dtype=np.int64)
        coef = np.empty((n_rep, k * (d + 1)))
        for i in range(n_rep):
            u = np.asarray(representation[i], dtype=float)
            fit = population_fit(truth, u)
            q, beta, sigma = fit["q"], fit["beta"], fit["sigma"]
            psi_n, _ = features_reduced(x_down[i], u, q)
            f_n = regression_function(x_down[i], centers_star, theta, r)
            e_n = f_n - psi_n @ beta
            sigma_n = sym(psi_n.T @ psi_n) / len(psi_n)
            sn_pinv, rank[i] = pinv_psd(sigma_n)
            dev = sn_pinv @ (psi_n.T @ e_n) / len(psi_n) + (sn_pinv @ sigma_n @ beta - beta)
            out["rep"][i] = fit["rep"]
            out["leak"][i] = dev @ sigma @ dev
            out["var"][i] = sigma2 / n * np.sum(sigma * sn_pinv)
            coef[i] = embed_theta(beta + dev, q, k)
        return {
            "coef": (
                ("replicate", B),
                coef,
                {"long_name": "min-norm OLS coefficient averaged over label noise (ambient)"},
            ),
            "rep": (("replicate",), out["rep"], {"long_name": "representation error Rep(U_hat)"}),
            "leak": (("replicate",), out["leak"], {"long_name": "leakage term Leak_n(U_hat)"}),
            "var": (
                ("replicate",),
                out["var"],
                {"long_name": "variance term sigma^2 tr(Sigma Sigma_n^+)/n"},
            ),
            "d_eff_n": (("replicate",), rank, {"long_name": "rank Sigma_n"}),
        }

    # ------------------------------------------------------------------ memory-bounded runs
    @classmethod
    def floats_per_sample(cls, truth: Mapping[str, np.ndarray]) -> int:
        return int(np.asarray(truth["centers"]).shape[1])

    # ------------------------------------------------------------------ theory
    @classmethod
    def limit(cls, truth: Mapping[str, np.ndarray], method: str = "analytic") -> Variables:
        """V = I(U*)^{-1} (Fisher information from the score outer products on the Fisher
        sample); G_L from the analytic derivative of the residual (``method='analytic'``,
        default) or from central differences of the population residual itself along the
        Kd coordinate directions with the retraction U* + t v (``'finite_difference'``;
        the quotient by S_K is locally Euclidean). Weights eig(V^1/2 G_L V^1/2)."""
        centers = np.asarray(truth["centers"], dtype=float)
        r = int(truth["rank_S"])
        k, d = centers.shape
        ss, hess_extra, nf = fisher_sums(truth)
        score_cov = sym(ss.sum(axis=0)) / nf.sum()
        hessian = score_cov.copy()
        for i in range(k):
            hessian[i * d : (i + 1) * d, i * d : (i + 1) * d] += hess_extra[i]
        # Well specified: H* = Sigma* = I(U*), so V = I^-1 (sandwich() also checks that I is
        # well conditioned); the Monte Carlo Hessian is reported, not used.
        v = sandwich(score_cov, score_cov)
        se = np.nan
        if method == "analytic":
            hh, ph, pp, npop = residual_derivative_gram(truth)
            g_l = _g_l(hh.sum(0), ph.sum(0), pp.sum(0), float(npop.sum()))
            est = []
            for g in range(len(npop)):
                v_g = np.linalg.inv(sym(ss.sum(0) - ss[g]) / (nf.sum() - nf[g]))
                gl_g = _g_l(
                    hh.sum(0) - hh[g], ph.sum(0) - ph[g], pp.sum(0) - pp[g], npop.sum() - npop[g]
                )
                est.append(np.sum(v_g * gl_g))
            est = np.array(est)
            se = float(np.sqrt((len(est) - 1) / len(est) * np.sum((est - est.mean()) ** 2)))
        elif method == "finite_difference":
            g_l = finite_difference_gram(truth)
        else:
            raise ValueError(f"method must be 'analytic' or 'finite_difference'; got {method!r}")
        weights = gchisq_weights(v, g_l)
        d_eff = k * (r + 1)
        return {
            "limit_weights": (
                ("term",),
                weights,
                {"long_name": "weights nu of ||L(Z)||^2 = sum nu chi2_1 (numerical)"},
            ),
            "law_center_error": (
                ("term",),
                np.clip(np.linalg.eigvalsh(v)[::-1], 0.0, None),
                {"long_name": "limit weights of m ||G U_hat - U*||_F^2: eigenvalues of V"},
            ),
            "V": ((T, T_), v, {"long_name": "V = I(U*)^-1, coordinates (centre, feature)"}),
            "score_cov": (
                (T, T_),
                score_cov,
                {"long_name": "Fisher information E[s s^T] (Monte Carlo)"},
            ),
            "hessian": (
                (T, T_),
                hessian,
                {"long_name": "expected Hessian of the loss at U* (Monte Carlo, same sample)"},
            ),
            "G_L": ((T, T_), g_l, {"long_name": "Gram matrix of the residual map L"}),
            "mean_L2_se": (
                (),
                np.float64(se),
                {
                    "long_name": "jackknife Monte Carlo standard error of E||L(Z)||^2 "
                    f"({JACKKNIFE_GROUPS} groups of the population and Fisher samples)"
                },
            ),
            "sigma2": ((), np.float64(truth["sigma2"]), {"long_name": "noise variance"}),
            "d_eff": ((), np.int64(d_eff), {"long_name": "effective dimension K (r* + 1)"}),
            "d_base": (
                (),
                np.int64(d_eff + np.count_nonzero(weights)),
                {"long_name": "downstream-only dimension d_eff + rank G_L (numerical)"},
            ),
        }


def population_residual(truth: Mapping[str, np.ndarray], centers: np.ndarray) -> np.ndarray:
    """``e_U / sqrt(N)`` on the population sample: isometric coordinates of the population
    residual in L^2 of the sample (the function whose derivative is L)."""
    e = population_fit(truth, centers)["residual"]
    return e / np.sqrt(len(e))


def finite_difference_gram(
    truth: Mapping[str, np.ndarray], step: float | None = None
) -> np.ndarray:
    """G_L by central differences (Richardson) of :func:`population_residual` along the Kd
    coordinate directions; cost Kd x 4 population fits."""
    centers = np.asarray(truth["centers"], dtype=float)
    k, d = centers.shape
    basis = np.eye(k * d).reshape(k * d, k, d)
    if step is None:
        dist = np.linalg.norm(centers[:, None] - centers[None], axis=-1) + np.eye(k) * 1e300
        step = 1e-3 * float(dist.min())
    jac = directional_derivatives(
        lambda u: population_residual(truth, u), basis, lambda t: centers + t, step
    )
    return gram(jac)
