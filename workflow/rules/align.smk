rule align:
    priority: PRIORITY["align"]
    input:
        f"{SHARDS}/pretrain",
    output:
        directory(f"{SHARDS}/align"),
    params:
        script=script("align"),
        args=stage_args("align"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("align"),
        mem_mb=memory_mb("align"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/align/batch{batch}.log",
    benchmark:
        "results/{study}/benchmarks/align/batch{batch}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} {params.args} > {log} 2>&1"
