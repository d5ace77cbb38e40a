# Optimisation phase: prune the fine-tuned model (unstructured and/or structured), export the dense and the
# selected model to ONNX, check them, quantize to INT8, measure every variant and write a model card.


rule prune:
    input:
        best=rules.train.output.best,
        train=rules.split.output.train,
        val=rules.split.output.val,
        test=rules.split.output.test,
        code=stage_code("prune"),
    output:
        model="results/prune/model.pt",
        levels="results/prune/levels.json",
    log:
        "results/logs/prune.log",
    benchmark:
        benchmark_file("prune")
    params:
        cfg=params_for("seed", "prune"),
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
