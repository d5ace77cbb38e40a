# Model phase: fine-tune the pretrained encoder, fit the TF-IDF baseline, evaluate both on the test split.


rule train:
    input:
        train=rules.augment.output.train,
        val=rules.split.output.val,
        code=code("stages/train.py", "training.py", "models", "data/datamodule.py", "data/images.py", "data/labels.py"),
        **sweep_inputs(),
    output:
        best="results/train/best.ckpt",
        history="results/train/history.csv",
        config="results/train/config.yaml",
        summary="results/train/summary.json",
    log:
        "results/logs/train.log",
    params:
        cfg=params_for("seed", "data", "model", "train"),
        # With a sweep: the selection, and without folds every variant's run (the winner's is reused).
        sweep=lambda wildcards, input: train_sweep_args(input),
    threads: workflow.cores
    resources:
        mem_mb=6000,
        runtime=120,
        # GPUs to ask the scheduler for (SLURM profile: sbatch --gpus=N); see train_gpus() in common.smk.
        gpu=train_gpus(),
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.train --params {params.cfg:q} --threads {threads}"
        " --in train={input.train} --in val={input.val} --out best={output.best} --out history={output.history}"
        " --out config={output.config} --out summary={output.summary}{params.sweep} 2>&1 | tee {log}"


rule baseline:
    input:
        train=rules.split.output.train,
        test=rules.split.output.test,
        code=code("stages/baseline.py", "models/baseline.py", "evaluation.py", "data/images.py"),
    output:
        metrics="results/baseline/metrics.json",
    log:
        "results/logs/baseline.log",
    params:
        cfg=params_for("seed", "data", "baseline"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.baseline --params {params.cfg:q} --threads {threads}"
        " --in train={input.train} --in test={input.test} --out metrics={output.metrics} 2>&1 | tee {log}"


rule evaluate:
    input:
        best=rules.train.output.best,
        test=rules.split.output.test,
        baseline=rules.baseline.output.metrics,
        code=code("stages/evaluate.py", "models", "data/datamodule.py", "data/images.py", "evaluation.py"),
    output:
        metrics="results/evaluate/metrics.json",
        confusion="results/evaluate/confusion.json",
        predictions="results/evaluate/predictions.csv",
    log:
        "results/logs/evaluate.log",
    params:
        cfg=params_for("evaluate"),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.evaluate --params {params.cfg:q} --threads {threads}"
        " --in best={input.best} --in test={input.test} --in baseline={input.baseline}"
        " --out metrics={output.metrics} --out confusion={output.confusion}"
        " --out predictions={output.predictions} 2>&1 | tee {log}"
