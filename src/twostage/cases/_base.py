"""The protocol every case study implements, batched over replicates, and the declaration
of the outputs a case produces.

A case study is an instance of a :class:`CaseStudy` subclass living in its own folder
``twostage/cases/<name>/`` together with its schema fragment ``schema.yaml`` (population
and estimator parameters: type, range, description, default) and, optionally, its cluster
cost model ``costs.yaml``. The framework (stages, aggregation, figures, docs, the
workflow) reads only the protocol, the fragment and :attr:`CaseStudy.outputs`; it holds no
list of any case's variable names.

Arrays carry the replicate axis first. Variables are returned as ``{name: (dims, array,
attrs)}`` so that the stage code can build datasets without knowing the case.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]
#: ``where(key)`` is the path of a parameter as the user wrote it (e.g.
#: ``studies.s.population.k`` or ``studies.s.grid.k``), for error messages.
KeyPath = Callable[[str], str]
#: The stages whose outputs a case declares.
STAGES = ("pretrain", "align", "downstream", "theory")


@dataclass(frozen=True)
class Output:
    """One variable a case produces.

    Parameters
    ----------
    name : str
        Variable name in the stage's dataset.
    stage : {'pretrain', 'align', 'downstream', 'theory'}
        The stage whose file holds it.
    dims : tuple of str
        Its dimensions (``'replicate'`` first for per-replicate variables).
    description : str
        What it is (also the ``long_name`` shown in figures and docs).
    aggregate : bool
        A per-replicate scalar kept per (point, replicate) in ``risk.nc``.
    law : str or None
        Name of the theory output holding the generalized chi-square weights of this
        diagnostic's limit law; the aggregation reports ``ks_<name>`` against it and the
        diagnostics figure draws it.
    predictions : tuple of (label, theory output) pairs
        For a multi-dimensional diagnostic: theory outputs predicting the per-entry Monte
        Carlo variance; the aggregation stores ``entry_var_<name>`` and the figure sets it
        against each prediction.
    flag : bool
        A per-replicate boolean where False marks a failure (e.g. ``converged``); the
        aggregation counts the False values per point (``n_not_<name>``).
    """

    name: str
    stage: str
    dims: tuple[str, ...]
    description: str
    aggregate: bool = False
    law: str | None = None
    predictions: tuple[tuple[str, str], ...] = ()
    flag: bool = False

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"Output {self.name!r}: stage must be one of {STAGES}")
        per_replicate = bool(self.dims) and self.dims[0] == "replicate"
        if (self.aggregate or self.flag) and self.dims != ("replicate",):
            raise ValueError(f"Output {self.name!r}: aggregated outputs have dims ('replicate',)")
        if self.stage == "theory" and per_replicate:
            raise ValueError(f"Output {self.name!r}: theory outputs are per point")
        if self.stage != "theory" and not per_replicate:
            raise ValueError(f"Output {self.name!r}: stage outputs are per replicate")


@dataclass(frozen=True)
class ClosedForm:
    """A closed form of the limit weights of ``||L(Z)||^2`` printed or derived elsewhere.

    ``variable`` is the theory output with its weights (dims ``('term',)``); ``name`` is
    the short id in derived names (``mean_L2_<name>``, ``ks_m_rep_<name>``); ``label`` is
    the legend text (e.g. "printed Cor. 6.4")."""

    name: str
    variable: str
    label: str


@dataclass(frozen=True)
class Bound:
    """A published bound set beside the exact limit: ``variable`` is a scalar theory output
    on the scale of ``E ||L(Z)||^2`` (m times the pre-training part of the excess risk),
    ``label`` says whose bound it is and whether its constants are the paper's or unit
    constants (a rate)."""

    name: str
    variable: str
    label: str


@dataclass(frozen=True)
class Erratum:
    """A closed form the paper prints, for the errata table: set against its correction
    (if any), our numerical limit and the Monte Carlo at the study's largest m.

    ``monte_carlo`` is a per-replicate variable of ``risk.nc``; ``numerical``, ``printed``
    and ``corrected`` are theory outputs, each either generalized chi-square weights (dims
    ``('term',)``, compared in law by KS and in mean) or a scalar mean."""

    label: str
    monte_carlo: str
    numerical: str
    printed: str
    corrected: str | None = None


@dataclass(frozen=True)
class Outputs:
    """Everything a case produces beyond the framework's own variables."""

    variables: tuple[Output, ...]
    closed_forms: tuple[ClosedForm, ...] = ()
    bounds: tuple[Bound, ...] = ()
    errata: tuple[Erratum, ...] = ()
    by_name: dict[str, Output] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [v.name for v in self.variables]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"outputs declared twice: {dupes}")
        object.__setattr__(self, "by_name", {v.name: v for v in self.variables})
        for form in self.closed_forms:
            out = self.by_name.get(form.variable)
            if out is None or out.stage != "theory" or out.dims != ("term",):
                raise ValueError(
                    f"closed form {form.name!r}: {form.variable!r} is not a declared theory "
                    "output with dims ('term',)"
                )
        for bound in self.bounds:
            out = self.by_name.get(bound.variable)
            if out is None or out.stage != "theory" or out.dims != ():
                raise ValueError(
                    f"bound {bound.name!r}: {bound.variable!r} is not a declared scalar "
                    "theory output"
                )
        for erratum in self.errata:
            for ref in (erratum.numerical, erratum.printed, erratum.corrected):
                if ref is not None and (
                    ref not in self.by_name or self.by_name[ref].stage != "theory"
                ):
                    raise ValueError(
                        f"erratum {erratum.label!r} refers to {ref!r}, not a declared theory output"
                    )
        for v in self.variables:
            for ref in (v.law, *(p for _, p in v.predictions)):
                if ref is not None and (
                    ref not in self.by_name or self.by_name[ref].stage != "theory"
                ):
                    raise ValueError(
                        f"output {v.name!r} refers to {ref!r}, not a declared theory output"
                    )

    def of(self, stage: str) -> tuple[Output, ...]:
        return tuple(v for v in self.variables if v.stage == stage)

    @property
    def aggregated(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables if v.aggregate)

    @property
    def with_laws(self) -> tuple[Output, ...]:
        return tuple(v for v in self.variables if v.law)

    @property
    def entries(self) -> tuple[Output, ...]:
        return tuple(v for v in self.variables if v.predictions)

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables if v.flag)


#: Outputs every case must produce (the framework reads them), with their stage.
REQUIRED = {
    "pretrain": ("representation", "descriptor"),
    "downstream": ("coef", "rep", "leak", "var", "d_eff_n"),
    "theory": ("limit_weights", "noise_variance", "d_eff", "d_base"),
}
TANGENT = ("tangent", "tangent_")


def standard_outputs(
    representation: tuple[tuple[str, ...], str],
    descriptor: tuple[tuple[str, ...], str],
    coef_dims: tuple[str, ...],
    d_eff: str,
    d_base: str,
    rep: str = "representation error Rep(Omega_hat)",
) -> tuple[Output, ...]:
    """The declarations of the :data:`REQUIRED` outputs and of V and G_L, with the case's
    dims (without 'replicate') and descriptions: ``representation`` and ``descriptor``
    are ``(dims, description)`` pairs."""
    r = ("replicate",)
    return (
        Output("representation", "pretrain", (*r, *representation[0]), representation[1]),
        Output("descriptor", "pretrain", (*r, *descriptor[0]), descriptor[1]),
        Output("coef", "downstream", (*r, *coef_dims), "min-norm OLS coefficient"),
        Output("rep", "downstream", r, rep),
        Output("leak", "downstream", r, "leakage term Leak_n(Omega_hat)"),
        Output("var", "downstream", r, "variance term sigma^2 tr(Sigma Sigma_n^+)/n"),
        Output("d_eff_n", "downstream", r, "rank Sigma_n"),
        Output("limit_weights", "theory", ("term",), "weights of ||L(Z)||^2 (numerical)"),
        Output("noise_variance", "theory", (), "downstream noise variance sigma^2"),
        Output("d_eff", "theory", (), d_eff),
        Output("d_base", "theory", (), d_base),
        Output("V", "theory", TANGENT, "covariance V of the tangent-space CLT"),
        Output("G_L", "theory", TANGENT, "Gram matrix of the residual map L"),
    )


def baseline_outputs() -> tuple[Output, ...]:
    """The declarations of the downstream-only baseline's per-replicate outputs (cases
    whose :meth:`CaseStudy.baseline` computes it)."""
    r = ("replicate",)
    terms = tuple(
        Output(f"n_base_{t}", "downstream", r, f"n {t.capitalize()} of the baseline (exact)")
        for t in ("rep", "leak", "var")
    )
    return (
        *terms,
        Output(
            "n_base",
            "downstream",
            r,
            "n (R_base - sigma^2) of the downstream-only baseline (OLS on the raw x, "
            "exact, averaged over label noise)",
            aggregate=True,
        ),
        Output(
            "beats_base",
            "downstream",
            r,
            "two-stage excess risk below the baseline's on the same downstream sample",
            aggregate=True,
        ),
    )


def _concat(parts: Sequence[Variables]) -> Variables:
    """Concatenate per-chunk Variables along their leading replicate axis."""
    return {
        name: (dims, np.concatenate([p[name][1] for p in parts], axis=0), attrs)
        for name, (dims, _, attrs) in parts[0].items()
    }


def _chunks(total: int, per_replicate: int, max_floats: int) -> list[tuple[int, int]]:
    """Replicate ranges holding at most ``max_floats`` numbers of data each."""
    size = max(1, int(max_floats) // max(1, per_replicate))
    return [(a, min(a + size, total)) for a in range(0, total, size)]


def arrays(variables: Variables) -> dict[str, np.ndarray]:
    """The arrays of a Variables mapping."""
    return {name: arr for name, (_, arr, _) in variables.items()}


class CaseStudy(abc.ABC):
    """A case study: data, pre-training estimator, symmetry, downstream risk and limit.

    Subclasses set the class attributes and implement the abstract methods; a missing
    method fails when the case is instantiated (at import of its folder), not inside a run.
    Parameters arrive split in two mappings, validated against the case's schema fragment
    and filled with its defaults: ``population`` (defines the truth) and ``estimator``
    (settings of the pre-training algorithm); the sample sizes ``m`` and ``n`` come apart.
    """

    #: registry name (also the folder name under ``twostage/cases``)
    name: ClassVar[str]
    #: the symmetry group acting on representations (see :mod:`twostage.groups`)
    group: ClassVar[Any]
    #: the variables the case produces (see :class:`Outputs`)
    outputs: ClassVar[Outputs]
    #: small settings for the contract tests and examples: ``population``, ``estimator``,
    #: ``n``, ``alpha`` (each run in about a second)
    tiny: ClassVar[dict[str, Any]]
    #: False when the data are too large to store (e.g. raw mixture samples at m = 2e5):
    #: simulate then writes only the truth, and pretrain/downstream regenerate the data
    #: from the same keyed per-replicate streams (identical numbers).
    stores_data: ClassVar[bool] = True

    def tiny_params(self) -> dict[str, Any]:
        """:attr:`tiny` as one flat parameter mapping (population, estimator, ``n``,
        ``alpha``), as :func:`twostage.api.study_spec` and ``run_point`` take it."""
        tiny = self.tiny
        return {**tiny["population"], **tiny["estimator"], "n": tiny["n"], "alpha": tiny["alpha"]}

    # ------------------------------------------------------------------ parameters
    def check(  # noqa: B027 (optional hook: no cross-key checks by default)
        self, population: Mapping[str, Any], estimator: Mapping[str, Any], where: KeyPath
    ) -> None:
        """Cross-key checks the schema cannot express (e.g. ``len(beta) == k``); raise
        :class:`~twostage.errors.ConfigError` naming ``where(key)``. Default: none."""

    def rank_deficient(self, ds: Any, d_eff: int, point: Any) -> np.ndarray:
        """Per replicate (of the combined downstream files ``ds``): True where the fit is
        rank-deficient, here the downstream Gram matrix of rank ``d_eff_n`` below
        ``d_eff`` (a case adds its own, e.g. fewer active pre-trained directions)."""
        return np.asarray(ds["d_eff_n"].values) < d_eff

    def min_pretrain_size(self, population: Mapping[str, Any]) -> tuple[int, str]:
        """The smallest pre-training size m the estimator is defined at, and why (e.g.
        ``(k, "k = 3, the representation's dimension")``). Default: ``(1, "")``."""
        return 1, ""

    # ------------------------------------------------------------------ truth and data
    @abc.abstractmethod
    def truth(self, population: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        """The point's ground truth, from its population parameters only (``rng`` is the
        point's truth stream, keyed by the case and the population)."""

    @abc.abstractmethod
    def sample(
        self,
        truth: Mapping[str, np.ndarray],
        size: int,
        rngs: Sequence[np.random.Generator],
        role: str,
        sampling: str,
    ) -> Variables:
        """Pre-training (``role='pretrain'``, size m) or downstream (``'downstream'``, size n)
        data for each replicate, raw or as exact draws of sufficient statistics; replicate i
        draws only from ``rngs[i]``."""

    # ------------------------------------------------------------------ estimators
    @abc.abstractmethod
    def pretrain(
        self,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        estimator: Mapping[str, Any],
        rngs: Sequence[np.random.Generator],
    ) -> Variables:
        """The stage-1 M-estimator: ``representation`` and ``descriptor`` per replicate (and
        diagnostics). ``rngs`` are per-replicate streams for randomised algorithms."""

    @abc.abstractmethod
    def reference(self, truth: Mapping[str, np.ndarray]) -> np.ndarray:
        """The true representative, in the layout of ``representation``, to which the
        alignment stage maps each estimate by the symmetry group."""

    def diagnostics(
        self,
        truth: Mapping[str, np.ndarray],
        est: Mapping[str, np.ndarray],
        aligned: np.ndarray,
        m: int,
    ) -> Variables:
        """Parameter-level diagnostics of the aligned representatives (alignment stage).
        Default: none."""
        return {}

    def baseline(
        self, truth: Mapping[str, np.ndarray], design: Mapping[str, np.ndarray], n: int
    ) -> Variables | None:
        """The downstream-only baseline of paper Section 5 (the ERM over the full model on
        the downstream sample alone) on the same design: its exact conditional ``rep``,
        ``leak`` and ``var`` per replicate, or None when the case has none (default). A case
        returning it declares :func:`baseline_outputs`."""
        return None

    @abc.abstractmethod
    def downstream(
        self,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        design: Mapping[str, np.ndarray],
        n: int,
    ) -> Variables:
        """Min-norm OLS and the exact conditional risk decomposition (Prop. B.1):
        ``coef``, ``rep``, ``leak``, ``var`` (unscaled) and ``d_eff_n`` per replicate."""

    # ------------------------------------------------------------------ theory
    @abc.abstractmethod
    def limit(self, truth: Mapping[str, np.ndarray], estimator: Mapping[str, Any]) -> Variables:
        """The limit of Theorem 5.1: ``limit_weights`` of ``||L(Z)||^2`` (dims ``term``),
        ``sigma2``, ``d_eff``, ``d_base``, and the declared closed forms and laws."""

    # -------------------------------------------------- cases that do not store their data
    def floats_per_sample(self, truth: Mapping[str, np.ndarray], role: str, sampling: str) -> int:
        """Numbers held per sample of the given role (from one throw-away draw of size 1),
        to bound memory when ``stores_data`` is False."""
        one = self.sample(truth, 1, [np.random.default_rng(0)], role, sampling)
        return max(1, sum(int(arr.size) for _, arr, _ in one.values()))

    def pretrain_from_streams(
        self,
        truth: Mapping[str, np.ndarray],
        m: int,
        estimator: Mapping[str, Any],
        data_rngs: Sequence[np.random.Generator],
        algorithm_rngs: Sequence[np.random.Generator],
        sampling: str = "raw",
        max_floats: int = 2**24,
    ) -> Variables:
        """:meth:`sample` (role 'pretrain') then :meth:`pretrain`, a chunk of replicates at
        a time (at most ``max_floats`` data values in memory), from fresh keyed generators.
        Identical to one call on all replicates (every replicate draws from its own
        stream)."""
        per = m * self.floats_per_sample(truth, "pretrain", sampling)
        parts = []
        for a, b in _chunks(len(data_rngs), per, max_floats):
            data = arrays(self.sample(truth, m, data_rngs[a:b], "pretrain", sampling))
            parts.append(self.pretrain(truth, data, estimator, algorithm_rngs[a:b]))
        return _concat(parts)

    def downstream_from_streams(
        self,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        n: int,
        data_rngs: Sequence[np.random.Generator],
        sampling: str = "raw",
        max_floats: int = 2**24,
    ) -> Variables:
        """:meth:`sample` (role 'downstream') then :meth:`downstream`, a chunk of
        replicates at a time, from fresh keyed generators."""
        (out,) = self.downstream_each_from_streams(
            truth, [representation], n, data_rngs, sampling, max_floats
        )
        return out

    def downstream_each_from_streams(
        self,
        truth: Mapping[str, np.ndarray],
        representations: Sequence[np.ndarray],
        n: int,
        data_rngs: Sequence[np.random.Generator],
        sampling: str = "raw",
        max_floats: int = 2**24,
    ) -> list[Variables]:
        """:meth:`downstream_from_streams` for several representations of the same
        replicates (e.g. an estimate and its aligned twin) on ONE draw of each replicate's
        design: the design is sampled once per chunk, passed through
        :meth:`prepare_design`, and every representation is evaluated on it."""
        per = n * self.floats_per_sample(truth, "downstream", sampling)
        parts: list[list[Variables]] = [[] for _ in representations]
        for a, b in _chunks(len(data_rngs), per, max_floats):
            design = arrays(self.sample(truth, n, data_rngs[a:b], "downstream", sampling))
            design = self.prepare_design(truth, design)
            for out, representation in zip(parts, representations, strict=True):
                out.append(self.downstream(truth, representation[a:b], design, n))
        return [_concat(p) for p in parts]

    def prepare_design(
        self, truth: Mapping[str, np.ndarray], design: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Quantities of a downstream design that do not depend on the representation
        (e.g. the regression function on the design), computed once and shared by every
        representation evaluated on it; :meth:`downstream` must give the same numbers with
        or without them. Default: the design as it is."""
        return design
