"""Supervised multi-task pre-training of a shared linear representation.

The setting of Du, Hu, Kakade, Lee & Lei (ICLR 2021) and Tripuraneni, Jin & Jordan (ICML
2021), which the reference paper does not treat: ``x ~ N(0, I_d)``, ``B*`` (d x k) with
orthonormal columns, source tasks ``theta_1..theta_T`` in R^k; each pre-training sample
draws a task t uniformly and ``y = theta_t^T B*^T x + eps``, ``eps ~ N(0, sigma2_pre)``.
Downstream, a new task ``theta_0``: ``y = theta_0^T B*^T x + nu``, ``nu ~ N(0, sigma2)``,
min-norm OLS on the k features ``B_hat^T x`` with the exact risk decomposition of Prop. B.1
(as for the other linear cases: ``f*(x) = w*^T x``, ``w* = B* theta_0``, Sigma_down = I).

Pre-training by the method of moments or by ERM over the representation and the task heads
(see :mod:`.estimator`); the symmetry is ``B -> B Q``, Q in O(k), with the descriptor
``P = B B^T`` on the Grassmannian; alignment by orthogonal Procrustes; the limit from
first principles on the Grassmannian (:mod:`.theory`), with each estimator's closed form
derived by hand beside it, and the published bounds of the two papers (as rates).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from ...groups import OrthogonalGroup, haar_orthogonal
from ...limits import pad_weights
from .._base import (
    Bound,
    CaseStudy,
    ClosedForm,
    KeyPath,
    Output,
    Outputs,
    Variables,
    baseline_outputs,
    standard_outputs,
)
from .._linear import baseline_variables, design_covariance, isotropic_design, risk_variables
from .data import accumulate, draw_chunks, statistics_from_samples, task_matrix
from .estimator import erm, method_of_moments
from .theory import bounds, closed_forms, limit, task_second_moment

F, C, F_ = "feature", "component", "feature_"
TASK, Z, Z_ = "task", "xy", "xy_"
T, T_ = "tangent", "tangent_"
#: Smallest eigenvalue of (1/T) sum theta theta^T, relative to the largest, for the tasks
#: to count as spanning the k directions (else the representation is not identifiable).
DIVERSITY_RTOL = 1e-10


class MultiTask(CaseStudy):
    """Supervised multi-task pre-training (method of moments or ERM)."""

    name: ClassVar[str] = "multitask"
    group: ClassVar[Any] = OrthogonalGroup
    tiny: ClassVar[dict[str, Any]] = {
        "population": {"d": 5, "k": 2, "n_tasks": 3},
        "estimator": {"method": "erm"},
        "n": 150,
        "alpha": 2.0,
    }
    outputs: ClassVar[Outputs] = Outputs(
        variables=(
            *standard_outputs(
                representation=((F, C), "B_hat, orthonormal"),
                descriptor=((F, F_), "P_hat = B_hat B_hat^T"),
                coef_dims=(C,),
                d_eff="effective dimension d_eff = k",
                d_base="downstream-only dimension d_base = d",
                rep="Rep = ||(I - P_hat) B* theta_0||^2",
            ),
            *baseline_outputs(),
            Output(
                "converged",
                "pretrain",
                ("replicate",),
                "erm: ||gradient|| <= gtol (mom: closed form, always true)",
                aggregate=True,
                flag=True,
            ),
            Output("n_iter", "pretrain", ("replicate",), "Newton iterations (erm)", aggregate=True),
            Output(
                "objective",
                "pretrain",
                ("replicate",),
                "empirical loss at B_hat (erm: least squares; mom: -tr(P_hat M_hat))",
                aggregate=True,
            ),
            Output(
                "grad_norm",
                "pretrain",
                ("replicate",),
                "norm of the gradient of the empirical loss at the estimate",
                aggregate=True,
            ),
            Output(
                "eigengap",
                "pretrain",
                ("replicate",),
                "lambda_k - lambda_k+1 of (1/m) sum y^2 x x^T",
                aggregate=True,
            ),
            Output(
                "subspace_error",
                "align",
                ("replicate",),
                "m ||(I - P*) B_hat||_F^2 = m ||sin Theta(B_hat, B*)||_F^2",
                aggregate=True,
                law="law_subspace_error",
            ),
            Output(
                "descriptor_distance", "align", ("replicate",), "||P_hat - P*||_F", aggregate=True
            ),
            Output("closed_form_mom", "theory", ("term",), "c_mom chi2_{d-k} (derived by hand)"),
            Output("closed_form_erm", "theory", ("term",), "c_erm chi2_{d-k} (derived by hand)"),
            Output("law_subspace_error", "theory", ("term",), "limit weights of subspace_error"),
            Output("bound_tripuraneni", "theory", (), "Tripuraneni et al. bound (rate)"),
            Output("bound_du", "theory", (), "Du et al. bound (rate)"),
            Output("task_diversity_ratio", "theory", (), "lambda_min / lambda_max of Lambda"),
        ),
        closed_forms=(
            ClosedForm("mom", "closed_form_mom", "method-of-moments closed form (derived)"),
            ClosedForm("erm", "closed_form_erm", "ERM closed form (derived)"),
        ),
        bounds=(
            Bound(
                "tripuraneni",
                "bound_tripuraneni",
                "Tripuraneni et al. 2021 Thms 3-4 (MoM), rate, unit constant",
            ),
            Bound("du", "bound_du", "Du et al. 2021 Thm 4.1 (ERM), rate, unit constant"),
        ),
    )

    # ------------------------------------------------------------------ parameters
    def min_pretrain_size(self, population: Mapping[str, Any]) -> tuple[int, str]:
        k = int(population["k"])
        return k, f"k = {k}, the representation's dimension"

    def check(
        self, population: Mapping[str, Any], estimator: Mapping[str, Any], where: KeyPath
    ) -> None:
        d, k, n_tasks = int(population["d"]), int(population["k"]), int(population["n_tasks"])
        if k >= d:
            raise ConfigError(f"invalid config key '{where('k')}': expected k < d = {d}; got {k}")
        beta = population.get("beta")
        if beta is not None and len(beta) != k:
            raise ConfigError(
                f"invalid config key '{where('beta')}': expected k = {k} values or null; "
                f"got {len(beta)}"
            )
        tasks = population.get("tasks")
        if tasks is not None:
            if population.get("task_diversity") is not None:
                raise ConfigError(
                    f"invalid config key '{where('task_diversity')}': only used when tasks is "
                    "null (give one of tasks and task_diversity)"
                )
            if len(tasks) != n_tasks or any(len(row) != k for row in tasks):
                raise ConfigError(
                    f"invalid config key '{where('tasks')}': expected n_tasks = {n_tasks} lists "
                    f"of k = {k} numbers; got {len(tasks)} rows of lengths "
                    f"{[len(row) for row in tasks]}"
                )
            lam = np.linalg.eigvalsh(task_second_moment(np.asarray(tasks, dtype=float)))
            if not lam[0] > DIVERSITY_RTOL * max(lam[-1], 1e-300):
                raise ConfigError(
                    f"invalid config key '{where('tasks')}': (1/T) sum theta_t theta_t^T is "
                    "singular (the tasks span fewer than k directions: the representation is "
                    "not identifiable)"
                )
        elif n_tasks < k:
            raise ConfigError(
                f"invalid config key '{where('n_tasks')}': expected at least k = {k} tasks "
                f"(fewer cannot span the representation); got {n_tasks}"
            )

    # ------------------------------------------------------------------ truth and data
    def truth(self, population: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        d, k = int(population["d"]), int(population["k"])
        if population["subspace"] == "random":
            b = haar_orthogonal(d, rng)[:, :k]
        else:
            b = np.eye(d)[:, :k]
        thetas = task_matrix(population, rng)
        beta = population.get("beta")
        theta0 = np.full(k, 1.0 / np.sqrt(k)) if beta is None else np.asarray(beta, float)
        return {
            "B": ((F, C), b, {"long_name": "true representation B* (orthonormal, d x k)"}),
            "tasks": ((TASK, C), thetas, {"long_name": "source tasks theta_t (T x k)"}),
            "beta": ((C,), theta0, {"long_name": "downstream task theta_0"}),
            "w_star": ((F,), b @ theta0, {"long_name": "f*(x) = w*^T x, w* = B* theta_0"}),
            "P_star": ((F, F_), b @ b.T, {"long_name": "true descriptor P* = B* B*^T"}),
            "sigma2_pre": (
                (),
                np.float64(population["sigma2_pre"]),
                {"long_name": "pre-training label noise variance"},
            ),
            "sigma2": (
                (),
                np.float64(population["sigma2"]),
                {"long_name": "downstream label noise variance"},
            ),
        }

    def sample(
        self,
        truth: Mapping[str, np.ndarray],
        size: int,
        rngs: Sequence[np.random.Generator],
        role: str,
        sampling: str,
    ) -> Variables:
        if role not in ("pretrain", "downstream"):
            raise ValueError(f"role must be 'pretrain' or 'downstream'; got {role!r}")
        if sampling not in ("sufficient", "raw"):
            raise ValueError(f"sampling must be 'sufficient' or 'raw'; got {sampling!r}")
        b = truth["B"]
        if role == "downstream":
            return isotropic_design(b.shape[0], size, rngs, sampling)
        weights = b @ truth["tasks"].T  # (d, T)
        d, n_tasks = weights.shape
        noise = float(np.sqrt(truth["sigma2_pre"]))
        if sampling == "raw":
            t = np.empty((len(rngs), size), dtype=np.int64)
            x = np.empty((len(rngs), size, d))
            y = np.empty((len(rngs), size))
            for i, rng in enumerate(rngs):
                pos = 0
                for tc, xc, yc in draw_chunks(rng, size, weights, noise):
                    rows = slice(pos, pos + len(tc))
                    t[i, rows], x[i, rows], y[i, rows] = tc, xc, yc
                    pos += len(tc)
            dims = ("replicate", "sample_pre")
            return {
                "task_pre": (dims, t, {"long_name": "task index of each pre-training sample"}),
                "x_pre": ((*dims, F), x, {"long_name": "pre-training inputs"}),
                "y_pre": (dims, y, {"long_name": "pre-training labels"}),
            }
        out = [accumulate(draw_chunks(rng, size, weights, noise), size, n_tasks, d) for rng in rngs]
        counts, scatter, moment = (np.array([o[j] for o in out]) for j in range(3))
        return {
            "task_counts": (
                ("replicate", TASK),
                counts,
                {"long_name": "pre-training samples per task"},
            ),
            "scatter": (
                ("replicate", TASK, Z, Z_),
                scatter,
                {"long_name": "(1/m) sum over the task's samples of (x, y)(x, y)^T"},
            ),
            "moment": (
                ("replicate", F, F_),
                moment,
                {"long_name": "(1/m) sum y^2 x x^T (method of moments)"},
            ),
        }

    def _statistics(
        self, truth: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        if "scatter" in data:
            return data["scatter"], data["moment"]
        n_tasks = truth["tasks"].shape[0]
        _, scatter, moment = statistics_from_samples(
            data["task_pre"], data["x_pre"], data["y_pre"], n_tasks
        )
        return scatter, moment

    # ------------------------------------------------------------------ estimators
    def pretrain(
        self,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        estimator: Mapping[str, Any],
        rngs: Sequence[np.random.Generator],
    ) -> Variables:
        """The method of moments or ERM (``estimator['method']``); both report the
        eigengap of the moment matrix (the MoM's identifiability margin)."""
        k = truth["B"].shape[1]
        scatter, moment = self._statistics(truth, data)
        mom = method_of_moments(moment, k)
        r = len(moment)
        if estimator["method"] == "mom":
            res = {
                **mom,
                "n_iter": np.zeros(r, dtype=np.int64),
                "converged": np.ones(r, dtype=bool),
            }
        elif estimator["method"] == "erm":
            res = erm(scatter, k, float(estimator["gtol"]), int(estimator["max_iter"]))
        else:
            raise ValueError(f"method must be 'mom' or 'erm'; got {estimator['method']!r}")
        b = res["b"]
        per = ("replicate",)
        return {
            "representation": (("replicate", F, C), b, {"long_name": "B_hat (orthonormal)"}),
            "descriptor": (
                ("replicate", F, F_),
                b @ np.swapaxes(b, -1, -2),
                {"long_name": "orbit-invariant descriptor P_hat = B_hat B_hat^T"},
            ),
            "converged": (per, res["converged"], {"long_name": "estimator converged"}),
            "n_iter": (per, res["n_iter"], {"long_name": "Newton iterations (erm)"}),
            "objective": (per, res["objective"], {"long_name": "empirical loss at B_hat"}),
            "grad_norm": (per, res["grad_norm"], {"long_name": "gradient norm at B_hat"}),
            "eigengap": (
                per,
                mom["eigengap"],
                {"long_name": "lambda_k - lambda_k+1 of (1/m) sum y^2 x x^T"},
            ),
        }

    def reference(self, truth: Mapping[str, np.ndarray]) -> np.ndarray:
        return truth["B"]

    def diagnostics(
        self,
        truth: Mapping[str, np.ndarray],
        est: Mapping[str, np.ndarray],
        aligned: np.ndarray,
        m: int,
    ) -> Variables:
        perp = np.eye(len(truth["w_star"])) - truth["P_star"]
        return {
            "subspace_error": (
                ("replicate",),
                m * np.linalg.norm(perp @ est["representation"], axis=(-2, -1)) ** 2,
                {"long_name": "m ||(I - P*) B_hat||_F^2 = m ||sin Theta||_F^2"},
            ),
            "descriptor_distance": (
                ("replicate",),
                np.linalg.norm(est["descriptor"] - truth["P_star"], axis=(-2, -1)),
                {"long_name": "||P_hat - P*||_F (orbit-invariant)"},
            ),
        }

    def baseline(
        self, truth: Mapping[str, np.ndarray], design: Mapping[str, np.ndarray], n: int
    ) -> Variables:
        """OLS on the raw x (d_base = d): ``rep`` 0, ``var = sigma^2 tr(Sigma_x S_n^+)/n``."""
        s_n = design_covariance(design)
        return baseline_variables(np.eye(s_n.shape[-1]), truth["w_star"], truth["sigma2"], s_n, n)

    def downstream(
        self,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        design: Mapping[str, np.ndarray],
        n: int,
    ) -> Variables:
        s_n = design_covariance(design)
        return risk_variables(
            np.eye(s_n.shape[-1]),
            truth["w_star"],
            truth["sigma2"],
            np.swapaxes(representation, -1, -2),
            s_n,
            n,
            rep_name="representation error Rep = ||(I - P_hat) B* theta_0||^2",
        )

    # ------------------------------------------------------------------ theory
    def limit(self, truth: Mapping[str, np.ndarray], estimator: Mapping[str, Any]) -> Variables:
        d, k = truth["B"].shape
        res = limit(truth, estimator["method"])
        q = k * (d - k)
        forms = closed_forms(truth)
        prior = bounds(truth)
        lam = np.linalg.eigvalsh(task_second_moment(truth["tasks"]))
        term = ("term",)
        return {
            "limit_weights": (
                term,
                pad_weights(res["weights"], q),
                {"long_name": "weights nu of ||L(Z)||^2 = sum nu chi2_1 (numerical)"},
            ),
            "closed_form_mom": (
                term,
                pad_weights(np.full(d - k, forms["mom"]), q),
                {"long_name": "c_mom chi2_{d-k}: method-of-moments closed form (derived)"},
            ),
            "closed_form_erm": (
                term,
                pad_weights(np.full(d - k, forms["erm"]), q),
                {"long_name": "c_erm chi2_{d-k}: ERM closed form (derived)"},
            ),
            "law_subspace_error": (
                term,
                pad_weights(res["subspace_weights"], q),
                {"long_name": "limit weights of m ||sin Theta||_F^2: eig(V) / 2"},
            ),
            "bound_tripuraneni": (
                (),
                np.float64(prior["tripuraneni"]),
                {"long_name": "Tripuraneni et al. 2021 (MoM): ||theta_0||^2 tr(Lambda) d / nu^2"},
            ),
            "bound_du": (
                (),
                np.float64(prior["du"]),
                {"long_name": "Du et al. 2021 (ERM): sigma2_pre ||theta_0||^2 (kd + kT) / nu"},
            ),
            "task_diversity_ratio": (
                (),
                np.float64(lam[0] / lam[-1]),
                {"long_name": "lambda_min / lambda_max of (1/T) sum theta_t theta_t^T"},
            ),
            "V": ((T, T_), res["V"], {"long_name": "covariance of the tangent-space CLT"}),
            "G_L": ((T, T_), res["G_L"], {"long_name": "Gram matrix of the residual map L"}),
            "noise_variance": ((), np.float64(truth["sigma2"]), {"long_name": "noise variance"}),
            "d_eff": ((), np.int64(k), {"long_name": "effective dimension d_eff = k"}),
            "d_base": ((), np.int64(d), {"long_name": "downstream-only dimension d_base = d"}),
        }
