# Sweep phase (only with sweep.method grid/random or split.folds >= 2): one job per variant and fold, then
# `select` ranks the variants; `train` (model.smk) makes the final model with the winner's overrides.


rule trial:
    input:
        train=rules.augment.output.train,
        val=rules.split.output.val,
        code=code("stages/trial.py", "stages/train.py", "sweep.py", "config.py", "training.py", "models", "data/datamodule.py", "data/images.py", "data/labels.py", "data/splitting.py"),
    output:
        best="results/sweep/{variant}/best.ckpt",
        history="results/sweep/{variant}/history.csv",
        summary="results/sweep/{variant}/summary.json",
    log:
        "results/logs/trial/{variant}.log",
    benchmark:
        timing("trial/{variant}")
    params:
        cfg=trial_params,
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=train_gpus(),
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.trial --params {params.cfg:q} --threads {threads}"
        " --in train={input.train} --in val={input.val} --out best={output.best}"
        " --out history={output.history} --out summary={output.summary} 2>&1 | tee {log}"


rule cv_fold:
    input:
        train=rules.augment.output.train,
        val=rules.split.output.val,
        code=rules.trial.input.code,
    output:
        history="results/sweep/{variant}/fold{fold}/history.csv",
        summary="results/sweep/{variant}/fold{fold}/summary.json",
    log:
        "results/logs/trial/{variant}-fold{fold}.log",
    benchmark:
        timing("cv_fold/{variant}/fold{fold}")
    params:
        cfg=trial_params,
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=train_gpus(),
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.trial --params {params.cfg:q} --threads {threads}"
        " --in train={input.train} --in val={input.val}"
        " --out history={output.history} --out summary={output.summary} 2>&1 | tee {log}"


rule select:
    input:
        trials=trial_summaries(),
        code=code("stages/select.py", "sweep.py", "config.py"),
    output:
        selection="results/select/selection.json",
    log:
        "results/logs/select.log",
    benchmark:
        timing("select")
    params:
        cfg=params_for("sweep", "split"),
        trials=lambda wildcards, input: repeated("trial", input.trials),
    threads: 1
    resources:
        mem_mb=500,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.select --params {params.cfg:q} --threads {threads}"
        " {params.trials} --out selection={output.selection} 2>&1 | tee {log}"
