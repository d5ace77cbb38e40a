# Optimisation phase: distil the fine-tuned model into a smaller student (texts), prune it (unstructured and/or
# structured), select one candidate, export the dense and the selected model to ONNX, check them, quantize to
# INT8, measure every variant and write a model card.


rule distill:
    input:
        best=rules.train.output.best,
        train=rules.augment.output.train,
        code=stage_code("distill"),
    output:
        student="results/distill/student.pt",
        summary="results/distill/summary.json",
    log:
        "results/logs/distill.log",
    benchmark:
        benchmark_file("distill")
    params:
        cfg=params_for("seed", "distill"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["training_single"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("distill")


rule prune:
    input:
        best=rules.train.output.best,
        train=rules.split.output.train,
        val=rules.split.output.val,
        test=rules.split.output.test,
        code=stage_code("prune"),
        # With distillation on (texts): the student, a candidate beside the pruning levels; see distill_inputs() in common.smk.
        **distill_inputs(),
        # After a sweep without folds: the top-k variants' ensemble, another candidate; see ensemble_inputs() in common.smk.
        **ensemble_inputs(),
        # multi_label: each label's threshold (tuned on validation by evaluate), to score the candidates' answers.
        **decision_input(),
    output:
        model="results/prune/model.pt",
        levels="results/prune/levels.json",
    log:
        "results/logs/prune.log",
    benchmark:
        benchmark_file("prune")
    params:
        cfg=params_for("seed", "prune", "distill"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["inference"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("prune")


rule export:
    input:
        model=rules.prune.output.model,
        best=rules.train.output.best,
        val=rules.split.output.val,
        test=rules.split.output.test,
        # multi_label: each label's threshold (tuned on validation by evaluate), for the variants' scores and the bundle.
        **decision_input(),
        code=stage_code("export"),
    output:
        onnx="results/export/model.onnx",
        int8="results/export/model.int8.onnx",
        parity="results/export/parity.json",
        variants="results/export/variants.json",
        card="results/export/model_card.json",
        bundle=directory("results/export/bundle"),
    log:
        "results/logs/export.log",
    benchmark:
        benchmark_file("export")
    params:
        cfg=params_for("export"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["inference"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("export")
