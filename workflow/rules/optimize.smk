# Optimisation phase: prune the fine-tuned model, export the selected one to ONNX and check it.


rule prune:
    input:
        best=rules.train.output.best,
        val=rules.split.output.val,
        test=rules.split.output.test,
        code=code("stages/prune.py", "optimize/pruning.py", "models", "data/datamodule.py", "data/images.py", "evaluation.py"),
    output:
        model="results/prune/model.pt",
        levels="results/prune/levels.json",
    log:
        "results/logs/prune.log",
    benchmark:
        timing("prune")
    params:
        cfg=params_for("prune", "evaluate"),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.prune --params {params.cfg:q} --threads {threads}"
        " --in best={input.best} --in val={input.val} --in test={input.test}"
        " --out model={output.model} --out levels={output.levels} 2>&1 | tee {log}"


rule export:
    input:
        model=rules.prune.output.model,
        test=rules.split.output.test,
        code=code("stages/export.py", "optimize/onnx_export.py", "models", "data/datamodule.py", "data/images.py"),
    output:
        onnx="results/export/model.onnx",
        parity="results/export/parity.json",
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
        " --in model={input.model} --in test={input.test}"
        " --out onnx={output.onnx} --out parity={output.parity} 2>&1 | tee {log}"
