rule simulate:
    output:
        f"{SHARD}/simulate.nc",
    params:
        script=script("simulate"),
        point=point_json,
        replicates=replicate_range,
    group:
        "shard"
    resources:
        runtime=runtime_minutes("simulate"),
        mem_mb=memory_mb("simulate"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/simulate/{point}-{shard}.log",
    benchmark:
        "results/{study}/benchmarks/simulate/{point}-{shard}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --point {params.point:q} "
        "--replicates {params.replicates} --out {output} > {log} 2>&1"
