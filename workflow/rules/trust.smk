# Trust phase: how the fine-tuned model holds up beyond clean accuracy (robustness to perturbations and
# attacks, explanations of its predictions). Each rule reads the trained model and the test split.


rule robustness:
    input:
        best=rules.train.output.best,
        test=rules.split.output.test,
        code=stage_code("robustness"),
        # multi_label: each label's threshold (tuned on validation by evaluate), for the answers it perturbs.
        **decision_input(),
    output:
        metrics="results/robustness/metrics.json",
        perturbations="results/robustness/perturbations.csv",
        attacks="results/robustness/attacks.csv",
        examples="results/robustness/examples.json",
    log:
        "results/logs/robustness.log",
    benchmark:
        benchmark_file("robustness")
    params:
        cfg=params_for("seed", "robustness"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["inference"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("robustness")


rule explain:
    input:
        best=rules.train.output.best,
        test=rules.split.output.test,
        predictions=rules.evaluate.output.predictions,
        code=stage_code("explain"),
    output:
        attributions="results/explain/attributions.json",
        heatmaps=directory("results/explain/heatmaps"),
    log:
        "results/logs/explain.log",
    benchmark:
        benchmark_file("explain")
    params:
        cfg=params_for("explain"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["inference"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("explain")
