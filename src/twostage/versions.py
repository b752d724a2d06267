"""What a run records about the software it ran on (light: no numerical imports)."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from ._version import __version__


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the twostage source tree, or '' when unknown (installed from a wheel)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


#: the packages whose versions a run records (results/provenance.yaml, in the report)
RECORDED_PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "xarray",
    "pandas",
    "h5netcdf",
    "h5py",
    "matplotlib",
    "seaborn",
    "snakemake",
    "threadpoolctl",
)


def versions() -> dict[str, str]:
    """twostage's version and git commit, Python, the platform and the versions of
    :data:`RECORDED_PACKAGES` (``"not installed"`` for a missing one)."""
    import platform
    from importlib import metadata

    out = {
        "twostage": __version__,
        "git_commit": git_commit() or "unknown",
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in RECORDED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_provenance(path: str, recorded: dict, studies: dict) -> None:
    """``path`` (YAML, written atomically): the recorded versions and the studies'
    validated configuration."""
    import yaml

    from .io import atomic_path

    text = yaml.safe_dump({"versions": dict(recorded), "studies": dict(studies)}, sort_keys=False)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
