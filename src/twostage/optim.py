"""A batched Newton method for the iterative pre-training estimators (one problem per
replicate, all advanced together; each replicate stops on its own)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from .progress import Progress

_LOG = logging.getLogger(__name__)

#: Relative round-off slack of the Armijo test of the line search.
ROUNDOFF = 1e-13
#: Step halvings of the line search before a replicate is declared stalled.
MAX_HALVINGS = 40

#: ``value(x, idx)``: the losses at the points x (rows) of the problems ``idx``.
Value = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: ``derivatives(x, idx, hessian)``: losses, gradients (rows) and, if asked, Hessians.
Derivatives = Callable[[np.ndarray, np.ndarray, bool], tuple]


def newton(
    x0: np.ndarray,
    value: Value,
    derivatives: Derivatives,
    gtol: float,
    max_iter: int,
    null_rtol: float = 1e-10,
    desc: str = "Newton",
) -> dict[str, np.ndarray]:
    """Minimise a batch of smooth problems by Newton steps with |eigenvalue|
    regularisation (a descent direction also where the Hessian is indefinite) and Armijo
    backtracking.

    Eigen-directions of the Hessian with ``|lambda| <= null_rtol * max |lambda|`` are
    dropped from the step (e.g. the gauge directions of a symmetry, to which the gradient
    is orthogonal). A problem stops when its gradient norm is ``<= gtol`` (converged), when
    no step decreases the loss beyond round-off nor the gradient (stalled), or after
    ``max_iter`` iterations. Progress lines (:mod:`twostage.progress`) start with ``desc``.

    Parameters
    ----------
    x0 : ndarray of shape (B, p)

    Returns
    -------
    dict with ``x`` (B, p), ``objective`` (B,), ``grad_norm`` (B,), ``n_iter`` (B,) and
    ``converged`` (B,) bool.
    """
    x = np.array(x0, dtype=float, copy=True)
    nb = len(x)
    f, grad, _ = derivatives(x, np.arange(nb), False)
    gnorm = np.linalg.norm(grad, axis=1)
    n_iter = np.zeros(nb, dtype=np.int64)
    active = gnorm > gtol
    tracker = Progress(desc, max_iter, "iterations", f"{{running}} of {nb} still running", _LOG)
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        tracker.update(it, running=idx.size)
        _, _, hess = derivatives(x[idx], idx, True)
        lam, vec = np.linalg.eigh(hess)
        scale = np.abs(lam).max(axis=-1, keepdims=True)
        keep = np.abs(lam) > null_rtol * scale
        coef = np.einsum("bij,bi->bj", vec, grad[idx])
        coef = np.where(keep, coef / np.where(keep, np.abs(lam), 1.0), 0.0)
        step = -np.einsum("bij,bj->bi", vec, coef)
        slope = np.einsum("bi,bi->b", grad[idx], step)
        fa, xa = f[idx], x[idx]
        t = np.ones(idx.size)
        accepted = np.zeros(idx.size, dtype=bool)
        new_x = xa.copy()
        for _halving in range(MAX_HALVINGS):
            todo = ~accepted
            if not todo.any():
                break
            trial = xa[todo] + t[todo, None] * step[todo]
            ft = value(trial, idx[todo])
            ok = ft <= fa[todo] + 1e-4 * t[todo] * slope[todo] + ROUNDOFF * (1.0 + np.abs(fa[todo]))
            pos = np.flatnonzero(todo)[ok]
            new_x[pos] = trial[ok]
            accepted[pos] = True
            t[todo] *= 0.5
        new_f, new_grad, _ = derivatives(new_x, idx, False)
        new_norm = np.linalg.norm(new_grad, axis=1)
        # a step accepted within round-off must still reduce the gradient
        progress = accepted & ((new_f < fa) | (new_norm < gnorm[idx]))
        upd = idx[progress]
        x[upd], f[upd] = new_x[progress], new_f[progress]
        grad[upd], gnorm[upd] = new_grad[progress], new_norm[progress]
        n_iter[idx] += 1
        active[idx[~progress]] = False  # stalled
        active[upd] = gnorm[upd] > gtol
    tracker.done(int(n_iter.max(initial=0)), running=int(active.sum()))
    return {
        "x": x,
        "objective": f,
        "grad_norm": gnorm,
        "n_iter": n_iter,
        "converged": gnorm <= gtol,
    }
