"""The README documents every configuration key; the conda env mirrors pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import ROOT

from twostage.config import schema


def _keys():
    s = schema()
    yield from (f"studies.<name>.{k}" for k in s["$defs"]["study"]["properties"])
    for name, definition in s["$defs"].items():
        if name.endswith("_params"):
            yield from definition["properties"]


def test_readme_documents_every_config_key():
    readme = (ROOT / "README.md").read_text()
    missing = [k for k in _keys() if f"`{k}`" not in readme]
    assert not missing, f"README lacks config keys: {missing}"


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_conda_env_mirrors_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "envs" / "twostage.yaml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == {_name(d) for d in project["dependencies"]}
