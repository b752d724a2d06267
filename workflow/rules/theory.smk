rule theory:
    output:
        "results/{study}/points/{point}/theory.nc",
    params:
        script=script("theory"),
        point=point_json,
    resources:
        runtime=runtime_minutes("theory"),
        mem_mb=memory_mb("theory"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/theory/{point}.log",
    benchmark:
        "results/{study}/benchmarks/theory/{point}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --point {params.point:q} --out {output} > {log} 2>&1"
