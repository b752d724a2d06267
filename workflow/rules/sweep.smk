# Theory-only studies (replicates: 0): the limit over the grid, a fit, and one figure.


rule sweep:
    priority: PRIORITY["sweep"]
    input:
        theory=study_theory,
    output:
        "results/{study}/sweep.nc",
    params:
        script=script("sweep"),
        theory=study_limit_files,
        fit=sweep_fit,
        x=sweep_x_arg,
    resources:
        runtime=runtime_minutes("risk"),
        mem_mb=memory_mb("risk"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/sweep.log",
    benchmark:
        "results/{study}/benchmarks/sweep.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --theory {params.theory} --fit {params.fit} {params.x} "
        "--out {output} > {log} 2>&1"


rule plot_sweep:
    priority: PRIORITY["plot_sweep"]
    input:
        "results/{study}/sweep.nc",
    output:
        figure=figure_outputs(["sweep"], "png"),
        pdf=figure_outputs(["sweep"], "pdf"),
        table=reported("results/{study}/sweep.csv", "sweep_table", "Tables", table="sweep"),
        latex="results/{study}/sweep.tex",
    params:
        script=script("figures"),
        outdir="results/{study}/figures",
        reference=reference_json,
        about=study_about,
    resources:
        runtime=runtime_minutes("plot"),
        mem_mb=memory_mb("plot"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/plot_sweep.log",
    benchmark:
        "results/{study}/benchmarks/plot_sweep.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --sweep {input} --outdir {params.outdir} "
        "--table {output.table} --reference {params.reference:q} > {log} 2>&1"
