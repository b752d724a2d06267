rule downstream:
    input:
        align=f"{SHARD}/align.nc",
        simulate=f"{SHARD}/simulate.nc",
    output:
        f"{SHARD}/downstream.nc",
    params:
        script=script("downstream"),
    group:
        "shard"
    resources:
        runtime=runtime_minutes("downstream"),
        mem_mb=memory_mb("downstream"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/downstream/{point}-{shard}.log",
    benchmark:
        "results/{study}/benchmarks/downstream/{point}-{shard}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --align {input.align} --simulate {input.simulate} "
        "--out {output} > {log} 2>&1"
