# Figures depend only on the aggregated files, so `snakemake figures` redraws them from
# results/<study>/{risk,theory}.nc alone.


rule plot:
    priority: PRIORITY["plot"]
    input:
        risk="results/{study}/risk.nc",
        theory="results/{study}/theory.nc",
    output:
        figures=figure_outputs(FIGURES, "png"),
        pdf=figure_outputs(FIGURES, "pdf"),
        table=reported("results/{study}/summary.csv", "summary", "Tables", table="summary"),
        latex="results/{study}/summary.tex",
    params:
        script=script("figures"),
        outdir="results/{study}/figures",
        panels=cdf_panels,
        reference=reference_json,
        x=sweep_x_arg,
        about=study_about,
    resources:
        runtime=runtime_minutes("plot"),
        mem_mb=memory_mb("plot"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/plot.log",
    benchmark:
        "results/{study}/benchmarks/plot.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --risk {input.risk} --theory {input.theory} "
        "--outdir {params.outdir} --table {output.table} --max-panels {params.panels} "
        "--reference {params.reference:q} {params.x} > {log} 2>&1"


rule figures:
    input:
        all_figures(),


# Versions and configuration, for the report (rerun when a version or the config changes:
# they are its params).
rule provenance:
    priority: PRIORITY["provenance"]
    output:
        report("results/provenance.yaml", caption="../report/provenance.rst", category="Provenance"),
    params:
        versions=provenance_versions,
        studies=_validated["studies"],
    log:
        "results/logs/provenance.log",
    localrule: True
    run:
        write_provenance(output[0], params.versions, params.studies)
