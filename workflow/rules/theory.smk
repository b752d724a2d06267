# The limits of a study's points, by batches of consecutive points (THEORY_BATCHES): one
# job writes the limit of each point of its batch, results/<study>/limits/batch<b>/<point>.nc.


rule theory:
    priority: PRIORITY["theory"]
    output:
        directory(LIMITS),
    params:
        script=script("theory"),
        points=theory_args,
    resources:
        runtime=runtime_minutes("theory"),
        mem_mb=memory_mb("theory"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/theory/batch{batch}.log",
    benchmark:
        "results/{study}/benchmarks/theory/batch{batch}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} {params.points} > {log} 2>&1"
