rule risk:
    priority: PRIORITY["risk"]
    input:
        downstream=study_shards("downstream"),
        theory=study_theory,
    output:
        risk="results/{study}/risk.nc",
        theory="results/{study}/theory.nc",
    params:
        script=script("risk"),
        theory=study_limit_files,
        downstream=study_downstream_files,
        p_var_tolerance=setting("p_var_tolerance"),
        ks_bootstrap=setting("ks_bootstrap"),
        flagged=setting("flagged"),
        regime_tolerance=setting("regime_tolerance"),
        replicates=study_replicates,
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
        "python {params.script} --downstream {params.downstream} --theory {params.theory} "
        "--p-var-tolerance {params.p_var_tolerance} --ks-bootstrap {params.ks_bootstrap} "
        "--flagged {params.flagged} --regime-tolerance {params.regime_tolerance} "
        "--replicates {params.replicates} "
        "--out-risk {output.risk} --out-theory {output.theory} > {log} 2>&1"


# At the end of a run: one warning per point with flagged replicates or not yet in its
# asymptotic regime (the same lines are in each study's logs/risk.log).
onsuccess:
    for _line in flagged_points():
        logger.warning(f"warning: {_line}")
