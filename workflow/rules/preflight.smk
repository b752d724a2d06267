# Preflight: the rules run `python {params.script} ...`, i.e. the first `python` on PATH,
# which need not be the interpreter running Snakemake (.venv/bin/snakemake started without
# activating .venv). If that `python` cannot import the same twostage, stop with one message
# before any job, instead of every job failing in its log (twostage/preflight.py).
#
# Checked only in the main Snakemake process, and only when the jobs' environment is this
# one: not with software deployment (--use-conda, --sdm conda/apptainer/env-modules: the
# rule's environment counts), not on a cluster executor (e.g. --workflow-profile
# profiles/slurm: the job's node and environment count) and not with --touch (no job runs).
# The executor is known only once execution starts, so the check is an `onstart` handler
# (run after the DAG is built, before the first job; skipped by --no-hooks). A dry run never
# reaches `onstart`, and Snakemake swaps the intended executor for its dry-run one, so a dry
# run only warns, at parse time. Snakemake keeps one `onstart` handler per workflow: another
# one would replace this (call the check from it then).

from snakemake.logging import logger

from twostage.preflight import rule_python_problem


def _preflight_applies():
    return workflow.is_main_process and not workflow.deployment_settings.deployment_method


if _preflight_applies() and workflow.output_settings.dryrun:
    _preflight_problem = rule_python_problem()
    if _preflight_problem:
        logger.warning(
            "Dry run: a local run (no --use-conda, no cluster executor) would stop here.\n"
            + _preflight_problem
        )


onstart:
    if _preflight_applies() and workflow.local_exec and not workflow.touch:
        _preflight_problem = rule_python_problem()
        if _preflight_problem:
            raise WorkflowError(_preflight_problem)
