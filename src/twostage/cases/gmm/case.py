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

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from ...groups import PermutationGroup
from ...limits import gchisq_weights, sandwich
from ...linalg import pinv_psd, sym
from .._base import CaseStudy, KeyPath, Output, Outputs, Variables, standard_outputs
from .em import canonical_order, em, kmeans_plus_plus
from .features import embed_theta, residual_sums, scatter_rank, true_centers, true_theta
from .population import mixture_sample, regression_function, relabelled_population_fit
from .theory import (
    JACKKNIFE_GROUPS,
    _g_l,
    finite_difference_gram,
    fisher_sums,
    residual_derivative_gram,
)

C, C_, F, B = "component", "component_", "feature", "basis"
T, T_ = "tangent", "tangent_"


# ---------------------------------------------------------------------------- the case
class GaussianMixture(CaseStudy):
    """Gaussian mixture with subspace-aware gating; EM pre-training of the centres."""

    name: ClassVar[str] = "gmm"
    group: ClassVar[Any] = PermutationGroup
    #: raw samples at m = 2e5 are too large to store: the stages regenerate them from the
    #: keyed streams (see :meth:`pretrain_from_streams` for a memory-bounded loop)
    stores_data: ClassVar[bool] = False
    tiny: ClassVar[dict[str, Any]] = {
        "population": {
            "K": 3,
            "d": 4,
            "separation": 3.0,
            "population_size": 4000,
            "fisher_size": 4000,
        },
        "estimator": {},
        "n": 60,
        "alpha": 2.0,
    }
    outputs: ClassVar[Outputs] = Outputs(
        variables=(
            *standard_outputs(
                representation=((C, F), "EM centres U_hat, EM's labels"),
                descriptor=((C, F), "centres in lexicographic order"),
                coef_dims=(B,),
                d_eff="effective dimension K (r* + 1)",
                d_base="downstream-only dimension (numerical)",
            ),
            Output(
                "converged",
                "pretrain",
                ("replicate",),
                "EM stopped on the relative log-likelihood change",
                aggregate=True,
                flag=True,
            ),
            Output("n_iter", "pretrain", ("replicate",), "EM iterations", aggregate=True),
            Output(
                "loglik", "pretrain", ("replicate",), "mean log-likelihood at U_hat", aggregate=True
            ),
            Output(
                "loglik_monotone",
                "pretrain",
                ("replicate",),
                "EM log-likelihood never decreased",
                aggregate=True,
                flag=True,
            ),
            Output(
                "center_error",
                "align",
                ("replicate",),
                "m ||G U_hat - U*||_F^2 (matched centres)",
                aggregate=True,
                law="law_center_error",
            ),
            Output("law_center_error", "theory", ("term",), "eigenvalues of V"),
            Output("score_cov", "theory", (T, T_), "Fisher information (Monte Carlo)"),
            Output("hessian", "theory", (T, T_), "expected Hessian of the loss (Monte Carlo)"),
            Output("mean_L2_se", "theory", (), "jackknife s.e. of E||L(Z)||^2"),
        ),
    )

    def min_pretrain_size(self, population: Mapping[str, Any]) -> tuple[int, str]:
        K = int(population["K"])
        return K, f"K = {K}, the number of mixture components"

    def check(
        self, population: Mapping[str, Any], estimator: Mapping[str, Any], where: KeyPath
    ) -> None:
        params = population
        k, d = int(params["K"]), int(params["d"])
        centers = params.get("centers")
        if centers is None:
            if d < k:
                raise ConfigError(
                    f"invalid config key '{where('d')}': the centres separation * I_(K,d) need "
                    f"d >= K = {k}; got d = {d} (or give 'centers')"
                )
        else:
            rows = list(centers)
            if len(rows) != k or any(len(row) != d for row in rows):
                raise ConfigError(
                    f"invalid config key '{where('centers')}': expected K = {k} lists of d = {d} "
                    f"numbers; got {len(rows)} rows of lengths {[len(r) for r in rows]}"
                )
            u = np.array(rows, dtype=float)
            dist = np.linalg.norm(u[:, None] - u[None], axis=-1)
            dist = np.where(np.eye(k, dtype=bool), np.inf, dist)
            if dist.min() <= 1e-9 * max(1.0, float(np.abs(u).max())):
                raise ConfigError(
                    f"invalid config key '{where('centers')}': the centres must be distinct"
                )
        for key, least in (("population_size", 10 * k * k), ("fisher_size", 10 * k * d)):
            if key in params and int(params[key]) < least:
                raise ConfigError(
                    f"invalid config key '{where(key)}': expected at least {least} points "
                    f"(K = {k}, d = {d}); got {params[key]}"
                )

    # ------------------------------------------------------------------ truth and data
    def truth(self, population: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        params = population
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
        }

    def sample(
        self,
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
            mixture_sample(centers, size, rng, out=x[i])
        if role == "pretrain":
            return {
                "x_pre": (("replicate", "sample_pre", F), x, {"long_name": "pre-training samples"})
            }
        return {
            "x_down": (("replicate", "sample", F), x, {"long_name": "downstream design samples"})
        }

    # ------------------------------------------------------------------ estimators
    def pretrain(
        self,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        estimator: Mapping[str, Any],
        rngs: Sequence[np.random.Generator],
    ) -> Variables:
        """EM from ``em_init``: ``perturbed_truth`` (U* + em_init_scale N(0, I), one run) or
        ``kmeans++`` (``em_restarts`` seedings, the run of largest final log-likelihood
        kept). ``rngs``: one generator per replicate for the initialisation (the
        ``pretrain_algorithm`` stream)."""
        cfg = estimator
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

    def reference(self, truth: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(truth["centers"], dtype=float)

    def diagnostics(
        self,
        truth: Mapping[str, np.ndarray],
        est: Mapping[str, np.ndarray],
        aligned: np.ndarray,
        m: int,
    ) -> Variables:
        """``center_error`` of the centres matched to U* by the Hungarian alignment."""
        dist = np.linalg.norm(aligned - self.reference(truth), axis=(-2, -1))
        return {
            "center_error": (
                ("replicate",),
                m * dist**2,
                {"long_name": "m ||G U_hat - U*||_F^2 (matched centres)"},
            ),
        }

    def prepare_design(
        self, truth: Mapping[str, np.ndarray], design: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The regression function f* on each replicate's design (``f_down``), shared by the
        estimate and its aligned twin (the same numbers :meth:`downstream` computes without
        it)."""
        x_down = np.asarray(design["x_down"], dtype=float)
        centers, theta = np.asarray(truth["centers"], float), np.asarray(truth["theta"], float)
        r = int(truth["rank_S"])
        f = np.stack([regression_function(x, centers, theta, r) for x in x_down])
        return {**design, "f_down": f}

    def downstream(
        self,
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
        invertible); Var = sigma2 tr(Sigma Sigma_n^+) / n. The population part (Sigma,
        beta, Rep and the basis Q_U) comes from :func:`.population.relabelled_population_fit`:
        computed once per set of centres and shared, exactly permuted, by its relabellings
        (the aligned twin of the downstream stage costs no population pass)."""
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
        f_down = design.get("f_down")
        for i in range(n_rep):
            u = np.asarray(representation[i], dtype=float)
            fit = relabelled_population_fit(truth, u)
            q, beta, sigma = fit["q"], fit["beta"], fit["sigma"]
            f_n = (
                regression_function(x_down[i], centers_star, theta, r)
                if f_down is None
                else f_down[i]
            )
            # e_n = f* - psi^T beta on the design: sum psi psi^T and sum psi e_n in one sweep
            gram, psi_e, _ = residual_sums(x_down[i], u, q, f_n, beta)
            sigma_n = sym(gram) / len(f_n)
            sn_pinv, rank[i] = pinv_psd(sigma_n)
            dev = sn_pinv @ psi_e / len(f_n) + (sn_pinv @ sigma_n @ beta - beta)
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

    # ------------------------------------------------------------------ theory
    def limit(
        self,
        truth: Mapping[str, np.ndarray],
        estimator: Mapping[str, Any],
        method: str = "analytic",
    ) -> Variables:
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
            "noise_variance": ((), np.float64(truth["sigma2"]), {"long_name": "noise variance"}),
            "d_eff": ((), np.int64(d_eff), {"long_name": "effective dimension K (r* + 1)"}),
            "d_base": (
                (),
                np.int64(d_eff + np.count_nonzero(weights)),
                {"long_name": "downstream-only dimension d_eff + rank G_L (numerical)"},
            ),
        }
