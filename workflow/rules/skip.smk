# Optional steps that these params leave out (tunepipe.steps: distill for images or when off, robustness and explain
# when off): each still leaves its results folder, a DVC out, holding skipped.json with the reason instead of outputs,
# so the run can be recorded in dvc.lock; the report reads these and says which steps did not run and why.


rule skip:
    input:
        code=stage_code("skip"),
    output:
        marker=f"results/{{step}}/{SKIP_MARKER}",
    log:
        "results/logs/skip/{step}.log",
    benchmark:
        benchmark_file("skip/{step}")
    params:
        cfg=lambda wildcards: json.dumps({"step": wildcards.step, "reason": SKIPPED[wildcards.step]}),
        files=stage_files,
    wildcard_constraints:
        step="|".join(SKIPPED) or "(?!)",  # only the steps left out: a step that runs is made by its own rule
    threads: 1
    resources:
        **RESOURCES["small"],
    conda:
        "../../envs/report.yaml"
    shell:
        stage_command("skip")
