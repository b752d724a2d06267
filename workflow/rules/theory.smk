rule theory:
    output:
        "results/{study}/points/{point}/theory.nc",
    params:
        script=script("theory"),
        point=point_json,
    log:
        "results/{study}/logs/theory/{point}.log",
    benchmark:
        "results/{study}/benchmarks/theory/{point}.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --point {params.point:q} --out {output} > {log} 2>&1"
