"""Configuration: loading, schema validation with defaults, expansion of grids into points.

The schema (``twostage/data/config.schema.yaml``, linked from
``workflow/schemas/config.schema.yaml``) is the single source of every key, its
description and its default. Errors name the key path and what was expected.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from . import seeding
from .errors import ConfigError

#: Keys of a point that set the sample sizes (not part of the population truth).
SAMPLE_SIZE_KEYS = ("n", "alpha", "m")


def schema_path() -> Path:
    """Path of the configuration schema shipped with the package."""
    return Path(str(resources.files("twostage") / "data" / "config.schema.yaml"))


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    with open(schema_path()) as fh:
        return yaml.safe_load(fh)


def _with_defaults(cls: type) -> type:
    """A validator class that also fills in each property's ``default``."""
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sch):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "$ref" in sub:
                    sub = _resolve(sub["$ref"])
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, sch)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


def _resolve(ref: str) -> dict[str, Any]:
    """Resolve a local ``#/$defs/...`` reference against the package schema."""
    node: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _path(error: jsonschema.ValidationError, prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for p in error.absolute_path:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(str(p))
    return ".".join(parts) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    sch = error.schema if isinstance(error.schema, dict) else {}
    desc = sch.get("description")
    if error.validator == "additionalProperties" or not desc:
        return error.message
    return f"{error.message} (expected: {' '.join(str(desc).split())})"


def _raise_first(errors: list[jsonschema.ValidationError], prefix: str = "") -> None:
    if not errors:
        return
    # The deepest error is the most specific one; ties broken by path for determinism.
    errors = sorted(errors, key=lambda e: (-len(e.absolute_path), [str(p) for p in e.path]))
    first = errors[0]
    while first.context:  # if/then and anyOf wrap the real error
        first = sorted(first.context, key=lambda e: -len(e.absolute_path))[0]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise ConfigError(f"invalid config key '{_path(first, prefix)}': {_describe(first)}{more}")


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a configuration and return a copy with every default filled in.

    Raises
    ------
    ConfigError
        Naming the first invalid key path and what was expected.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(
            f"config must be a mapping of keys to values; got {type(config).__name__}"
        )
    cfg = copy.deepcopy(dict(config))
    validator = _Validator(schema())
    _raise_first(list(validator.iter_errors(cfg)))
    for name, study in cfg["studies"].items():
        # Expanding validates every point's parameters (grid values included).
        expand_study(name, study)
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        with open(path) as fh:
            cfg = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    return validate_config(cfg or {})


def pretrain_size(n: int, alpha: float) -> int:
    """m = floor(alpha n), computed exactly in decimal (so alpha = 0.1, n = 30 gives 3)."""
    return math.floor(Fraction(repr(float(alpha))) * int(n))


def _normalise(case: str, params: dict[str, Any]) -> dict[str, Any]:
    """Cast values to the schema's types (2 -> 2.0 for numbers), so that the point's
    canonical JSON, hence its seed, does not depend on how a number was written."""
    props = schema()["$defs"][f"{case}_params"]["properties"]
    return {key: _cast(value, props[key]) for key, value in params.items()}


def _cast(value: Any, spec: dict[str, Any]) -> Any:
    """``value`` with every number the schema ``spec`` declares as 'number' made a float
    (nested arrays included, e.g. the mixture's explicit centres)."""
    typ = spec.get("type")
    types = typ if isinstance(typ, list) else [typ]
    if value is None or isinstance(value, bool):
        return value
    if "number" in types and isinstance(value, int | float):
        return float(value)
    if "array" in types and isinstance(value, list):
        return [_cast(v, spec.get("items", {})) for v in value]
    return value


@dataclass(frozen=True)
class Point:
    """One point of a study: a case, its parameters and the Monte Carlo settings."""

    study: str
    case: str
    sampling: str
    params: dict[str, Any]
    seed: int
    replicates: int
    #: replicates per job: a grouping only, so it is not part of the point's description
    shard_size: int = 0

    @cached_property
    def key(self) -> dict[str, Any]:
        return seeding.point_key(self.case, self.sampling, self.params)

    @cached_property
    def point_id(self) -> str:
        return seeding.digest_hex(self.key)

    @cached_property
    def words(self) -> list[int]:
        return seeding.digest_words(self.key)

    @cached_property
    def population(self) -> dict[str, Any]:
        """The parameters that define the population truth (sample sizes removed)."""
        return {k: v for k, v in self.params.items() if k not in SAMPLE_SIZE_KEYS}

    @cached_property
    def population_words(self) -> list[int]:
        return seeding.digest_words({"case": self.case, "params": self.population})

    @property
    def m(self) -> int:
        return int(self.params["m"])

    @property
    def n(self) -> int:
        return int(self.params["n"])

    @property
    def n_shards(self) -> int:
        return -(-self.replicates // (self.shard_size or self.replicates))

    def shard_range(self, shard: int) -> tuple[int, int]:
        if not 0 <= shard < self.n_shards:
            raise ValueError(f"shard {shard} out of range 0..{self.n_shards - 1}")
        size = self.shard_size or self.replicates
        start = shard * size
        return start, min(start + size, self.replicates)

    def to_json(self) -> str:
        return seeding.canonical_json(
            {
                "study": self.study,
                "case": self.case,
                "sampling": self.sampling,
                "params": self.params,
                "seed": self.seed,
                "replicates": self.replicates,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Point:
        try:
            d = json.loads(text)
            point = cls(**d)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(
                f"--point is not a point description written by twostage: {exc}"
            ) from None
        from .cases import get_case

        get_case(point.case).check_params(point.params, prefix="point.params")
        return point


def expand_study(name: str, study: Mapping[str, Any]) -> list[Point]:
    """Every combination of the study's grid lists, as :class:`Point` objects.

    The order of points is the order of the grid (first key slowest); their ids and seeds
    do not depend on that order.
    """
    from .cases import get_case

    study = copy.deepcopy(dict(study))
    # Fill defaults of a study given without them (e.g. from run_point).
    _raise_first(list(_Validator(schema()).iter_errors({"studies": {name: study}})))
    case = get_case(study["case"])
    prefix = f"studies.{name}"
    param_schema = {**schema()["$defs"][f"{study['case']}_params"], "$defs": schema()["$defs"]}
    grid = study["grid"]
    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        params = {**study["params"], **dict(zip(keys, combo, strict=True))}
        errors = list(_Validator(param_schema).iter_errors(params))
        if errors:
            bad = errors[0].absolute_path[0] if errors[0].absolute_path else None
            where = f"{prefix}.grid" if bad in grid else f"{prefix}.params"
            _raise_first(errors, where)
        params = _normalise(study["case"], params)
        params["m"] = pretrain_size(params["n"], params["alpha"])
        case.check_params(params, prefix=f"{prefix}.params")
        if params["m"] < 1:
            raise ConfigError(
                f"invalid config key '{prefix}.grid.alpha': alpha * n must be >= 1 "
                f"(got alpha={params['alpha']}, n={params['n']})"
            )
        points.append(
            Point(
                study=name,
                case=study["case"],
                sampling=study["sampling"],
                params=params,
                seed=study["seed"],
                replicates=study["replicates"],
                shard_size=study["shard_size"],
            )
        )
    ids = [p.point_id for p in points]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"invalid config key '{prefix}.grid': two grid points are identical")
    return points


def expand_config(config: Mapping[str, Any]) -> dict[str, list[Point]]:
    """Points of every study of a validated configuration."""
    return {name: expand_study(name, study) for name, study in config["studies"].items()}


#: Study keys used only by the aggregation and figures (not part of any point).
SETTINGS = ("p_var_tolerance", "ks_bootstrap", "cdf_panels", "fit", "reference")


def study_settings(study: Mapping[str, Any]) -> dict[str, Any]:
    """The aggregation/figure settings of a study, defaults filled in."""
    study = copy.deepcopy(dict(study))
    list(_Validator(schema()).iter_errors({"studies": {"s": study}}))
    return {k: study[k] for k in SETTINGS}
