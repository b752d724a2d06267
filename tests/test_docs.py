"""The README's generated tables are up to date; the conda env mirrors pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import yaml
from conftest import ROOT

from twostage import docs
from twostage.cases import REGISTRY, fragment
from twostage.config import schema


def test_readme_tables_are_generated_from_the_schema_and_up_to_date():
    readme = (ROOT / "README.md").read_text()
    assert docs.render(readme) == readme, "run: python -m twostage.docs README.md"
    # every key of the central schema and of every fragment is documented
    keys = [f"studies.<name>.{k}" for k in schema()["$defs"]["study"]["properties"]]
    for case in REGISTRY:
        keys += [
            k for kind in ("population", "estimator") for k in fragment(case)[kind]["properties"]
        ]
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert not missing, f"README lacks config keys: {missing}"


def _name(req: str) -> str:
    return re.split(r"[<>=!~ \[]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_conda_env_mirrors_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "envs" / "twostage.yaml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == {_name(d) for d in project["dependencies"]}
