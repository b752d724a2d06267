rule pretrain:
    input:
        f"{SHARD}/simulate.nc",
    output:
        f"{SHARD}/pretrain.nc",
    params:
        script=script("pretrain"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("pretrain"),
        mem_mb=memory_mb("pretrain"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/pretrain/{point}-{shard}.log",
    benchmark:
        "results/{study}/benchmarks/pretrain/{point}-{shard}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --in {input} --out {output} > {log} 2>&1"
