"""Factor model with probabilistic-PCA pre-training (paper section 6.2, Appendix I).

Model: ``x = A h + mu`` with ``h ~ N(0, I_k)``, ``mu ~ N(0, I_d)``, so
``x ~ N(0, Sigma_x)``, ``Sigma_x = I + A A^T``; downstream ``y = beta^T h + nu``,
``nu ~ N(0, sigma_nu2)``, so ``f*(x) = w*^T x`` with ``w* = Sigma_x^{-1} A beta`` and
noise variance ``sigma^2 = sigma_nu2 + beta^T (I_k + A^T A)^{-1} beta`` (the paper prints
``(I_d + A A^T)^{-1}``, a dimension typo: by Woodbury the k x k form is the right one).

Pre-training: PPCA in closed form (Lemma I.1, Tipping & Bishop 1999) from the uncentred
sample covariance ``S_m``: ``M_hat = U_k diag((lambda_k - 1)_+) U_k^T``, representative
``A_hat = U_k diag((lambda_k - 1)_+)^{1/2}``. Features ``phi(x) = F x`` with
``F = A_hat^T (I + M_hat)^{-1}``; the symmetry is ``A -> A Q``, ``Q in O(k)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from ...groups import OrthogonalGroup, haar_orthogonal, random_orthogonal
from ...limits import directional_derivatives, gchisq_weights, gram, pad_weights, sandwich
from ...linalg import eigh_descending, psd_sqrt
from ...manifolds import FixedRankPSD
from .._base import (
    Bound,
    CaseStudy,
    ClosedForm,
    Erratum,
    KeyPath,
    Output,
    Outputs,
    Variables,
    baseline_outputs,
    standard_outputs,
)
from .._linear import (
    baseline_variables,
    covariance_draws,
    design_covariance,
    population_fit,
    risk_variables,
)

F, C, F_ = "feature", "component", "feature_"


def features(rep: np.ndarray) -> np.ndarray:
    """Feature matrices ``F = A^T (I_d + A A^T)^{-1} = (I_k + A^T A)^{-1} A^T`` (the
    push-through identity: a k x k solve), shape (..., k, d), from representatives of shape
    (..., d, k)."""
    k = rep.shape[-1]
    rep_t = np.swapaxes(rep, -1, -2)
    return np.linalg.solve(np.eye(k) + rep_t @ rep, rep_t)


def population_residual(
    truth: Mapping[str, np.ndarray], feat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Population fit of f* on the features ``F x`` (see :func:`._linear.population_fit`)."""
    return population_fit(truth["Sigma_x"], truth["w_star"], feat)


T, T_ = "tangent", "tangent_"


def prior_art(a: np.ndarray, beta: np.ndarray) -> Variables:
    """Published rates for the pre-training term on the scale of E||L(Z)||^2 (the
    coefficient of 1/alpha), as applied to this model in paper Section 6.2, with
    ``D = max(||A*||_op, ||beta*||, 1)``: Ge, Tang, Fan & Jin 2024 (Thm 4.4)
    ``D^12 (D^4 + sigma_min(A*)^-4) d``, and the paper's own rate ``D^2 (d - k)``; both up to
    unknown constants (drawn with unit constants)."""
    d, k = a.shape
    sv = np.linalg.svd(a, compute_uv=False)
    big_d = max(float(sv.max()), float(np.linalg.norm(beta)), 1.0)
    return {
        "D": ((), np.float64(big_d), {"long_name": "D = max(||A*||_op, ||beta*||, 1)"}),
        "sigma_min_A": ((), np.float64(sv.min()), {"long_name": "sigma_min(A*)"}),
        "bound_ge": (
            (),
            np.float64(big_d**12 * (big_d**4 + float(sv.min()) ** -4) * d),
            {"long_name": "Ge et al. 2024 Thm 4.4 rate D^12 (D^4 + sigma_min^-4) d"},
        ),
        "bound_paper_rate": (
            (),
            np.float64(big_d**2 * (d - k)),
            {"long_name": "the paper's rate D^2 (d - k) (Section 6.2)"},
        ),
    }


class FactorModel(CaseStudy):
    """Factor model / probabilistic PCA case study."""

    name: ClassVar[str] = "factor"
    group: ClassVar[Any] = OrthogonalGroup
    tiny: ClassVar[dict[str, Any]] = {
        "population": {"d": 6, "k": 2, "factor_strengths": [3.0, 1.0]},
        "estimator": {},
        "n": 60,
        "alpha": 2.0,
    }
    outputs: ClassVar[Outputs] = Outputs(
        variables=(
            *standard_outputs(
                representation=((F, C), "PPCA representative A_hat"),
                descriptor=((F, F_), "M_hat = A_hat A_hat^T"),
                coef_dims=(C,),
                d_eff="effective dimension d_eff = k",
                d_base="downstream-only dimension d_base = d",
            ),
            *baseline_outputs(),
            Output("eigenvalues", "pretrain", ("replicate", C), "top-k eigenvalues of S_m"),
            Output("eigenvectors", "pretrain", ("replicate", F, C), "top-k eigenvectors of S_m"),
            Output(
                "n_active",
                "pretrain",
                ("replicate",),
                "number of eigenvalues of S_m above 1 (nonzero PPCA factors)",
                aggregate=True,
            ),
            Output(
                "eigvec_error",
                "align",
                ("replicate",),
                "m ||U_hat Q - U1||_F^2 (Procrustes-aligned eigenvectors)",
                aggregate=True,
                law="law_eigvec_error",
            ),
            Output(
                "descriptor_distance",
                "align",
                ("replicate",),
                "||M_hat - M*||_F (orbit-invariant)",
                aggregate=True,
            ),
            Output("closed_form_printed", "theory", ("term",), "printed Cor. 6.4 weights"),
            Output("closed_form_corrected", "theory", ("term",), "corrected Cor. 6.4 weights"),
            Output("bound_ge", "theory", (), "Ge et al. 2024 Thm 4.4 rate (unit constant)"),
            Output("bound_paper_rate", "theory", (), "the paper's Section 6.2 rate"),
            Output("D", "theory", (), "D = max(||A*||_op, ||beta*||, 1) (paper Section 6.2)"),
            Output("sigma_min_A", "theory", (), "smallest singular value of A*"),
            Output("law_eigvec_error", "theory", ("term",), "Anderson's limit of eigvec_error"),
            Output("hessian", "theory", (T, T_), "Riemannian Hessian of L_pre at M*"),
            Output("score_cov", "theory", (T, T_), "covariance of the Riemannian score"),
        ),
        closed_forms=(
            ClosedForm("printed", "closed_form_printed", "paper's printed Cor. 6.4"),
            ClosedForm("corrected", "closed_form_corrected", "corrected Cor. 6.4"),
        ),
        bounds=(
            Bound("ge", "bound_ge", "Ge et al. 2024 Thm 4.4 (paper §6.2), rate, unit constant"),
            Bound("paper_rate", "bound_paper_rate", "paper §6.2 rate D²(d−k), unit constant"),
        ),
        errata=(
            Erratum(
                "factor Cor. 6.4 (I.14-I.17): law of m Rep",
                "m_rep",
                "limit_weights",
                "closed_form_printed",
                "closed_form_corrected",
            ),
        ),
    )

    def rank_deficient(self, ds: Any, d_eff: int, point: Any) -> np.ndarray:
        """Also: fewer than k eigenvalues of S_m above 1 (some PPCA factors are zero)."""
        k = int(point.population["k"])
        return super().rank_deficient(ds, d_eff, point) | (ds["n_active"].values < k)

    def min_pretrain_size(self, population: Mapping[str, Any]) -> tuple[int, str]:
        k = int(population["k"])
        return k, f"k = {k}, the number of factors"

    def check(
        self, population: Mapping[str, Any], estimator: Mapping[str, Any], where: KeyPath
    ) -> None:
        d, k = population["d"], population["k"]
        if k >= d:
            raise ConfigError(f"invalid config key '{where('k')}': expected k < d = {d}; got {k}")
        if len(population["factor_strengths"]) != k:
            raise ConfigError(
                f"invalid config key '{where('factor_strengths')}': expected k = {k} values; "
                f"got {len(population['factor_strengths'])}"
            )
        beta = population.get("beta")
        if beta is not None and len(beta) != k:
            raise ConfigError(
                f"invalid config key '{where('beta')}': expected k = {k} values or null; "
                f"got {len(beta)}"
            )

    # ------------------------------------------------------------------ truth and data
    def truth(self, population: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        params = population
        d, k = int(params["d"]), int(params["k"])
        strengths = np.asarray(params["factor_strengths"], dtype=float)
        if params["loadings"] == "random":
            u1 = haar_orthogonal(d, rng)[:, :k] if d > 1 else np.eye(1)
            v = random_orthogonal(k, rng)
        else:
            u1, v = np.eye(d)[:, :k], np.eye(k)
        a = (u1 * np.sqrt(strengths)) @ v.T
        beta = (
            np.full(k, 1.0 / np.sqrt(k))
            if params.get("beta") is None
            else np.asarray(params["beta"], dtype=float)
        )
        sigma_x = np.eye(d) + a @ a.T
        w_star = np.linalg.solve(sigma_x, a @ beta)
        sigma2 = float(params["sigma_nu2"]) + float(
            beta @ np.linalg.solve(np.eye(k) + a.T @ a, beta)
        )
        return {
            "A": ((F, C), a, {"long_name": "true loadings A* (d x k)"}),
            "U1": ((F, C), u1, {"long_name": "eigenvectors of A* A*^T (factor order)"}),
            "factor_strengths": ((C,), strengths, {"long_name": "eigenvalues of A* A*^T"}),
            "beta": ((C,), beta, {"long_name": "downstream coefficients beta*"}),
            "Sigma_x": ((F, F_), sigma_x, {"long_name": "covariance of x: I + A* A*^T"}),
            "M_star": ((F, F_), a @ a.T, {"long_name": "true descriptor M* = A* A*^T"}),
            "w_star": ((F,), w_star, {"long_name": "regression function f*(x) = w*^T x"}),
            "sigma2": ((), np.float64(sigma2), {"long_name": "downstream noise variance"}),
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
        a, sigma_x = truth["A"], truth["Sigma_x"]
        d, k = a.shape
        tag = "pre" if role == "pretrain" else "down"
        what = "pre-training" if role == "pretrain" else "downstream design"
        if sampling == "raw":
            x = np.empty((len(rngs), size, d))
            for i, rng in enumerate(rngs):
                h = rng.standard_normal((size, k))
                x[i] = h @ a.T + rng.standard_normal((size, d))
            dim = "sample_pre" if role == "pretrain" else "sample"
            return {f"x_{tag}": (("replicate", dim, F), x, {"long_name": f"{what} samples"})}
        if sampling != "sufficient":
            raise ValueError(f"sampling must be 'sufficient' or 'raw'; got {sampling!r}")
        return {
            f"S_{tag}": (
                ("replicate", F, F_),
                covariance_draws(sigma_x, size, rngs),
                {"long_name": f"{what} uncentred sample covariance (exact Wishart draw)"},
            )
        }

    # ------------------------------------------------------------------ estimators
    def pretrain(
        self,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        estimator: Mapping[str, Any],
        rngs: Sequence[np.random.Generator],
    ) -> Variables:
        k = truth["A"].shape[1]
        lam, u = eigh_descending(design_covariance(data, "pre"), top=k)
        lam = lam[:, :k]
        scale = np.clip(lam - 1.0, 0.0, None)
        rep = u * np.sqrt(scale)[:, None, :]
        return {
            "representation": (
                ("replicate", F, C),
                rep,
                {"long_name": "PPCA representative A_hat = U_k diag(lambda_k - 1)_+^(1/2)"},
            ),
            "descriptor": (
                ("replicate", F, F_),
                rep @ np.swapaxes(rep, -1, -2),
                {"long_name": "orbit-invariant descriptor M_hat = A_hat A_hat^T"},
            ),
            "eigenvalues": (("replicate", C), lam, {"long_name": "top-k eigenvalues of S_m"}),
            "eigenvectors": (("replicate", F, C), u, {"long_name": "top-k eigenvectors of S_m"}),
            "n_active": (
                ("replicate",),
                (lam > 1.0).sum(axis=1).astype(np.int64),
                {"long_name": "number of eigenvalues of S_m above 1 (nonzero PPCA factors)"},
            ),
        }

    def reference(self, truth: Mapping[str, np.ndarray]) -> np.ndarray:
        return truth["A"]

    def diagnostics(
        self,
        truth: Mapping[str, np.ndarray],
        est: Mapping[str, np.ndarray],
        aligned: np.ndarray,
        m: int,
    ) -> Variables:
        _, _, u_dist = OrthogonalGroup.align(est["eigenvectors"], truth["U1"])
        m_err = est["descriptor"] - truth["M_star"]
        return {
            "eigvec_error": (
                ("replicate",),
                m * u_dist**2,
                {"long_name": "m ||U_hat Q - U1||_F^2 (Procrustes-aligned eigenvectors)"},
            ),
            "descriptor_distance": (
                ("replicate",),
                np.linalg.norm(m_err, axis=(-2, -1)),
                {"long_name": "||M_hat - M*||_F (orbit-invariant)"},
            ),
        }

    def baseline(
        self, truth: Mapping[str, np.ndarray], design: Mapping[str, np.ndarray], n: int
    ) -> Variables:
        """OLS on the raw x (d_base = d): ``rep`` 0, ``var = sigma^2 tr(Sigma_x S_n^+)/n``."""
        s_n = design_covariance(design)
        return baseline_variables(truth["Sigma_x"], truth["w_star"], truth["sigma2"], s_n, n)

    def downstream(
        self,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        design: Mapping[str, np.ndarray],
        n: int,
    ) -> Variables:
        s_n = design_covariance(design)
        return risk_variables(
            truth["Sigma_x"], truth["w_star"], truth["sigma2"], features(representation), s_n, n
        )

    # ------------------------------------------------------------------ theory
    def limit(self, truth: Mapping[str, np.ndarray], estimator: Mapping[str, Any]) -> Variables:
        sigma_x, m_star = truth["Sigma_x"], truth["M_star"]
        d, k = truth["A"].shape
        geo = FixedRankPSD(m_star, k)
        basis = geo.tangent_basis()
        eye = np.eye(d)
        a_inv = np.linalg.inv(eye + m_star)
        # Population PPCA loss L(M) = 1/2 [log det(I + M) + tr(Sigma_x (I + M)^{-1})]:
        egrad = 0.5 * (a_inv - a_inv @ sigma_x @ a_inv)

        def ehess(h: np.ndarray) -> np.ndarray:
            aha = a_inv @ h @ a_inv
            return 0.5 * (-aha + aha @ sigma_x @ a_inv + a_inv @ sigma_x @ aha)

        hess = geo.riemannian_hessian(egrad, ehess)
        # Score <grad l(M*; x), H> = 1/2 [tr(S^-1 H) - x^T S^-1 H S^-1 x]; for Gaussian x,
        # Cov(x^T B1 x, x^T B2 x) = 2 tr(B1 S B2 S), hence Cov = 1/2 tr(S^-1 H1 S^-1 H2).
        s_inv = np.linalg.inv(sigma_x)
        whitened = s_inv @ basis  # (q, d, d): S^-1 H
        score_cov = 0.5 * np.einsum("iab,jba->ij", whitened, whitened)
        v = sandwich(hess, score_cov)
        root = psd_sqrt(sigma_x)

        def residual_coords(m: np.ndarray) -> np.ndarray:
            r = population_residual(truth, features(geo.section(m)))[0]
            return root @ r  # isometric: ||root r||^2 = r^T Sigma_x r = ||e||^2_{L2}

        step = 1e-3 * float(geo.eigenvalues.min())
        jac = directional_derivatives(residual_coords, basis, geo.retract, step)
        g_l = gram(jac)
        weights = gchisq_weights(v, g_l)
        q = geo.dim

        # Closed forms of Corollary 6.4: c * chi2_{d-k}; printed, and corrected: the step from
        # (I.13) to (I.14) drops the section-derivative term Sigma_x^-1 Ds(M*)[v] beta*, which
        # (I - P*) does not kill; keeping it adds the factor Sigma*^-1 in c
        strengths = truth["factor_strengths"]
        a_vec = truth["U1"].T @ truth["A"] @ truth["beta"]
        c_printed = float(np.sum(a_vec**2 / (1.0 + strengths)))
        c_corrected = float(np.sum(a_vec**2 / (strengths**2 * (1.0 + strengths))))
        # Anderson's PCA CLT: m ||U_hat Q - U1||^2 -> sum_i (1 + s_i)/s_i^2 chi2_{d-k}
        eig_w = np.repeat((1.0 + strengths) / strengths**2, d - k)
        t, tt = T, T_
        return {
            "limit_weights": (
                ("term",),
                pad_weights(weights, q),
                {"long_name": "weights nu of ||L(Z)||^2 = sum nu chi2_1 (numerical)"},
            ),
            "closed_form_printed": (
                ("term",),
                pad_weights(np.full(d - k, c_printed), q),
                {"long_name": "weights of the paper's printed Corollary 6.4"},
            ),
            "closed_form_corrected": (
                ("term",),
                pad_weights(np.full(d - k, c_corrected), q),
                {"long_name": "weights of Corollary 6.4 corrected for the dropped section term"},
            ),
            "law_eigvec_error": (
                ("term",),
                pad_weights(eig_w, q),
                {"long_name": "limit weights of m ||U_hat Q - U1||_F^2 (Anderson 1963)"},
            ),
            "V": ((t, tt), v, {"long_name": "covariance of the tangent-space CLT"}),
            "hessian": ((t, tt), hess, {"long_name": "Riemannian Hessian of L_pre at M*"}),
            "score_cov": ((t, tt), score_cov, {"long_name": "covariance of the Riemannian score"}),
            "G_L": ((t, tt), g_l, {"long_name": "Gram matrix of the residual map L"}),
            "noise_variance": ((), np.float64(truth["sigma2"]), {"long_name": "noise variance"}),
            "d_eff": ((), np.int64(k), {"long_name": "effective dimension d_eff = k"}),
            "d_base": ((), np.int64(d), {"long_name": "downstream-only dimension d_base = d"}),
            **prior_art(truth["A"], truth["beta"]),
        }
