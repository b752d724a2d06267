"""Multi-task case: the two pre-training estimators, batched over replicates.

* **Method of moments** (Tripuraneni, Jin & Jordan 2021, Algorithm 1): ``B_hat`` = the top-k
  eigenvectors of ``(1/m) sum y_i^2 x_i x_i^T``. For Gaussian x its expectation is
  ``(mean ||theta_t||^2 + sigma2_pre) I + 2 B* Lambda B*^T`` with
  ``Lambda = (1/T) sum theta_t theta_t^T``: the top-k eigenspace is range(B*) when Lambda is
  non-singular (task diversity).
* **ERM** (Du, Hu, Kakade, Lee & Lei 2021): least squares over the representation and the T
  task heads jointly, using the task labels,
  ``min_{B, W} (1/m) sum_i (y_i - w_{t_i}^T B^T x_i)^2``. Only span(B) is identified. We
  minimise in the chart ``B = B0 + U Delta`` of the Grassmannian around the start B0
  (``U`` an orthonormal basis of its complement; the chart fixes the GL(k) gauge, so the
  problem in (Delta, W) is non-degenerate) by a batched Newton method with |eigenvalue|
  regularisation and backtracking (as for the spectral case); the loss, gradient and
  Hessian are exact polynomials in the per-task statistics. The start is the top-k left
  singular vectors of the per-task least-squares solutions (weighted by the task
  frequencies); the heads start at their least-squares values given B0.
"""

from __future__ import annotations

import numpy as np

from ...linalg import eigh_descending, sym
from ...optim import newton


def split_scatter(scatter: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``S_t`` (..., T, d, d), ``c_t`` (..., T, d) and ``yy_t`` (..., T) of a scatter array."""
    return scatter[..., :-1, :-1], scatter[..., :-1, -1], scatter[..., -1, -1]


def orthonormal(b: np.ndarray) -> np.ndarray:
    """``B (B^T B)^{-1/2}``: the orthonormal frame closest to B (same span), batched."""
    w, v = np.linalg.eigh(sym(np.swapaxes(b, -1, -2) @ b))
    return b @ ((v / np.sqrt(w)[..., None, :]) @ np.swapaxes(v, -1, -2))


def method_of_moments(moment: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Top-k eigenvectors of each ``moment`` (signs: largest entry positive)."""
    lam, vec = eigh_descending(moment)
    b = vec[..., :k]
    resid = moment @ b - b * lam[..., None, :k]  # (I - P) M B = 0 at the top-k eigenspace
    return {
        "b": b,
        "objective": -np.sum(lam[..., :k], axis=-1),  # -tr(P_hat M_hat)
        "grad_norm": np.sqrt(2.0) * np.linalg.norm(resid, axis=(-2, -1)),
        "eigengap": lam[..., k - 1] - lam[..., k],
    }


def _pinv_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.linalg.pinv(a, hermitian=True) @ b[..., None])[..., 0]


def erm_start(scatter: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Start B0 (R, d, k) and an orthonormal basis U of its complement (R, d, d - k): the
    top-k left singular vectors of ``[sqrt(p_t) w_t]_t``, w_t the per-task least-squares
    solutions (min-norm when a task has fewer than d samples), p_t = tr S_t / tr sum S."""
    s, c, _ = split_scatter(scatter)
    w = _pinv_solve(s, c)  # (R, T, d)
    mass = np.trace(s, axis1=-2, axis2=-1)
    weight = np.sqrt(mass / mass.sum(axis=-1, keepdims=True))
    u, _, _ = np.linalg.svd(np.swapaxes(w * weight[..., None], -1, -2), full_matrices=True)
    return u[..., :k], u[..., k:]


def _loss_parts(delta, heads, b0, u, s, c, yy):  # noqa: ANN001, ANN202
    b = b0 + u @ delta  # (R, d, k)
    v = np.einsum("rdk,rtk->rtd", b, heads)  # (R, T, d)
    sv = np.einsum("rtde,rte->rtd", s, v)
    f = np.sum(yy - 2.0 * np.einsum("rtd,rtd->rt", c, v) + np.einsum("rtd,rtd->rt", v, sv), -1)
    return b, v, sv, f


def _derivatives(delta, heads, b0, u, s, c, yy, hessian=True):  # noqa: ANN001, ANN202
    """Loss, gradient and (if asked) Hessian in x = (vec Delta row-major, vec W row-major)."""
    b, v, sv, f = _loss_parts(delta, heads, b0, u, s, c, yy)
    r, n_tasks, k = heads.shape
    q = delta.shape[-2]
    g = sv - c  # (R, T, d): S_t v_t - c_t
    ug = np.einsum("rdq,rtd->rtq", u, g)  # U^T g_t
    grad_delta = 2.0 * np.einsum("rtq,rtk->rqk", ug, heads)
    grad_w = 2.0 * np.einsum("rdk,rtd->rtk", b, g)
    grad = np.concatenate([grad_delta.reshape(r, -1), grad_w.reshape(r, -1)], axis=1)
    if not hessian:
        return f, grad, None
    usu = np.einsum("rdq,rtde,rep->rtqp", u, s, u)  # U^T S_t U
    usb = np.einsum("rdq,rtde,rek->rtqk", u, s, b)  # U^T S_t B
    bsb = np.einsum("rdk,rtde,rel->rtkl", b, s, b)  # B^T S_t B
    p_delta = q * k
    h = np.zeros((r, p_delta + n_tasks * k, p_delta + n_tasks * k))
    ww = np.einsum("rti,rtj->rtij", heads, heads)
    h_dd = 2.0 * np.einsum("rtqp,rtij->rqipj", usu, ww).reshape(r, p_delta, p_delta)
    h[:, :p_delta, :p_delta] = h_dd
    eye = np.eye(k)
    for t in range(n_tasks):
        cols = slice(p_delta + t * k, p_delta + (t + 1) * k)
        h[:, cols, cols] = 2.0 * bsb[:, t]
        # d^2 f / d Delta_ai d w_tj = 2 (U^T S_t B)_aj w_ti + 2 (U^T g_t)_a delta_ij
        cross = 2.0 * (
            np.einsum("raj,ri->raij", usb[:, t], heads[:, t])
            + np.einsum("ra,ij->raij", ug[:, t], eye)
        ).reshape(r, p_delta, k)
        h[:, :p_delta, cols] = cross
        h[:, cols, :p_delta] = np.swapaxes(cross, -1, -2)
    return f, grad, sym(h)


def erm(
    scatter: np.ndarray, k: int, gtol: float = 1e-10, max_iter: int = 100
) -> dict[str, np.ndarray]:
    """Least squares over span(B) and the task heads (see the module docstring).

    Parameters
    ----------
    scatter : ndarray of shape (R, T, d + 1, d + 1)
        Per-task ``(1/m) sum z z^T`` with ``z = (x, y)``.

    Returns
    -------
    dict with ``b`` (R, d, k) orthonormal, ``heads`` (R, T, k) in that basis,
    ``objective`` (R,), ``grad_norm`` (R,), ``n_iter`` (R,), ``converged`` (R,) bool.
    """
    s, c, yy = split_scatter(np.asarray(scatter, dtype=float))
    r, n_tasks, d = c.shape
    b0, u = erm_start(scatter, k)
    bsb = np.einsum("rdk,rtde,rel->rtkl", b0, s, b0)
    heads = _pinv_solve(bsb, np.einsum("rdk,rtd->rtk", b0, c))
    delta = np.zeros((r, d - k, k))
    p_delta = (d - k) * k

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x[:, :p_delta].reshape(-1, d - k, k), x[:, p_delta:].reshape(-1, n_tasks, k)

    def pack(dl: np.ndarray, hd: np.ndarray) -> np.ndarray:
        return np.concatenate([dl.reshape(len(dl), -1), hd.reshape(len(hd), -1)], axis=1)

    def value(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return _loss_parts(*unpack(x), b0[idx], u[idx], s[idx], c[idx], yy[idx])[-1]

    def derivatives(x: np.ndarray, idx: np.ndarray, hessian: bool) -> tuple:
        return _derivatives(*unpack(x), b0[idx], u[idx], s[idx], c[idx], yy[idx], hessian)

    res = newton(pack(delta, heads), value, derivatives, gtol, max_iter, desc="ERM Newton")
    x, f, gnorm, n_iter = res["x"], res["objective"], res["grad_norm"], res["n_iter"]
    delta, heads = unpack(x)
    b = b0 + u @ delta
    frame = orthonormal(b)
    # heads in the orthonormal frame: B w = frame (frame^T B) w
    heads = np.einsum("rkl,rtl->rtk", np.swapaxes(frame, -1, -2) @ b, heads)
    return {
        "b": frame,
        "heads": heads,
        "objective": f,
        "grad_norm": gnorm,
        "n_iter": n_iter,
        "converged": gnorm <= gtol,
    }
