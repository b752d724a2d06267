"""Preflight check: can the interpreter the workflow's rules call import this twostage?

The rules run ``python {params.script} ...`` through the shell, so their interpreter is the
first ``python`` on ``PATH``, not necessarily the one running Snakemake. Started as
``.venv/bin/snakemake`` without activating the venv, Snakemake imports twostage fine while
every job fails with ``ModuleNotFoundError: No module named 'twostage'``, visible only in
the jobs' logs. :func:`rule_python_problem` asks that ``python`` once, in a subprocess,
whether it imports the same twostage (same ``__version__``) as this interpreter, and
returns one message naming both interpreters and the fix; ``workflow/rules/preflight.smk``
calls it before any job runs.

Standard library only: imported by the Snakefile at parse time.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from ._version import __version__

#: The command the rules' shell commands call (``python {params.script} ...``).
RULE_PYTHON = "python"
#: Seconds the probe may take (starting Python and importing twostage take ~0.1 s).
TIMEOUT = 30.0
FIX = (
    "Fix: `source .venv/bin/activate`, then rerun the same command "
    "(or `make run`, which runs the default study with .venv's python)."
)
_PROBE = "import sys, twostage; print(twostage.__version__); print(sys.executable)"


def rule_python_problem(path: str | None = None, timeout: float = TIMEOUT) -> str | None:
    """Why the rules' ``python`` (found on ``path``, default ``$PATH``) cannot run twostage's
    stage scripts, or ``None`` if it imports the same twostage version as this interpreter.

    Runs one subprocess (cached per ``path``) with the current environment, as the jobs do.
    """
    if path is None:
        path = os.environ.get("PATH", os.defpath)
    return _problem(path, timeout)


@functools.cache
def _problem(path: str, timeout: float) -> str | None:
    found = shutil.which(RULE_PYTHON, path=path)
    if found is None:
        return _message("none", f"there is no `{RULE_PYTHON}` on PATH ({path})")
    found = os.path.abspath(found)
    real = os.path.realpath(found)
    shown = found if real == found else f"{found} (-> {real})"
    try:
        res = subprocess.run(
            [found, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return _message(shown, f"`{RULE_PYTHON} -c 'import twostage'` took over {timeout:g} s")
    except OSError as exc:
        return _message(shown, f"`{RULE_PYTHON}` cannot be started ({exc})")
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or len(lines) < 2:
        err = res.stderr.strip().splitlines()
        why = err[-1] if err else f"exit status {res.returncode}"
        return _message(shown, f"`{RULE_PYTHON}` cannot import twostage ({why})")
    version, executable = lines[-2], lines[-1]
    if version != __version__:
        if os.path.realpath(executable) != real:  # e.g. a pyenv shim
            shown = f"{found} (-> {executable})"
        return _message(shown, f"`{RULE_PYTHON}` imports twostage {version}, not {__version__}")
    return None


def _message(rule_python: str, why: str) -> str:
    return (
        f"The workflow's rules call `{RULE_PYTHON}` from PATH, but {why}: "
        "every job would fail.\n"
        f"  rules' python:      {rule_python}\n"
        f"  Snakemake's python: {sys.executable} (twostage {__version__})\n"
        f"{FIX}"
    )
