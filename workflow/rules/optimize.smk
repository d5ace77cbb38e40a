# Optimisation phase: prune the fine-tuned model (unstructured and/or structured), export the dense and the
# selected model to ONNX, check them, quantize to INT8, measure every variant and write a model card.


rule prune:
    input:
        best=rules.train.output.best,
        train=rules.split.output.train,
        val=rules.split.output.val,
        test=rules.split.output.test,
        code=code("stages/prune.py", "optimize/pruning.py", "optimize/onnx_export.py", "models", "data/datamodule.py", "data/images.py", "evaluation.py"),
    output:
        model="results/prune/model.pt",
        levels="results/prune/levels.json",
    log:
        "results/logs/prune.log",
    benchmark:
        timing("prune")
    params:
        cfg=params_for("seed", "prune", "evaluate"),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.prune --params {params.cfg:q} --threads {threads}"
        " --in best={input.best} --in train={input.train} --in val={input.val} --in test={input.test}"
        " --out model={output.model} --out levels={output.levels} 2>&1 | tee {log}"


rule export:
    input:
        model=rules.prune.output.model,
        best=rules.train.output.best,
        val=rules.split.output.val,
        test=rules.split.output.test,
        code=code("stages/export.py", "optimize", "models", "data/datamodule.py", "data/images.py", "data/labels.py"),
    output:
        onnx="results/export/model.onnx",
        int8="results/export/model.int8.onnx",
        parity="results/export/parity.json",
        variants="results/export/variants.json",
        card="results/export/model_card.json",
    log:
        "results/logs/export.log",
    benchmark:
        timing("export")
    params:
        cfg=params_for("export"),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.export --params {params.cfg:q} --threads {threads}"
        " --in model={input.model} --in best={input.best} --in val={input.val} --in test={input.test}"
        " --out onnx={output.onnx} --out int8={output.int8} --out parity={output.parity}"
        " --out variants={output.variants} --out card={output.card} 2>&1 | tee {log}"
