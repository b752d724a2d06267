rule align:
    input:
        f"{SHARD}/pretrain.nc",
    output:
        f"{SHARD}/align.nc",
    params:
        script=script("align"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("align"),
        mem_mb=memory_mb("align"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/align/{point}-{shard}.log",
    benchmark:
        "results/{study}/benchmarks/align/{point}-{shard}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --in {input} --out {output} > {log} 2>&1"
