"""Keyed random streams.

Every random draw is keyed by *what* it is, never by where or when it runs::

    Generator(PCG64(SeedSequence([stage_id, replicate, *key_words, root_seed])))

``key_words`` are the eight 32-bit words of the SHA-256 of the canonical JSON of what the
stream draws (:meth:`twostage.config.Point.stream_key`: the truth is keyed by the case and
its population parameters, the pre-training data by those, the sampling path and m, the
downstream design by those, the sampling path and n) and ``root_seed`` is the study's
seed. Shards are only a grouping of replicates into jobs:
changing the shard size, the number of cores or the executor changes no number, and adding
replicates leaves the existing ones untouched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

#: Stage identifiers of the random streams (never renumber: results depend on them).
STREAMS: dict[str, int] = {
    "truth": 0,
    "pretrain_data": 1,
    "downstream_data": 2,
    "pretrain_algorithm": 3,
    "theory": 4,
    "bootstrap": 5,
}


def canonical_json(obj: Any) -> str:
    """Canonical JSON: sorted keys, no white space, floats as Python's shortest repr."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest_words(obj: Any) -> list[int]:
    """The eight 32-bit words of the SHA-256 of ``canonical_json(obj)``."""
    h = hashlib.sha256(canonical_json(obj).encode()).digest()
    return [int.from_bytes(h[i : i + 4], "little") for i in range(0, 32, 4)]


def digest_hex(obj: Any, length: int = 12) -> str:
    """Short hexadecimal SHA-256 of ``canonical_json(obj)`` (used as a point id)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def stream(stage: str, replicate: int, words: Iterable[int], root_seed: int) -> np.random.Generator:
    """The random stream of one replicate of one stage.

    Parameters
    ----------
    stage : str
        A key of :data:`STREAMS`.
    replicate : int
        Global replicate index (not shard-local).
    words : iterable of int
        32-bit words identifying what is drawn (see :func:`digest_words`).
    root_seed : int
        The study's seed.
    """
    if stage not in STREAMS:
        raise ValueError(f"unknown random stream {stage!r}; expected one of {sorted(STREAMS)}")
    if replicate < 0:
        raise ValueError(f"replicate index must be >= 0; got {replicate}")
    seq = np.random.SeedSequence([STREAMS[stage], int(replicate), *words, int(root_seed)])
    return np.random.Generator(np.random.PCG64(seq))


def streams(
    stage: str, replicates: Iterable[int], words: Iterable[int], root_seed: int
) -> list[np.random.Generator]:
    """One generator per replicate (see :func:`stream`)."""
    words = list(words)
    return [stream(stage, r, words, root_seed) for r in replicates]
