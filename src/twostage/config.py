"""Configuration: loading, schema validation with defaults, expansion of grids into points.

The schema is composed of the central file ``twostage/data/config.schema.yaml`` (study
keys; linked from ``workflow/schemas/config.schema.yaml``) and one fragment per registered
case (``twostage/cases/<case>/schema.yaml``: its population and estimator parameters).
Together they are the single source of every key, its description and its default. Errors
name the key path as written and what was expected.

A point has three kinds of settings, kept apart here and in :class:`Point`: the
**population** parameters (they define the truth and key the truth and data streams), the
**estimator** settings (they change the pre-training estimate only) and the **sample
sizes** ``n`` and ``alpha`` (``m = floor(alpha n)``).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import seeding
from .costs import SHARD_RULES
from .errors import ConfigError
from .yamlload import LOADER, safe_load

if TYPE_CHECKING:
    import jsonschema

#: The sample-size keys of a point, besides its population and estimator parameters.
SAMPLE_SIZE_KEYS = ("n", "alpha")
#: The two kinds of case parameters (each a mapping validated by the case's fragment).
KINDS = ("population", "estimator")
#: Upper bounds that catch a mistyped size before Snakemake builds its DAG (which takes
#: minutes, and memory, at a million jobs): grid points and jobs per study.
MAX_POINTS = 10_000
MAX_JOBS = 100_000


def schema_path() -> Path:
    """Path of the central configuration schema shipped with the package."""
    return Path(str(resources.files("twostage") / "data" / "config.schema.yaml"))


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The configuration schema: the central file with every registered case's fragment
    composed in (the case enum, ``$defs/<case>_population`` and ``<case>_estimator``, and
    one if/then branch per case for ``population``, ``estimator``, ``sampling`` and the
    grid's keys)."""
    from .cases import REGISTRY, fragment

    with open(schema_path()) as fh:
        sch = safe_load(fh)
    study = sch["$defs"]["study"]
    study["properties"]["case"]["enum"] = list(REGISTRY)
    for name in REGISTRY:
        frag = fragment(name)
        then: dict[str, Any] = {}
        for kind in KINDS:
            sch["$defs"][f"{name}_{kind}"] = {"default": {}, **frag[kind]}
            then[kind] = {"$ref": f"#/$defs/{name}_{kind}"}
        then["grid"] = {"propertyNames": {"enum": list(SAMPLE_SIZE_KEYS) + case_keys(name)}}
        then["sampling"] = {"type": "string", **frag["sampling"]}
        study["allOf"].append(
            {
                "if": {"properties": {"case": {"const": name}}, "required": ["case"]},
                "then": {"properties": then},
            }
        )
    return sch


def case_keys(case: str, kind: str | None = None) -> list[str]:
    """The parameter names of a case (of one kind, or population then estimator)."""
    from .cases import fragment

    kinds = KINDS if kind is None else (kind,)
    return [key for k in kinds for key in fragment(case)[k].get("properties", {})]


@lru_cache(maxsize=1)
def _validator() -> type:
    """A Draft 2020-12 validator class that also fills in each property's ``default``
    (jsonschema is imported on first use: stage jobs reading their own files skip it)."""
    import jsonschema

    cls = jsonschema.Draft202012Validator
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


def key_name(key: Any) -> str:
    """A key as printed in a key path: as written, or quoted when it is not printable on
    one line (a key with a newline stays a one-line message)."""
    text = str(key)
    return text if text.isprintable() else json.dumps(text)


def _path(error: jsonschema.ValidationError, prefix: str = "", strip: int = 0) -> str:
    """The error's key path, its first ``strip`` elements replaced by ``prefix``; for an
    unknown, missing or badly named key, the path goes down to that key."""
    parts = [prefix] if prefix else []
    for p in [*list(error.absolute_path)[strip:], *_culprit(error)]:
        if isinstance(p, int):
            parts[-1:] = [f"{parts[-1]}[{p}]"] if parts else [f"[{p}]"]
        else:
            parts.append(key_name(p))
    return ".".join(parts) or "<top level>"


def _culprit(error: jsonschema.ValidationError) -> list[Any]:
    """The key below the error's path that is at fault: the first unknown key, the first
    missing required key, or a key whose name breaks the naming rule."""
    inst = error.instance
    if error.validator == "additionalProperties" and isinstance(inst, dict):
        known = error.schema.get("properties", {})
        return sorted((k for k in inst if k not in known), key=str)[:1]
    if error.validator == "required" and isinstance(inst, dict):
        return [k for k in error.validator_value if k not in inst][:1]
    if "propertyNames" in error.schema_path:
        return [inst]
    return []


def _describe(error: jsonschema.ValidationError) -> str:
    sch = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        return f"unknown key; expected one of {sorted(sch.get('properties', {}))}"
    if error.validator == "required":
        return "a required key is missing"
    if "propertyNames" in error.schema_path and error.validator == "pattern":
        return f"{error.message} (a name: a letter, then letters, digits, '_' or '-')"
    if "propertyNames" in error.schema_path:
        return f"unknown key: {error.message}"
    desc = sch.get("description")
    if not desc:
        return error.message
    return f"{error.message} (expected: {' '.join(str(desc).split())})"


def _raise_first(
    errors: list[jsonschema.ValidationError], prefix: str = "", strip: int = 0
) -> None:
    if not errors:
        return
    # The deepest error is the most specific one; ties broken by path for determinism.
    errors = sorted(errors, key=lambda e: (-len(e.absolute_path), [str(p) for p in e.path]))
    first = errors[0]
    while first.context:  # if/then and anyOf wrap the real error
        first = sorted(first.context, key=lambda e: -len(e.absolute_path))[0]
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = _path(first, prefix, strip if len(first.absolute_path) >= strip else 0)
    raise ConfigError(f"invalid config key '{where}': {_describe(first)}{more}")


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
    cfg = plain(config)
    check_finite(cfg, "")
    validator = _validator()(schema())
    _raise_first(list(validator.iter_errors(cfg)))
    for name, study in cfg["studies"].items():
        # Expanding validates every point's parameters (grid values included).
        expand_study(name, study)
        if study.get("sweep_x") is not None:
            where = f"invalid config key 'studies.{name}.sweep_x'"
            check_sweep_x(study["case"], study["sweep_x"], where)
    return cfg


def check_sweep_x(case: str, x: str, where: str) -> None:
    """Raise unless ``x`` is a scalar theory output of ``case`` (the study key ``sweep_x``,
    the scripts' ``--x``); ``where`` starts the message."""
    from .cases import get_case

    outputs = get_case(case).outputs
    out = outputs.by_name.get(x)
    if out is None or out.stage != "theory" or out.dims != ():
        scalars = sorted(v.name for v in outputs.variables if v.stage == "theory" and v.dims == ())
        raise ConfigError(
            f"{where}: expected a scalar theory output of case {case!r} ({', '.join(scalars)}); "
            f"got {x!r}"
        )


def _duplicate_keys(node: yaml.Node, path: str, where: Path) -> None:
    """Raise on the first mapping of ``node`` (recursively) that repeats a key: YAML
    loaders keep the last value silently (a second study of the same name would replace
    the first)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is not None and key in seen:
                at = f"{path}.{key_name(key)}" if path else key_name(key)
                raise ConfigError(
                    f"invalid config key '{at}': given twice in {where} (lines {seen[key]} "
                    f"and {line}); expected each key once"
                )
            if key is not None:
                seen[key] = line
            name = key_name(key)
            _duplicate_keys(value_node, f"{path}.{name}" if path else name, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicate_keys(item, f"{path}[{i}]", where)


def read_yaml(path: str | Path) -> Any:
    """The content of a YAML configuration file, refusing repeated keys (which YAML
    loaders drop silently) with the key path and both line numbers."""
    if not isinstance(path, str | os.PathLike):
        raise ConfigError(f"config file: expected a path; got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; expected a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text()
        node = yaml.compose(text, Loader=LOADER)
        if node is not None:
            _duplicate_keys(node, "", path)
        return safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML: {what}{where}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration file and validate it."""
    cfg = read_yaml(path)
    if cfg is not None and not isinstance(cfg, Mapping):
        raise ConfigError(
            f"config file {path}: expected a mapping with the key 'studies' at the top level; "
            f"got a YAML {type(cfg).__name__}"
        )
    return validate_config(cfg or {})


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays made Python numbers and lists (recursively),
    so that studies built in a notebook from numpy values validate like YAML ones."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {key: plain(sub) for key, sub in value.items()}
    if isinstance(value, list | tuple):
        return [plain(sub) for sub in value]
    return value


def check_finite(value: Any, path: str) -> None:
    """Raise naming the key path of the first NaN or infinite number in ``value`` (JSON
    Schema's 'number' admits them; no parameter of a study may be one)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"invalid config key '{path}': expected a finite number; got {value}")
    if isinstance(value, Mapping):
        for key, sub in value.items():
            check_finite(sub, f"{path}.{key_name(key)}" if path else key_name(key))
    elif isinstance(value, list | tuple):
        for i, sub in enumerate(value):
            check_finite(sub, f"{path}[{i}]")


def pretrain_size(n: int, alpha: float) -> int:
    """m = floor(alpha n), computed exactly in decimal (so alpha = 0.1, n = 30 gives 3)."""
    return math.floor(Fraction(repr(float(alpha))) * int(n))


def _normalise(case: str, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Cast values to the fragment's types (2 -> 2.0 for numbers), so that the point's
    canonical JSON, hence its seeds, does not depend on how a number was written."""
    props = schema()["$defs"][f"{case}_{kind}"].get("properties", {})
    return {key: _cast(value, props[key]) for key, value in params.items()}


#: a schema under which every number, at any depth of nested lists, is made a float
_NUMBERS: dict[str, Any] = {"type": ["number", "array"]}
_NUMBERS["items"] = _NUMBERS


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
    """One point of a study: a case, its population and estimator parameters, the sample
    sizes, and the Monte Carlo settings.

    Random streams are keyed by what they draw (see :meth:`stream_key`): the truth by the
    population only; the pre-training data and algorithm streams by the population, the
    sampling path and m; the downstream design by the population, the sampling path and n.
    So points that differ only in an estimator setting share the truth and all their data
    bit for bit, and points of a sample-size sweep share the truth."""

    study: str
    case: str
    sampling: str
    population: dict[str, Any]
    estimator: dict[str, Any]
    n: int
    alpha: float
    seed: int
    #: None in the files of a Monte Carlo study's jobs (see :meth:`job_json`)
    replicates: int | None = None
    #: replicates per job: a grouping only, so it is not part of the point's description
    shard_size: int = 0

    @property
    def m(self) -> int:
        return pretrain_size(self.n, self.alpha)

    @cached_property
    def key(self) -> dict[str, Any]:
        """What identifies the point (its id and its bootstrap stream)."""
        return {
            "case": self.case,
            "sampling": self.sampling,
            "population": self.population,
            "estimator": self.estimator,
            "n": self.n,
            "alpha": self.alpha,
        }

    @cached_property
    def point_id(self) -> str:
        return seeding.digest_hex(self.key)

    def stream_key(self, stage: str) -> dict[str, Any]:
        """What the random stream of ``stage`` is keyed by (besides replicate and seed)."""
        if stage == "truth":
            return {"case": self.case, "population": self.population}
        if stage in ("pretrain_data", "pretrain_algorithm"):
            return {**self.stream_key("truth"), "sampling": self.sampling, "m": self.m}
        if stage == "downstream_data":
            return {**self.stream_key("truth"), "sampling": self.sampling, "n": self.n}
        return self.key

    def streams(self, stage: str, replicates: Any) -> list:
        """One generator per replicate of ``stage``'s stream (:func:`seeding.streams`)."""
        words = seeding.digest_words(self.stream_key(stage))
        return seeding.streams(stage, replicates, words, self.seed)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """Every parameter of the point by name: population, estimator, n, alpha and m
        (names are unique across the kinds: a contract of every case's fragment)."""
        return {**self.population, **self.estimator, "n": self.n, "alpha": self.alpha, "m": self.m}

    @property
    def n_shards(self) -> int:
        return -(-self.replicates // (self.shard_size or self.replicates or 1))

    def shard_range(self, shard: int) -> tuple[int, int]:
        if not 0 <= shard < self.n_shards:
            raise ValueError(f"shard {shard} out of range 0..{self.n_shards - 1}")
        size = self.shard_size or self.replicates
        start = shard * size
        return start, min(start + size, self.replicates)

    def to_json(self) -> str:
        d = {"study": self.study, **self.key, "seed": self.seed}
        if self.replicates is not None:
            d["replicates"] = self.replicates
        return seeding.canonical_json(d)

    def job_json(self) -> str:
        """The description a per-point or per-shard job is given: without the number of
        replicates for a Monte Carlo study, whose shards and limits do not depend on it
        (so adding replicates reruns only the new shards and the aggregation), with it
        (0) for a theory-only sweep, whose limit then skips the quantiles."""
        return dataclasses.replace(self, replicates=0 if self.replicates == 0 else None).to_json()

    @classmethod
    def from_json(cls, text: str, trusted: bool = False) -> Point:
        """The point a stage output or ``--point`` describes, validated like a config;
        ``trusted``: written by twostage itself (a stage file's attribute), taken as is."""
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise TypeError("not a JSON object")
            if trusted:
                return cls(**d)
            if "grid" in d:
                raise ConfigError(
                    "invalid config key 'point.grid': a --point is a single point; "
                    "give its values, not a grid"
                )
            study, case = d.pop("study"), d.pop("case")
            replicates = d.pop("replicates", None)  # absent: a Monte Carlo job's point
            m = d.pop("m", None)  # derived (floor(alpha n)); accepted if it agrees
            spec = {"case": case, **d}
            if replicates is not None:
                spec["replicates"] = replicates
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"--point is not a point description written by twostage: {exc}"
            ) from None
        if not isinstance(study, str) or not isinstance(case, str):
            raise ConfigError("--point: 'study' and 'case' must be strings")
        points = expand_study(study, spec, prefix="point")
        if len(points) != 1:
            raise ConfigError("--point describes a single point; it may not hold a 'grid'")
        if m is not None and m != points[0].m:
            p = points[0]
            raise ConfigError(
                f"invalid config key 'point.m': m is floor(alpha * n) = {p.m} for alpha="
                f"{p.alpha}, n={p.n}; got m = {m!r} (give alpha and n only)"
            )
        if replicates is None:
            return dataclasses.replace(points[0], replicates=None, shard_size=0)
        return points[0]


def _kind_of(case: str, key: str) -> str:
    if key in SAMPLE_SIZE_KEYS:
        return "sizes"
    for kind in KINDS:
        if key in case_keys(case, kind):
            return kind
    raise ConfigError(f"{key!r} is not a parameter of case {case!r}")  # schema catches it first


def expand_study(
    name: str,
    study: Mapping[str, Any],
    prefix: str | None = None,
    target_job_seconds: float | None = None,
) -> list[Point]:
    """Every combination of the study's grid lists, as :class:`Point` objects.

    The order of points is the order of the grid (first key slowest); their ids and seeds
    do not depend on that order. Every point is validated: grid values against the case's
    fragment, the case's cross-key checks, and m = floor(alpha n) >= 1; errors name the key
    as written (``studies.<name>.grid.d``, ``studies.<name>.population.k``). With
    ``shard_size: auto`` each point's shard size comes from the cost model
    (:func:`twostage.costs.auto_shard_size`) for the study's ``target_job_seconds``, else
    ``target_job_seconds`` (the run's default), else the schema's default.
    """
    from .cases import get_case

    prefix = f"studies.{name}" if prefix is None else prefix
    pattern = schema()["properties"]["studies"]["propertyNames"]["pattern"]
    if not isinstance(name, str) or not re.search(pattern, name):
        where = prefix if prefix == f"studies.{name}" else f"{prefix}.study"
        raise ConfigError(
            f"invalid config key '{key_name(where)}': a study name is a letter, then letters, "
            f"digits, '_' or '-'; got {name!r}"
        )
    if target_job_seconds is not None:  # the run's default, given by a caller: as in a config
        check_finite(target_job_seconds, "target_job_seconds")
        spec = schema()["properties"]["target_job_seconds"]
        _raise_first(list(_validator()(spec).iter_errors(target_job_seconds)), "target_job_seconds")
    if not isinstance(study, Mapping):
        raise ConfigError(
            f"invalid config key '{prefix}': expected a mapping of study keys; "
            f"got {type(study).__name__}"
        )
    study = plain(study)
    check_finite(study, prefix)
    # Fill defaults (and validate) a study given without them (e.g. from run_point).
    _raise_first(list(_validator()(schema()).iter_errors({"studies": {name: study}})), prefix, 2)
    case_name = study["case"]
    case = get_case(case_name)
    grid = study["grid"]
    keys = list(grid)
    kinds = {key: _kind_of(case_name, key) for key in keys}
    sizes_schema = schema()["$defs"]["study"]["properties"]
    size = math.prod(len(grid[k]) for k in keys)
    if size > MAX_POINTS:
        raise ConfigError(
            f"invalid config key '{prefix}.grid': {size} points (the product of the grid's "
            f"list lengths); expected at most {MAX_POINTS} per study"
        )
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        parts: dict[str, dict[str, Any]] = {
            "population": dict(study["population"]),
            "estimator": dict(study["estimator"]),
            "sizes": {k: study[k] for k in SAMPLE_SIZE_KEYS},
        }
        for key, value in values.items():
            parts[kinds[key]][key] = value

        def where(key: str, values: dict[str, Any] = values) -> str:
            """The key's path as the user wrote it."""
            if key in values:
                return f"{prefix}.grid.{key}"
            if key in SAMPLE_SIZE_KEYS:
                return f"{prefix}.{key}"
            return f"{prefix}.{_kind_of(case_name, key)}.{key}"

        for kind in KINDS:
            sub = {**schema()["$defs"][f"{case_name}_{kind}"], "$defs": schema()["$defs"]}
            errs = list(_validator()(sub).iter_errors(parts[kind]))
            if errs:
                path = errs[0].absolute_path
                bad = str(path[0]) if path else None
                _raise_first(errs, where(bad).rsplit(".", 1)[0] if bad else f"{prefix}.{kind}")
            parts[kind] = _normalise(case_name, kind, parts[kind])
        for key in SAMPLE_SIZE_KEYS:
            errs = list(_validator()(sizes_schema[key]).iter_errors(parts["sizes"][key]))
            if errs:
                _raise_first(errs, where(key))
        n, alpha = int(parts["sizes"]["n"]), float(parts["sizes"]["alpha"])
        case.check(parts["population"], parts["estimator"], where)
        m = pretrain_size(n, alpha)
        least, why = case.min_pretrain_size(parts["population"])
        if m < max(1, least):
            need = f">= {least} ({why})" if least > 1 else ">= 1"
            raise ConfigError(
                f"invalid config key '{where('alpha')}': m = floor(alpha * n) must be {need}; "
                f"got m = {m} (alpha={alpha}, n={n})"
            )
        point = Point(
            study=name,
            case=case_name,
            sampling=study["sampling"],
            population=parts["population"],
            estimator=parts["estimator"],
            n=n,
            alpha=alpha,
            seed=study["seed"],
            replicates=study["replicates"],
            shard_size=0 if study["shard_size"] == "auto" else study["shard_size"],
        )
        if study["shard_size"] == "auto" and point.replicates:
            from .costs import auto_shard_size

            size = auto_shard_size(point, job_seconds(study, target_job_seconds))
            point = dataclasses.replace(point, shard_size=size)
        points.append(point)
    ids = [p.point_id for p in points]
    if len(set(ids)) != len(ids):
        # a list with a value twice (2 and 2.0 count as one)
        for key in keys:
            seen = [seeding.canonical_json(_cast(v, _NUMBERS)) for v in grid[key]]
            if len(set(seen)) != len(seen):
                raise ConfigError(
                    f"invalid config key '{prefix}.grid.{key}': a value is given twice "
                    f"({grid[key]}); expected distinct values"
                )
        raise ConfigError(f"invalid config key '{prefix}.grid': two grid points are identical")
    jobs = sum(len(SHARD_RULES) * p.n_shards + 1 for p in points)
    if jobs > MAX_JOBS:
        raise ConfigError(
            f"invalid config key '{prefix}.shard_size': the study expands to {jobs} jobs "
            f"({len(points)} points x {points[0].replicates} replicates); expected at most "
            f"{MAX_JOBS}: give a larger shard_size (or 'auto'), or fewer replicates or points"
        )
    return points


def job_seconds(study: Mapping[str, Any], target_job_seconds: float | None = None) -> float:
    """Seconds of work per job of a validated study: its ``target_job_seconds``, else the
    run's (the top-level key, given as ``target_job_seconds``), else the schema's default."""
    target = study.get("target_job_seconds") or target_job_seconds
    if target is None:
        target = schema()["properties"]["target_job_seconds"]["default"]
    return float(target)


def expand_config(config: Mapping[str, Any]) -> dict[str, list[Point]]:
    """Points of every study of a validated configuration."""
    target = config.get("target_job_seconds")
    return {
        name: expand_study(name, study, target_job_seconds=target)
        for name, study in config["studies"].items()
    }


#: Study keys used only by the aggregation and figures (not part of any point).
SETTINGS = (
    "p_var_tolerance",
    "ks_bootstrap",
    "flagged",
    "regime_tolerance",
    "cdf_panels",
    "fit",
    "sweep_x",
    "reference",
)


def study_defaults() -> dict[str, Any]:
    """The default of every study key of the central schema (one home for them)."""
    props = schema()["$defs"]["study"]["properties"]
    return {key: copy.deepcopy(spec["default"]) for key, spec in props.items() if "default" in spec}


def study_settings(study: Mapping[str, Any]) -> dict[str, Any]:
    """The aggregation/figure settings of a study, defaults filled in."""
    study = copy.deepcopy(dict(study))
    list(_validator()(schema()).iter_errors({"studies": {"s": study}}))
    return {k: study[k] for k in SETTINGS}
