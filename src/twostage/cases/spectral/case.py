"""Linear spectral (contrastive) pre-training (paper section 6.1, Appendix H).

Data: ``x ~ N(0, Sigma_pre)``; a positive view ``x+`` with ``Cov(x+) = Sigma_pre`` and
``E[x+ x^T] = Sigma_plus``, drawn by the Gaussian coupling (whitened ``z = Sigma^{-1/2} x``)
``z+ = Ct z + (I - Ct^2)^{1/2} xi``, ``Ct = Sigma^{-1/2} Sigma_plus Sigma^{-1/2}`` (the paper
does not say how pairs are generated); an independent negative ``x-``.
Features ``psi(x, A) = A x`` (A is k x d); loss (6.2)
``l(M; z) = -2 x^T M x+ + (x^T M x-)^2`` with the orbit-invariant descriptor ``M = A^T A``
on the manifold of rank-k PSD matrices. The empirical loss depends on the data only through
``S+ = sym(mean x x+^T)`` and ``T = mean (x x^T) kron (x- x-^T)`` (d^2 x d^2):
``L_m(M) = -2 <M, S+> + vec(M)^T T vec(M)``; the population loss is
``L(M) = -2 tr(M Sigma_plus) + tr(M Sigma M Sigma)`` (Lemma H.1).

Representatives are stored as ``A^T`` (d x k), so that O(k) acts by right multiplication
(``A^T -> A^T Q``) as in the factor model, and ``M = rep rep^T``.

Downstream: ``x ~ N(0, I_d)`` (Sigma_down = I), ``f*(x) = beta*^T A* x = m*^T x``. The
estimator is min-norm OLS on ``phi = A_hat x``; the exact risk decomposition (Prop. B.1)
depends on the design only through ``S_n`` ~ W_d(I, n)/n.

Instances (both block-diagonal, App. H.7): ``concrete`` (section 6.1: Sigma_pre = I,
Sigma_plus = diag(1, 1/2, ..., 1/d), A* = [diag(1, 1/sqrt 2, ..., 1/sqrt k), 0], beta* = 1)
and ``block_diagonal`` (Sigma_pre = diag(a, b), Sigma_plus = diag(c, e)); in both
``M* = diag(c_i / a_i^2, 0)`` and ``A* = [diag(sqrt(c_i) / a_i), 0]``.

The limit is computed from first principles on the tangent space of the fixed-rank PSD
manifold at M* with the *Riemannian* Hessian (Euclidean Hessian ``2 Sigma H Sigma`` plus the
Weingarten term of the normal gradient ``2 (Sigma M* Sigma - Sigma_plus)``), which the
paper's Cor. H.14 / Cor. 6.3 omit; both the printed closed form and the
corrected one are reported alongside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ...errors import ConfigError
from ...groups import OrthogonalGroup
from ...limits import directional_derivatives, gchisq_weights, gram, pad_weights, sandwich
from ...linalg import sym
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
from .._linear import baseline_variables, design_covariance, isotropic_design, risk_variables
from .data import (
    _coupling,
    draw_samples,
    draw_statistics,
    instance_blocks,
    statistics_from_samples,
)
from .estimator import canonical_representative, excess_population_loss, minimise, starts
from .theory import canonical_section, closed_forms, population_residual, score_covariance

F, C, F_ = "feature", "component", "feature_"
#: dimension of the d - k directions orthogonal to range(M*)
PERP = "complement"
#: dimension of vec(M) (d^2 entries, row-major), for T_hat
PAIR, PAIR_ = "pair", "pair_"


# ---------------------------------------------------------------------------- the case
class SpectralPretraining(CaseStudy):
    """Linear spectral (contrastive) pre-training case study."""

    name: ClassVar[str] = "spectral"
    group: ClassVar[Any] = OrthogonalGroup
    tiny: ClassVar[dict[str, Any]] = {
        "population": {"d": 4, "k": 2},
        "estimator": {"n_starts": 2},
        "n": 300,
        "alpha": 2.0,
    }
    outputs: ClassVar[Outputs] = Outputs(
        variables=(
            *standard_outputs(
                representation=((F, C), "A_hat^T, canonical SVD form"),
                descriptor=((F, F_), "M_hat = A_hat^T A_hat"),
                coef_dims=(C,),
                d_eff="effective dimension d_eff = k",
                d_base="downstream-only dimension d_base = d",
                rep="Rep = ||(I - P_hat) m*||^2",
            ),
            *baseline_outputs(),
            Output(
                "converged",
                "pretrain",
                ("replicate",),
                "||grad_A L_m(A_hat)||_F <= gtol at the kept start",
                aggregate=True,
                flag=True,
            ),
            Output("n_iter", "pretrain", ("replicate",), "Newton iterations", aggregate=True),
            Output("objective", "pretrain", ("replicate",), "L_m(M_hat)", aggregate=True),
            Output("grad_norm", "pretrain", ("replicate",), "||grad_A L_m||_F", aggregate=True),
            Output(
                "best_start", "pretrain", ("replicate",), "index of the kept start", aggregate=True
            ),
            Output(
                "n_worse_starts",
                "pretrain",
                ("replicate",),
                "starts that ended at a higher loss (other local minima)",
                aggregate=True,
            ),
            Output(
                "representation_section",
                "align",
                ("replicate", F, C),
                "canonical section s(M_hat)^T of App. H.1",
            ),
            Output(
                "section_distance",
                "align",
                ("replicate",),
                "||s(M_hat)^T - s(M*)^T||_F",
                aggregate=True,
            ),
            Output(
                "descriptor_distance", "align", ("replicate",), "||M_hat - M*||_F", aggregate=True
            ),
            Output(
                "offdiag_block",
                "align",
                ("replicate", PERP, C),
                "sqrt(m) U2^T M_hat U1 (off-diagonal block, eigenbasis of M*)",
                predictions=(
                    ("Riemannian Hessian", "offdiag_var_riemannian"),
                    ("Euclidean Hessian (H.14)", "offdiag_var_euclidean"),
                    ("printed", "offdiag_var_printed"),
                    ("corrected closed form", "offdiag_var_corrected"),
                ),
            ),
            Output(
                "excess_pretrain_loss",
                "align",
                ("replicate",),
                "m (L(M_hat) - L(M*)), population pre-training loss",
                aggregate=True,
                law="law_excess_pretrain_loss",
            ),
            Output("closed_form_printed", "theory", ("term",), "printed Cor. 6.3 / (H.39)"),
            Output("closed_form_corrected", "theory", ("term",), "corrected (H.39)"),
            Output("bound_cabannes", "theory", (), "Cabannes et al. 2023 Thm 4 rate"),
            Output("bound_paper_rate", "theory", (), "the paper's Section 6.1 rate k^2 (d - k)"),
            Output("law_excess_pretrain_loss", "theory", ("term",), "limit 1/2 Z^T H_R Z weights"),
            Output("excess_pretrain_loss_h40", "theory", ("term",), "(H.40) limit weights"),
            Output("mean_excess_pretrain_loss_h41", "theory", (), "printed mean (H.41)"),
            Output("offdiag_var_riemannian", "theory", (PERP, C), "Riemannian-Hessian variance"),
            Output("offdiag_var_euclidean", "theory", (PERP, C), "Euclidean-Hessian variance"),
            Output("offdiag_var_printed", "theory", (PERP, C), "printed per-entry variance"),
            Output("offdiag_var_corrected", "theory", (PERP, C), "corrected per-entry variance"),
            Output("hessian", "theory", ("tangent", "tangent_"), "Riemannian Hessian at M*"),
            Output(
                "hessian_euclidean",
                "theory",
                ("tangent", "tangent_"),
                "projected Euclidean Hessian",
            ),
            Output("score_cov", "theory", ("tangent", "tangent_"), "Riemannian score covariance"),
        ),
        closed_forms=(
            ClosedForm("printed", "closed_form_printed", "paper's printed Cor. 6.3 / (H.39)"),
            ClosedForm("corrected", "closed_form_corrected", "(H.39) with the Riemannian Hessian"),
        ),
        bounds=(
            Bound(
                "cabannes",
                "bound_cabannes",
                "Cabannes et al. 2023 Thm 4 (paper App. H.7), rate, unit constant",
            ),
            Bound("paper_rate", "bound_paper_rate", "paper §6.1 rate k²(d−k), unit constant"),
        ),
        errata=(
            Erratum(
                "spectral Cor. 6.3 / (H.39): law of m Rep",
                "m_rep",
                "limit_weights",
                "closed_form_printed",
                "closed_form_corrected",
            ),
            Erratum(
                "spectral (H.40): law of m (L(M_hat) - L(M*))",
                "excess_pretrain_loss",
                "law_excess_pretrain_loss",
                "excess_pretrain_loss_h40",
            ),
            Erratum(
                "spectral (H.41): mean of m (L(M_hat) - L(M*))",
                "excess_pretrain_loss",
                "law_excess_pretrain_loss",
                "mean_excess_pretrain_loss_h41",
            ),
        ),
    )

    def min_pretrain_size(self, population: Mapping[str, Any]) -> tuple[int, str]:
        k = int(population["k"])
        return k, f"k = {k}, the representation's dimension"

    def check(
        self, population: Mapping[str, Any], estimator: Mapping[str, Any], where: KeyPath
    ) -> None:
        params = population
        d, k = int(params["d"]), int(params["k"])
        if k >= d:
            raise ConfigError(f"invalid config key '{where('k')}': expected k < d = {d}; got {k}")
        beta = params.get("beta")
        if beta is not None and len(beta) != k:
            raise ConfigError(
                f"invalid config key '{where('beta')}': expected k = {k} values or null; "
                f"got {len(beta)}"
            )
        instance = params.get("instance", "concrete")
        sizes = {"a": k, "b": d - k, "c": k, "e": d - k}
        if instance == "concrete":
            for key in sizes:
                if params.get(key) is not None:
                    raise ConfigError(
                        f"invalid config key '{where(key)}': only used by instance "
                        f"'block_diagonal'; expected null with instance 'concrete'"
                    )
            return
        for key, size in sizes.items():
            value = params.get(key)
            if value is None or len(value) != size:
                got = "null" if value is None else f"{len(value)} values"
                raise ConfigError(
                    f"invalid config key '{where(key)}': instance 'block_diagonal' needs "
                    f"{size} values; got {got}"
                )
        a, b, c, e = (np.asarray(params[key], dtype=float) for key in sizes)
        for key, arr in (("a", a), ("b", b)):
            if np.any(arr <= 0):
                raise ConfigError(
                    f"invalid config key '{where(key)}': variances must be > 0; got {arr.tolist()}"
                )
        lam, mu = c / a, e / b
        if np.any(lam <= 0) or np.any(lam > 1):
            raise ConfigError(
                f"invalid config key '{where('c')}': expected 0 < c_i/a_i <= 1 (a positive "
                f"pair with Cov(x+) = Cov(x) exists; Assumption 6.1); got c/a = {lam.tolist()}"
            )
        if np.any(np.abs(mu) > 1):
            raise ConfigError(
                f"invalid config key '{where('e')}': expected |e_j/b_j| <= 1 (a positive pair "
                f"with Cov(x+) = Cov(x) exists); got e/b = {mu.tolist()}"
            )
        if not lam.min() > mu.max():
            raise ConfigError(
                f"invalid config key '{where('e')}': expected e_j/b_j < c_i/a_i for all i, j "
                f"(eigengap, Assumption 6.1); got max e/b = {mu.max():.6g} >= "
                f"min c/a = {lam.min():.6g}"
            )

    # ------------------------------------------------------------------ truth and data
    def truth(self, population: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        """Population truth (deterministic; ``rng`` is unused)."""
        params = population
        d, k = int(params["d"]), int(params["k"])
        a, b, c, e = instance_blocks(params)
        beta = np.ones(k) if params.get("beta") is None else np.asarray(params["beta"], dtype=float)
        sigma_pre = np.diag(np.concatenate([a, b]))
        sigma_plus = np.diag(np.concatenate([c, e]))
        r = c / a**2
        a_star_t = np.zeros((d, k))  # A*^T
        a_star_t[np.arange(k), np.arange(k)] = np.sqrt(r)
        eye = np.eye(d)
        return {
            "A": ((F, C), a_star_t, {"long_name": "true representative A*^T (d x k)"}),
            "U1": ((F, C), eye[:, :k], {"long_name": "orthonormal basis of range(M*)"}),
            "U2": ((F, PERP), eye[:, k:], {"long_name": "orthonormal basis of ker(M*)"}),
            "M_star": ((F, F_), a_star_t @ a_star_t.T, {"long_name": "M* = A*^T A*"}),
            "Sigma_pre": ((F, F_), sigma_pre, {"long_name": "Sigma_pre = E[x x^T]"}),
            "Sigma_plus": ((F, F_), sigma_plus, {"long_name": "Sigma_plus = E[x+ x^T]"}),
            "lambda": ((C,), c / a, {"long_name": "whitened top correlations c_i / a_i"}),
            "mu": ((PERP,), e / b, {"long_name": "whitened other correlations e_j / b_j"}),
            "beta": ((C,), beta, {"long_name": "downstream coefficients beta*"}),
            "m_star": (
                (F,),
                a_star_t @ beta,
                {"long_name": "f*(x) = m*^T x, m* = A*^T beta* (Sigma_down = I)"},
            ),
            "sigma2": ((), np.float64(params["sigma2"]), {"long_name": "label noise variance"}),
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
        d = truth["Sigma_pre"].shape[0]
        if role == "pretrain":
            coupling = _coupling(truth["Sigma_pre"], truth["Sigma_plus"])
            if sampling == "raw":
                out = np.empty((3, len(rngs), size, d))
                for i, rng in enumerate(rngs):
                    out[:, i] = draw_samples(rng, size, coupling)
                dims = ("replicate", "sample_pre", F)
                return {
                    "x_pre": (dims, out[0], {"long_name": "pre-training anchors x"}),
                    "xplus_pre": (dims, out[1], {"long_name": "positive views x+"}),
                    "xminus_pre": (dims, out[2], {"long_name": "negatives x- (independent)"}),
                }
            s = np.empty((len(rngs), d, d))
            t = np.empty((len(rngs), d * d, d * d))
            for i, rng in enumerate(rngs):
                s[i], t[i] = draw_statistics(rng, size, coupling)
            return {
                "S_plus": (
                    ("replicate", F, F_),
                    s,
                    {"long_name": "S+ = sym(mean x x+^T) (Z^T Xi by its exact conditional law)"},
                ),
                "T_hat": (
                    ("replicate", PAIR, PAIR_),
                    t,
                    {"long_name": "T = mean (x x^T) kron (x- x-^T), row-major vec (d^2 x d^2)"},
                ),
            }
        return isotropic_design(d, size, rngs, sampling)

    @staticmethod
    def _statistics(data: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if "S_plus" in data:
            return data["S_plus"], data["T_hat"]
        return statistics_from_samples(data["x_pre"], data["xplus_pre"], data["xminus_pre"])

    # ------------------------------------------------------------------ estimators
    def pretrain(
        self,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        estimator: Mapping[str, Any],
        rngs: Sequence[np.random.Generator] | None,
    ) -> Variables:
        """Multi-start Newton minimisation of the empirical loss (see :func:`minimise`);
        ``rngs`` (one stream per replicate, the stage's ``pretrain_algorithm`` streams) draw
        the perturbations of the extra starts."""
        k = truth["A"].shape[1]
        s_plus, t_hat = self._statistics(data)
        r, d, _ = s_plus.shape
        n_starts = int(estimator["n_starts"])
        w0 = starts(s_plus, t_hat, k, n_starts, rngs).reshape(r * n_starts, d, k)
        res = minimise(
            np.repeat(s_plus, n_starts, axis=0),
            np.repeat(t_hat, n_starts, axis=0),
            w0,
            gtol=float(estimator["gtol"]),
            max_iter=int(estimator["max_iter"]),
        )
        obj = res["objective"].reshape(r, n_starts)
        # keep the first start whose loss is the lowest up to 1e-9 (relative): the spectral
        # start unless another start found a lower minimum
        low = obj.min(axis=1, keepdims=True)
        worse = obj > low + 1e-9 * (1.0 + np.abs(low))
        best = np.argmin(worse, axis=1)
        pick = np.arange(r) * n_starts + best
        rep = canonical_representative(res["w"][pick])
        spurious = worse.sum(axis=1)
        return {
            "representation": (
                ("replicate", F, C),
                rep,
                {"long_name": "representative A_hat^T (d x k), canonical SVD form"},
            ),
            "descriptor": (
                ("replicate", F, F_),
                rep @ np.swapaxes(rep, -1, -2),
                {"long_name": "orbit-invariant descriptor M_hat = A_hat^T A_hat"},
            ),
            "converged": (
                ("replicate",),
                res["converged"][pick],
                {"long_name": "||grad_A L_m(A_hat)||_F <= gtol at the kept start"},
            ),
            "n_iter": (
                ("replicate",),
                res["n_iter"][pick],
                {"long_name": "Newton iterations of the kept start"},
            ),
            "objective": (
                ("replicate",),
                res["objective"][pick],
                {"long_name": "empirical pre-training loss L_m(M_hat)"},
            ),
            "grad_norm": (
                ("replicate",),
                res["grad_norm"][pick],
                {"long_name": "||grad_A L_m||_F at the kept start"},
            ),
            "best_start": (
                ("replicate",),
                best.astype(np.int64),
                {"long_name": "index of the kept start (0 = spectral start)"},
            ),
            "n_worse_starts": (
                ("replicate",),
                spurious.astype(np.int64),
                {"long_name": "starts that ended at a higher loss (other local minima)"},
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
        k = truth["A"].shape[1]
        m_hat = est["descriptor"]
        section = canonical_section(m_hat, truth["U1"], k)
        offdiag = np.sqrt(m) * np.swapaxes(truth["U2"], -1, -2) @ m_hat @ truth["U1"]
        return {
            "representation_section": (
                ("replicate", F, C),
                section,
                {"long_name": "canonical section s(M_hat)^T of App. H.1 (reference U1)"},
            ),
            "section_distance": (
                ("replicate",),
                np.linalg.norm(section - truth["A"], axis=(-2, -1)),
                {"long_name": "||s(M_hat)^T - s(M*)^T||_F"},
            ),
            "descriptor_distance": (
                ("replicate",),
                np.linalg.norm(m_hat - truth["M_star"], axis=(-2, -1)),
                {"long_name": "||M_hat - M*||_F (orbit-invariant)"},
            ),
            "offdiag_block": (
                ("replicate", PERP, C),
                offdiag,
                {"long_name": "sqrt(m) U2^T M_hat U1 (off-diagonal block, eigenbasis of M*)"},
            ),
            "excess_pretrain_loss": (
                ("replicate",),
                m * excess_population_loss(truth, m_hat),
                {"long_name": "m (L(M_hat) - L(M*)), population pre-training loss"},
            ),
        }

    def baseline(
        self, truth: Mapping[str, np.ndarray], design: Mapping[str, np.ndarray], n: int
    ) -> Variables:
        """OLS on the raw x (d_base = d): ``rep`` 0, ``var = sigma^2 tr(Sigma_x S_n^+)/n``."""
        s_n = design_covariance(design)
        return baseline_variables(np.eye(s_n.shape[-1]), truth["m_star"], truth["sigma2"], s_n, n)

    def downstream(
        self,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        design: Mapping[str, np.ndarray],
        n: int,
    ) -> Variables:
        s_n = design_covariance(design)
        eye = np.eye(s_n.shape[-1])
        feat = np.swapaxes(representation, -1, -2)  # phi = A_hat x, Sigma_down = I
        return risk_variables(
            eye,
            truth["m_star"],
            truth["sigma2"],
            feat,
            s_n,
            n,
            rep_name="representation error Rep = ||(I - P_hat) m*||^2",
        )

    # ------------------------------------------------------------------ theory
    def limit(self, truth: Mapping[str, np.ndarray], estimator: Mapping[str, Any]) -> Variables:
        sigma, sp, m_star = truth["Sigma_pre"], truth["Sigma_plus"], truth["M_star"]
        d, k = truth["A"].shape
        geo = FixedRankPSD(m_star, k)
        basis = geo.tangent_basis()
        q = geo.dim
        egrad = 2.0 * (sigma @ m_star @ sigma - sp)

        def ehess(h: np.ndarray) -> np.ndarray:
            return 2.0 * sigma @ h @ sigma

        hess = geo.riemannian_hessian(egrad, ehess)
        images = np.array([geo.project(ehess(b)) for b in basis])
        hess_e = sym(np.einsum("iab,jab->ij", basis, images))
        score_cov = score_covariance(sigma, sp, m_star, basis)
        v = sandwich(hess, score_cov)
        v_e = sandwich(hess_e, score_cov)
        u1, u2 = truth["U1"], truth["U2"]

        def residual_coords(m: np.ndarray) -> np.ndarray:
            # Sigma_down = I: the residual coefficients are isometric L2 coordinates
            return population_residual(truth, canonical_section(m, u1, k))[0]

        step = 1e-3 * float(geo.eigenvalues.min())
        jac = directional_derivatives(residual_coords, basis, geo.retract, step)
        g_l = gram(jac)
        weights = gchisq_weights(v, g_l)
        # m (L(M_hat) - L(M*)) -> 1/2 Z^T H_R Z (second-order expansion along the manifold;
        # the normal gradient contributes the Weingarten part of H_R), and the paper's
        # (H.40) <Z, Sigma Z Sigma> = 1/2 Z^T H_E Z (Euclidean part only), both Z ~ N(0, V)
        excess_w = gchisq_weights(v, 0.5 * hess)
        excess_h40 = gchisq_weights(v, 0.5 * hess_e)
        # per-entry variances of sqrt(m) u2_a^T M_hat u1_i: functional <xi, sym(u2_a u1_i^T)>
        outer = np.einsum("da,ei->aide", u2, u1)
        funct = np.einsum("lde,aide->ail", basis, sym(outer))
        var_r = np.einsum("ail,lm,aim->ai", funct, v, funct)
        var_e = np.einsum("ail,lm,aim->ai", funct, v_e, funct)
        cf = closed_forms(truth)
        lam = truth["lambda"]
        tau = float(np.sum(lam**2))
        is_white = np.array_equal(sigma, np.eye(d))
        h41 = (
            k * (4 * d - 2 * k - 1) * (1 + tau) + 2 * (2 * d - 1) * tau + 2 * np.sum(lam) ** 2
            if is_white
            else np.nan
        )
        t, tt = ("tangent", "tangent_")
        return {
            "limit_weights": (
                ("term",),
                pad_weights(weights, q),
                {"long_name": "weights nu of ||L(Z)||^2 = sum nu chi2_1 (numerical)"},
            ),
            "closed_form_printed": (
                ("term",),
                pad_weights(cf["printed"], q),
                {"long_name": "weights of the paper's printed Cor. 6.3 / (H.39)"},
            ),
            "closed_form_corrected": (
                ("term",),
                pad_weights(cf["corrected"], q),
                {"long_name": "weights of (H.39) with the Riemannian Hessian (eigengap term)"},
            ),
            "law_excess_pretrain_loss": (
                ("term",),
                pad_weights(excess_w, q),
                {"long_name": "weights of the limit 1/2 Z^T H_R Z of m (L(M_hat) - L(M*))"},
            ),
            "excess_pretrain_loss_h40": (
                ("term",),
                pad_weights(excess_h40, q),
                {
                    "long_name": "weights of the paper's (H.40) limit <Z, Sigma Z Sigma> "
                    "(Euclidean part only; Z ~ N(0, V) with the Riemannian V)"
                },
            ),
            "bound_cabannes": (
                (),
                np.float64(k * (d - k) * np.sum(truth["beta"] ** 2 / np.diag(m_star)[:k])),
                {
                    "long_name": "Cabannes et al. 2023 Thm 4 as applied in App. H.7 (lambda = 0): "
                    "k (d - k) ||R^-1/2 beta*||^2, R = A* A*^T (rate)"
                },
            ),
            "bound_paper_rate": (
                (),
                np.float64(k**2 * (d - k)),
                {"long_name": "the paper's Section 6.1 rate k^2 (d - k)"},
            ),
            "mean_excess_pretrain_loss_h41": (
                (),
                np.float64(h41),
                {"long_name": "the paper's printed mean (H.41) (Sigma_pre = I only, else NaN)"},
            ),
            "offdiag_var_riemannian": (
                (PERP, C),
                var_r,
                {"long_name": "Var of sqrt(m) u2_a^T M_hat u1_i, Riemannian-Hessian V"},
            ),
            "offdiag_var_euclidean": (
                (PERP, C),
                var_e,
                {"long_name": "Var of sqrt(m) u2_a^T M_hat u1_i, Euclidean-Hessian V (H.14)"},
            ),
            "offdiag_var_printed": (
                (PERP, C),
                cf["offdiag_printed"],
                {"long_name": "printed per-entry variance 2 (1 + tau + lambda_i^2)/(a_i b_j)"},
            ),
            "offdiag_var_corrected": (
                (PERP, C),
                cf["offdiag_corrected"],
                {"long_name": "per-entry variance of (H.39) with the Riemannian Hessian"},
            ),
            "V": ((t, tt), v, {"long_name": "covariance of the tangent-space CLT"}),
            "hessian": ((t, tt), hess, {"long_name": "Riemannian Hessian of L_pre at M*"}),
            "hessian_euclidean": (
                (t, tt),
                hess_e,
                {"long_name": "projected Euclidean Hessian 2 Sigma H Sigma (no Weingarten term)"},
            ),
            "score_cov": ((t, tt), score_cov, {"long_name": "covariance of the Riemannian score"}),
            "G_L": ((t, tt), g_l, {"long_name": "Gram matrix of the residual map L"}),
            "noise_variance": ((), np.float64(truth["sigma2"]), {"long_name": "noise variance"}),
            "d_eff": ((), np.int64(k), {"long_name": "effective dimension d_eff = k"}),
            "d_base": ((), np.int64(d), {"long_name": "downstream-only dimension d_base = d"}),
        }
