"""Multi-task case: the limit of each estimator from first principles, its closed form,
and the published bounds set beside it.

The descriptor is the projector ``P = B B^T`` on the Grassmannian Gr(d, k) (symmetry
B -> B Q, Q in O(k)); tangent coordinates z in the orthonormal basis of
:class:`~twostage.manifolds.Grassmannian` at ``P* = B* B*^T``.

* **Method of moments**: the M-estimator of ``L(P) = -tr(P M)``, ``M = E[y^2 x x^T]``, with
  per-sample loss ``-y^2 x^T P x``. H is the Riemannian Hessian on the Grassmannian
  (Euclidean gradient ``-M``, Euclidean Hessian 0: only the curvature term), S the exact
  covariance of the scores ``-y^2 x^T xi_i x`` (degree-4 Gaussian polynomials: moments of
  products of quadratic forms in ``(x, eps)``, task by task), ``V = H^-1 S H^-1``.
* **ERM**: an M-estimator of ``(P, W)`` on Gr(d, k) x R^{k T} (heads in the basis of the
  section ``B(P) = P B* (B*^T P B*)^{-1/2}``) with population loss
  ``sigma2_pre + (1/T) sum_t ||B* theta_t - B(P) w_t||^2``. H is its Hessian along the
  retraction at the truth (second differences of the population loss; the truth is a
  critical point); the per-sample score is ``-2 eps J_t^T x`` with ``J_t`` the derivative
  of the prediction coefficients ``B(P) w_t`` (differences of the same code), so
  ``S = 4 sigma2_pre (1/T) sum_t J_t^T J_t``; V is the P block of ``H^-1 S H^-1`` (the
  heads are nuisance parameters).

``G_L`` is the Gram matrix of the derivative of the population residual
``(I - P) B* theta_0`` (the function that computes Rep in the simulation) and the weights are
``eig(V^1/2 G_L V^1/2)``. With ``Lambda = (1/T) sum theta_t theta_t^T``,
``s_t^2 = ||theta_t||^2 + sigma2_pre`` and ``K = (1/T) sum_t (3 s_t^4 I + 12 s_t^2 theta_t
theta_t^T)``, the derivation by hand gives ``||L(Z)||^2 = c chi2_{d-k}`` with

    c_mom = theta_0^T Lambda^-1 K Lambda^-1 theta_0 / 4,
    c_erm = sigma2_pre theta_0^T Lambda^-1 theta_0,

shown beside the numerical limit (they agree to 1e-6; tested).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...gaussian import linear_form_moment
from ...limits import directional_derivatives, gchisq_weights, gram, sandwich
from ...linalg import sym
from ...manifolds import Grassmannian
from .._linear import population_fit


def task_second_moment(thetas: np.ndarray) -> np.ndarray:
    """``Lambda = (1/T) sum_t theta_t theta_t^T`` (k x k)."""
    return thetas.T @ thetas / len(thetas)


def _augmented(truth: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per task, ``a_t`` with ``y = a_t^T g`` for ``g = (x, eps)``, and Cov g."""
    b, thetas = truth["B"], truth["tasks"]
    d = b.shape[0]
    a = np.concatenate([thetas @ b.T, np.ones((len(thetas), 1))], axis=1)  # (T, d+1)
    cov = np.eye(d + 1)
    cov[d, d] = float(truth["sigma2_pre"])
    return a, cov


def _in_g(vectors: np.ndarray) -> np.ndarray:
    """Linear forms of x as linear forms of g = (x, eps): a zero last coordinate."""
    return np.concatenate([vectors, np.zeros((*vectors.shape[:-1], 1))], axis=-1)


def population_moment(truth: Mapping[str, np.ndarray]) -> np.ndarray:
    """``M = E[y^2 x x^T]`` (Isserlis, task by task)."""
    a, cov = _augmented(truth)
    d = cov.shape[0] - 1
    e = _in_g(np.eye(d))
    moments = [linear_form_moment([y, y, e[:, None], e[None, :]], cov) for y in a]
    return sym(np.mean(moments, axis=0))


def mom_sandwich(truth: Mapping[str, np.ndarray], geo: Grassmannian) -> tuple[np.ndarray, ...]:
    """``(H, S)`` of the method of moments at the truth (see the module docstring). The
    basis direction ``xi_l = (v_l w_l^T + w_l v_l^T)/sqrt 2`` gives the score
    ``-y^2 x^T xi_l x = -sqrt 2 y^2 (v_l^T x)(w_l^T x)``, a product of linear forms."""
    m = population_moment(truth)
    hess = geo.riemannian_hessian(-m, lambda xi: np.zeros_like(xi))
    a, cov = _augmented(truth)
    v, w = (_in_g(f) for f in geo.tangent_factors())
    mean = np.zeros(len(v))
    second = np.zeros((len(v), len(v)))
    for y in a:
        mean += -np.sqrt(2.0) * linear_form_moment([y, y, v, w], cov) / len(a)
        second += (
            2.0
            * linear_form_moment([y, y, y, y, v[:, None], w[:, None], v[None, :], w[None, :]], cov)
            / len(a)
        )
    # the mean score is -<M, xi> = 0 at the truth (the tangent gradient vanishes)
    return hess, sym(second - np.outer(mean, mean))


def _joint_retraction(truth: Mapping[str, np.ndarray], geo: Grassmannian):  # noqa: ANN202
    """Coefficients ``v_t = B(P) w_t`` (T x d) at the joint coordinates (z_P, z_W)."""
    thetas = truth["tasks"]
    basis = geo.tangent_basis()
    q = geo.dim

    def coefficients(z: np.ndarray) -> np.ndarray:
        p = geo.retract(np.einsum("i,iab->ab", z[:q], basis))
        heads = thetas + z[q:].reshape(thetas.shape)
        return heads @ geo.section(p).T

    return coefficients


def erm_sandwich(
    truth: Mapping[str, np.ndarray], geo: Grassmannian, step: float = 1e-3
) -> tuple[np.ndarray, ...]:
    """``(H, S)`` of least squares over (P, heads) at the truth, on the joint tangent
    space (P coordinates first). With ``J_t`` the derivative of the prediction
    coefficients ``v_t = B(P) w_t`` along the retraction (differences of the same code),
    the population loss ``sigma2_pre + (1/T) sum_t ||B* theta_t - v_t||^2`` has residual 0
    at the truth, so its Hessian there is exactly ``H = (2/T) sum_t J_t^T J_t`` (checked
    against second differences of the loss in the tests), and the per-sample score
    ``-2 eps J_t^T x`` has covariance ``S = (4 sigma2_pre / T) sum_t J_t^T J_t``."""
    thetas = truth["tasks"]
    sigma2_pre = float(truth["sigma2_pre"])
    coefficients = _joint_retraction(truth, geo)
    dim = geo.dim + thetas.size
    jac = directional_derivatives(coefficients, np.eye(dim), lambda z: z, step)  # (dim, T, d)
    gram_j = np.einsum("itd,jtd->ij", jac, jac) / len(thetas)
    return sym(2.0 * gram_j), sym(4.0 * sigma2_pre * gram_j)


def erm_population_loss(truth: Mapping[str, np.ndarray], geo: Grassmannian):  # noqa: ANN201
    """The ERM population loss as a function of the joint coordinates (for checks)."""
    target = truth["tasks"] @ truth["B"].T
    coefficients = _joint_retraction(truth, geo)
    sigma2_pre = float(truth["sigma2_pre"])
    return lambda z: sigma2_pre + float(np.mean(np.sum((target - coefficients(z)) ** 2, 1)))


def residual_gram(truth: Mapping[str, np.ndarray], geo: Grassmannian) -> np.ndarray:
    """G_L: Gram matrix of the derivative of the population residual of f* on the features
    ``B(P)^T x`` (Sigma_down = I, so the residual coefficients are isometric L2
    coordinates), along the retraction."""
    w_star = truth["w_star"]
    eye = np.eye(len(w_star))

    def residual(p: np.ndarray) -> np.ndarray:
        return population_fit(eye, w_star, geo.section(p).T)[0]

    jac = directional_derivatives(residual, geo.tangent_basis(), geo.retract, 1e-3)
    return gram(jac)


def closed_forms(truth: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The constants c of ``||L(Z)||^2 = c chi2_{d-k}`` derived by hand for each estimator."""
    thetas, theta0 = truth["tasks"], truth["beta"]
    lam_inv = np.linalg.inv(task_second_moment(thetas))
    s2 = np.sum(thetas**2, axis=1) + float(truth["sigma2_pre"])
    k = thetas.shape[1]
    kmat = np.mean(
        [
            3 * s**2 * np.eye(k) + 12 * s * np.outer(th, th)
            for s, th in zip(s2, thetas, strict=True)
        ],
        axis=0,
    )
    u = lam_inv @ theta0
    return {
        "mom": float(u @ kmat @ u / 4.0),
        "erm": float(truth["sigma2_pre"]) * float(theta0 @ u),
    }


def limit(truth: Mapping[str, np.ndarray], method: str) -> dict[str, np.ndarray]:
    """V, H, S, G_L and the weights of ``||L(Z)||^2`` for ``method`` ('mom' or 'erm')."""
    geo = Grassmannian(truth["B"])
    q = geo.dim
    if method == "mom":
        hess, score = mom_sandwich(truth, geo)
        v = sandwich(hess, score)
    elif method == "erm":
        hess, score = erm_sandwich(truth, geo)
        v = sandwich(hess, score)[:q, :q]
    else:
        raise ValueError(f"method must be 'mom' or 'erm'; got {method!r}")
    g_l = residual_gram(truth, geo)
    return {
        "weights": gchisq_weights(v, g_l),
        "V": v,
        "hessian": hess,
        "score_cov": score,
        "G_L": g_l,
        # m ||(I - P*) B_hat||_F^2 -> ||Z||^2 / 2 (coordinates z <-> X = z / sqrt 2)
        "subspace_weights": np.clip(np.linalg.eigvalsh(v)[::-1], 0.0, None) / 2.0,
    }


def bounds(truth: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Published upper bounds on the scale of E||L(Z)||^2 (m times the pre-training part of
    the excess risk), as rates with unit constants and log factors dropped:

    * Tripuraneni, Jin & Jordan (2021), Thm 3 (MoM subspace: sin^2 theta <~ kappa_bar d k /
      (nu m)) with Thm 4 (transfer: <~ ||theta_0||^2 sin^2 theta): ``||theta_0||^2 kappa_bar
      d k / nu = ||theta_0||^2 tr(Lambda) d / nu^2``, nu = lambda_min(Lambda);
    * Du, Hu, Kakade, Lee & Lei (2021), Thm 4.1 (ERM), unpacked to a fixed target:
      ``sigma2_pre ||theta_0||^2 (k d + k T) / nu``."""
    thetas, theta0 = truth["tasks"], truth["beta"]
    lam = np.linalg.eigvalsh(task_second_moment(thetas))
    nu, (n_tasks, k) = float(lam[0]), thetas.shape
    d = truth["B"].shape[0]
    norm2 = float(theta0 @ theta0)
    return {
        "tripuraneni": norm2 * float(lam.sum()) * d / nu**2,
        "du": float(truth["sigma2_pre"]) * norm2 * (k * d + k * n_tasks) / nu,
    }
