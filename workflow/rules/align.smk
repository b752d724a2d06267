rule align:
    input:
        f"{SHARD}/pretrain.nc",
    output:
        f"{SHARD}/align.nc",
    params:
        script=script("align"),
    log:
        "results/{study}/logs/align/{point}-{shard}.log",
    benchmark:
        "results/{study}/benchmarks/align/{point}-{shard}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --in {input} --out {output} > {log} 2>&1"
