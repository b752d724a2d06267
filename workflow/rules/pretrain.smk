rule pretrain:
    priority: PRIORITY["pretrain"]
    input:
        f"{SHARDS}/simulate",
    output:
        directory(f"{SHARDS}/pretrain"),
    params:
        script=script("pretrain"),
        args=stage_args("pretrain"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("pretrain"),
        mem_mb=memory_mb("pretrain"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/pretrain/batch{batch}.log",
    benchmark:
        "results/{study}/benchmarks/pretrain/batch{batch}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} {params.args} > {log} 2>&1"
