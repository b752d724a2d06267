rule risk:
    input:
        downstream=study_downstream,
        theory=study_theory,
    output:
        risk="results/{study}/risk.nc",
        theory="results/{study}/theory.nc",
    params:
        script=script("risk"),
        p_var_tolerance=p_var_tolerance,
        ks_bootstrap=ks_bootstrap,
    resources:
        runtime=runtime_minutes("risk"),
        mem_mb=memory_mb("risk"),
        cpus_per_task=1,
    log:
        "results/{study}/logs/risk.log",
    benchmark:
        "results/{study}/benchmarks/risk.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --downstream {input.downstream} --theory {input.theory} "
        "--p-var-tolerance {params.p_var_tolerance} --ks-bootstrap {params.ks_bootstrap} "
        "--out-risk {output.risk} --out-theory {output.theory} > {log} 2>&1"
