"""The protocol every case study implements, batched over replicates.

Arrays carry the replicate axis first. Variables are returned as ``{name: (dims, array,
attrs)}`` so that the stage code can build datasets without knowing the case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

Variables = dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, str]]]


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


class CaseStudy:
    """Interface of a case study (see ``design.md``). All methods are class methods."""

    name: ClassVar[str]
    #: the symmetry group acting on representations
    group: ClassVar[Any]
    #: False when the data are too large to store (e.g. raw mixture samples at m = 2e5):
    #: simulate then writes only the truth, and pretrain/downstream regenerate the data
    #: from the same keyed per-replicate streams (identical numbers).
    stores_data: ClassVar[bool] = True
    #: multi-dimensional per-replicate diagnostics of ``align`` carried to the downstream
    #: files; their per-entry variances are summarised per point in ``risk.nc`` and drawn
    #: against the theory variables whose names start with the given prefix
    entry_diagnostics: ClassVar[dict[str, str]] = {}

    @classmethod
    def check_params(cls, params: Mapping[str, Any], prefix: str = "params") -> None:
        """Cross-key checks the schema cannot express; raise ConfigError naming the key."""

    @classmethod
    def truth(cls, params: Mapping[str, Any], rng: np.random.Generator) -> Variables:
        """Population parameters of a point (its ground truth)."""
        raise NotImplementedError

    @classmethod
    def sample(
        cls,
        truth: Mapping[str, np.ndarray],
        size: int,
        rngs: Sequence[np.random.Generator],
        role: str,
        sampling: str,
    ) -> Variables:
        """Pre-training (``role='pretrain'``, size m) or downstream (``'downstream'``, size n)
        data for each replicate, raw or as exact draws of sufficient statistics."""
        raise NotImplementedError

    @classmethod
    def pretrain(
        cls,
        truth: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        rngs: Sequence[np.random.Generator] | None = None,
    ) -> Variables:
        """The stage-1 M-estimator: ``representation`` and ``descriptor`` per replicate.

        ``rngs`` are per-replicate streams for randomised algorithms (e.g. EM starts)."""
        raise NotImplementedError

    # -------------------------------------------------- cases that do not store their data
    @classmethod
    def floats_per_sample(cls, truth: Mapping[str, np.ndarray]) -> int:
        """Numbers per raw sample (e.g. d), to bound memory when ``stores_data`` is False."""
        raise NotImplementedError

    @classmethod
    def pretrain_from_streams(
        cls,
        truth: Mapping[str, np.ndarray],
        m: int,
        data_rngs: Sequence[np.random.Generator],
        algorithm_rngs: Sequence[np.random.Generator],
        sampling: str = "raw",
        max_floats: int = 2**24,
    ) -> Variables:
        """:meth:`sample` (role 'pretrain') then :meth:`pretrain`, a chunk of replicates at
        a time (at most ``max_floats`` data values in memory), from fresh keyed generators.
        Identical to one call on all replicates (every replicate draws from its own
        stream)."""
        parts = []
        for a, b in _chunks(len(data_rngs), m * cls.floats_per_sample(truth), max_floats):
            data = cls.sample(truth, m, data_rngs[a:b], "pretrain", sampling)
            arrays = {name: arr for name, (_, arr, _) in data.items()}
            parts.append(cls.pretrain(truth, arrays, rngs=algorithm_rngs[a:b]))
        return _concat(parts)

    @classmethod
    def downstream_from_streams(
        cls,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        n: int,
        data_rngs: Sequence[np.random.Generator],
        sampling: str = "raw",
        max_floats: int = 2**24,
    ) -> Variables:
        """:meth:`sample` (role 'downstream') then :meth:`downstream`, a chunk of
        replicates at a time, from fresh keyed generators."""
        parts = []
        for a, b in _chunks(len(data_rngs), n * cls.floats_per_sample(truth), max_floats):
            data = cls.sample(truth, n, data_rngs[a:b], "downstream", sampling)
            arrays = {name: arr for name, (_, arr, _) in data.items()}
            parts.append(cls.downstream(truth, representation[a:b], arrays, n))
        return _concat(parts)

    @classmethod
    def align(
        cls, truth: Mapping[str, np.ndarray], est: Mapping[str, np.ndarray], m: int
    ) -> Variables:
        """Orbit alignment of the representative to the truth (diagnostics only)."""
        raise NotImplementedError

    @classmethod
    def downstream(
        cls,
        truth: Mapping[str, np.ndarray],
        representation: np.ndarray,
        design: Mapping[str, np.ndarray],
        n: int,
    ) -> Variables:
        """Min-norm OLS and the exact conditional risk decomposition (Prop. B.1):
        ``coef``, ``rep``, ``leak``, ``var`` (unscaled) and ``d_eff_n`` per replicate."""
        raise NotImplementedError

    @classmethod
    def limit(cls, truth: Mapping[str, np.ndarray]) -> Variables:
        """Theory: weights of ``||L(Z)||^2`` (numerical), closed forms, sigma^2, d_eff."""
        raise NotImplementedError
