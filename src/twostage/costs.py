"""The cost model of the stage jobs: seconds and megabytes per job, from the per-rule costs
measured on the rules' ``benchmark:`` files (defaults in ``twostage/data/costs.yaml``,
each case's own in ``twostage/cases/<case>/costs.yaml``). It sizes the shards of studies
with ``shard_size: auto`` and the batches of points whose limits one theory job computes
(about ``target_job_seconds`` of work per job), and the cluster resource requests of every
rule (``workflow/rules/common.smk``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from .yamlload import safe_load

#: The rules that run once per shard (their cost grows with the shard's replicates).
SHARD_RULES = ("simulate", "pretrain", "align", "downstream")
#: Largest predicted memory of a shard job when sizing shards automatically (MB).
SHARD_MEMORY_MB = 1500.0


@cache
def _defaults() -> dict[str, Any]:
    path = resources.files("twostage") / "data" / "costs.yaml"
    return safe_load(path.read_text())["default"]


def rule_cost(point: Any, rule: str) -> dict[str, float]:
    """``base_s``, ``per_replicate_s``, ``base_mb``, ``per_replicate_mb`` and ``per_point_s``
    (the theory rule's seconds per point of its batch) of ``rule`` at a point, the m- and
    d-dependent terms of the case's cost model applied."""
    from .cases import costs, get_case

    cost = {**_defaults()[rule], **costs(point.case).get(rule, {})}
    m, d = point.m, int(point.population.get("d", 1))
    per = cost["per_replicate_s"]
    per += cost.get("per_replicate_m_s", 0.0) * m
    per += cost.get("per_replicate_n_s", 0.0) * point.n
    per += cost.get("per_replicate_m_d2_s", 0.0) * m * d**2
    per += cost.get("per_replicate_m_d4_s", 0.0) * m * d**4
    mb = cost["per_replicate_mb"] + cost.get("per_replicate_d4_mb", 0.0) * d**4
    if rule in SHARD_RULES and point.sampling == "raw" and get_case(point.case).stores_data:
        mb += 24 * (point.m + point.n) * d / 2**20  # the samples themselves
    return {
        "base_s": float(cost["base_s"]),
        "per_replicate_s": float(per),
        "base_mb": float(cost["base_mb"]),
        "per_replicate_mb": float(mb),
        "per_point_s": float(cost.get("per_point_s", 0.0)),
    }


def predict(point: Any, rule: str, replicates: int) -> tuple[float, float]:
    """Predicted (seconds, megabytes) of a job of ``rule`` over ``replicates`` replicates."""
    c = rule_cost(point, rule)
    return (
        c["base_s"] + c["per_replicate_s"] * replicates,
        c["base_mb"] + c["per_replicate_mb"] * replicates,
    )


def _pack(items: Sequence[Any], seconds: Any, target_seconds: float) -> list[list[Any]]:
    """``items`` cut into runs of consecutive items, each as many as fit in about
    ``target_seconds`` of predicted work (``seconds(item)`` each; at least one per run)."""
    runs: list[list[Any]] = []
    work = 0.0
    for item in items:
        cost = seconds(item)
        if runs and work + cost <= target_seconds:
            runs[-1].append(item)
            work += cost
        else:
            runs.append([item])
            work = cost
    return runs


def _shard_work(item: tuple[Any, int]) -> float:
    """Predicted work of the costliest stage on one shard ``(point, shard)``, start-up
    excluded."""
    point, shard = item
    start, stop = point.shard_range(shard)
    return max(rule_cost(point, rule)["per_replicate_s"] * (stop - start) for rule in SHARD_RULES)


def shard_batches(points: Sequence[Any], target_seconds: float) -> list[list[tuple[Any, int]]]:
    """A study's shards cut into batches, each the ``(point, shard)`` pairs whose stage jobs
    run as one job per stage: shard index by shard index (every point's shard 0, then
    shard 1, ...: raising ``replicates`` adds batches and leaves the others as they were),
    consecutive points in grid order, as many as fit in about ``target_seconds`` of
    predicted work of the costliest stage (at least one shard per batch). With
    ``shard_size: auto`` a shard is already about ``target_seconds`` of work, so a batch is
    one shard; small fixed shards of cheap points share a job and its ~0.5 s of start-up."""
    batches: list[list[tuple[Any, int]]] = []
    for shard in range(max((p.n_shards for p in points), default=0)):
        items = [(point, shard) for point in points if shard < point.n_shards]
        batches += _pack(items, _shard_work, target_seconds)
    return batches


def predict_shards(rule: str, items: Sequence[tuple[Any, int]]) -> tuple[float, float]:
    """Predicted (seconds, megabytes) of a stage job over a batch of ``(point, replicates)``
    items, processed one after the other (the memory is the largest item's)."""
    needs = [
        (predict(point, rule, reps), rule_cost(point, rule)["base_s"]) for point, reps in items
    ]
    seconds = max(base for _, base in needs) + sum(s - base for (s, _), base in needs)
    return seconds, max(mb for (_, mb), _ in needs)


def theory_batches(points: Sequence[Any], target_seconds: float) -> list[list[Any]]:
    """A study's points (in grid order) cut into consecutive batches, each the points whose
    limits one theory job computes: as many as fit in about ``target_seconds`` of predicted
    work (``per_point_s`` each; at least one point per batch). A limit's own work (0.1-5 s)
    is often below the ~1 s a job spends starting Python and importing scipy."""
    return _pack(points, lambda point: rule_cost(point, "theory")["per_point_s"], target_seconds)


def predict_theory(points: Sequence[Any]) -> tuple[float, float]:
    """Predicted (seconds, megabytes) of a theory job over a batch of points (one after the
    other: the memory is the largest point's)."""
    costs = [rule_cost(point, "theory") for point in points]
    seconds = max(c["base_s"] for c in costs) + sum(c["per_point_s"] for c in costs)
    return seconds, max(c["base_mb"] for c in costs)


def _round_down(x: float) -> int:
    """x rounded down to two significant digits (at least 1), so that a shard size stays
    put when a measured cost moves a little (and loses at most 10% of the target)."""
    if x < 1:
        return 1
    step = 10 ** max(0, math.floor(math.log10(x)) - 1)
    return int(x // step * step)


def auto_shard_size(point: Any, target_seconds: float) -> int:
    """Replicates per shard so that the costliest shard job does about ``target_seconds`` of
    work (its start-up excluded) and stays within :data:`SHARD_MEMORY_MB`, rounded down to
    two significant digits."""
    per_s = max(rule_cost(point, rule)["per_replicate_s"] for rule in SHARD_RULES)
    size = target_seconds / max(per_s, 1e-9)
    for rule in SHARD_RULES:
        c = rule_cost(point, rule)
        if c["per_replicate_mb"] > 0:
            size = min(size, (SHARD_MEMORY_MB - c["base_mb"]) / c["per_replicate_mb"])
    return _round_down(size)
