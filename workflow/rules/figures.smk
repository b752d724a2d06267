# Figures depend only on the aggregated files, so `snakemake figures` redraws them from
# results/<study>/{risk,theory}.nc alone.


rule plot:
    input:
        risk="results/{study}/risk.nc",
        theory="results/{study}/theory.nc",
    output:
        figures=expand("results/{{study}}/figures/{name}.png", name=FIGURES),
        table="results/{study}/summary.csv",
    params:
        script=script("figures"),
        outdir="results/{study}/figures",
        panels=cdf_panels,
        reference=reference_json,
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
        "--reference {params.reference:q} > {log} 2>&1"


rule figures:
    input:
        all_figures(),
