# One job per batch of shards (SHARD_BATCHES): <stage>/<point>-<shard>.nc for each shard.


rule simulate:
    priority: PRIORITY["simulate"]
    output:
        directory(f"{SHARDS}/simulate"),
    params:
        script=script("simulate"),
        args=stage_args("simulate"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("simulate"),
        mem_mb=memory_mb("simulate"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/simulate/batch{batch}.log",
    benchmark:
        "results/{study}/benchmarks/simulate/batch{batch}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} {params.args} > {log} 2>&1"
