# twostage: simulation studies of two-stage (pre-training + fine-tuning) M-estimation.
#
#   snakemake                      # the embedded default study (config/config.yaml)
#   snakemake --configfile config/paper.yaml
#   snakemake figures              # redraw figures from results/*/{risk,theory}.nc only
#
# Stages (one script each in scripts/, all netCDF in and out):
#   simulate -> pretrain -> align -> downstream -> risk (+ theory) -> figures

import os

# The embedded default study, unless studies are given with --configfile (Snakemake would
# otherwise merge the two); found beside this Snakefile, whatever --directory says. A
# config whose `studies` is present but empty is an error (common.smk), not the default.
if "studies" not in config:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/preflight.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/risk.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/errata.smk"


rule all:
    default_target: True
    input:
        rules.figures.input,
        all_aggregates(),
