rule downstream:
    priority: PRIORITY["downstream"]
    input:
        align=f"{SHARDS}/align",
        simulate=f"{SHARDS}/simulate",
    output:
        directory(f"{SHARDS}/downstream"),
    params:
        script=script("downstream"),
        args=stage_args("downstream"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("downstream"),
        mem_mb=memory_mb("downstream"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/downstream/batch{batch}.log",
    benchmark:
        "results/{study}/benchmarks/downstream/batch{batch}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} {params.args} > {log} 2>&1"
