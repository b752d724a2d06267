# The errata table of the run: the paper's printed closed forms against their corrections,
# our numerical limits and the Monte Carlo; values read off the paper's figures against
# our limits. From the aggregated files only.


rule errata:
    priority: PRIORITY["errata"]
    input:
        risk=[f"results/{s}/risk.nc" for s in POINTS if not is_sweep(s)],
        theory=[f"results/{s}/theory.nc" for s in POINTS if not is_sweep(s)],
        sweep=[f"results/{s}/sweep.nc" for s in POINTS if is_sweep(s)],
    output:
        table=report(
            "results/errata.csv", caption="../report/errata.rst", category="Errata"
        ),
        latex="results/errata.tex",
    params:
        script=script("errata"),
        references=json.dumps(
            {s: SETTINGS[s]["reference"] for s in POINTS if SETTINGS[s]["reference"]},
            sort_keys=True,
        ),
    resources:
        runtime=MIN_RUNTIME,
        mem_mb=1000,
        cpus_per_task=1,
    log:
        "results/logs/errata.log",
    benchmark:
        "results/benchmarks/errata.tsv"
    conda:
        "../../envs/twostage.yaml"
    shell:
        "python {params.script} --risk {input.risk} --theory {input.theory} "
        "--sweep {input.sweep} --references {params.references:q} --out {output.table} "
        "> {log} 2>&1"
