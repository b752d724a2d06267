"""YAML reading for the package's own files (schemas, cost tables), with libyaml's C
parser where PyYAML was built with it: every stage job reads the schemas, which took
0.24 s to parse in pure Python. The values are the same (the C parser feeds the same
safe constructor and resolver)."""

from __future__ import annotations

from typing import IO, Any

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(stream: str | IO[str]) -> Any:
    """``yaml.safe_load`` with the C parser when available."""
    return yaml.load(stream, Loader=LOADER)  # noqa: S506 (a safe loader)
