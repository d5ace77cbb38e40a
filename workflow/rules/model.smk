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
    benchmark:
        timing("train")
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
        code=code("stages/baseline.py", "models/baseline.py", "evaluation.py", "data/images.py", "data/labels.py"),
    output:
        metrics="results/baseline/metrics.json",
        predictions="results/baseline/predictions.csv",
    log:
        "results/logs/baseline.log",
    benchmark:
        timing("baseline")
    params:
        cfg=params_for("seed", "data", "baseline"),
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.baseline --params {params.cfg:q} --threads {threads}"
        " --in train={input.train} --in test={input.test} --out metrics={output.metrics}"
        " --out predictions={output.predictions} 2>&1 | tee {log}"


rule evaluate:
    input:
        best=rules.train.output.best,
        test=rules.split.output.test,
        baseline_predictions=rules.baseline.output.predictions,
        code=code("stages/evaluate.py", "models", "data/datamodule.py", "data/images.py", "data/labels.py", "evaluation.py"),
    output:
        metrics="results/evaluate/metrics.json",
        confusion="results/evaluate/confusion.json",
        predictions="results/evaluate/predictions.csv",
        per_class="results/evaluate/per_class.csv",
        roc="results/evaluate/roc.csv",
        pr="results/evaluate/pr.csv",
        calibration="results/evaluate/calibration.csv",
        worst_errors="results/evaluate/worst_errors.json",
        details="results/evaluate/details.json",
    log:
        "results/logs/evaluate.log",
    benchmark:
        timing("evaluate")
    params:
        cfg=params_for("seed", "evaluate"),
    threads: workflow.cores
    resources:
        mem_mb=4000,
    conda:
        "../../envs/train.yaml"
    shell:
        "python -m tunepipe.stages.evaluate --params {params.cfg:q} --threads {threads}"
        " --in best={input.best} --in test={input.test} --in baseline_predictions={input.baseline_predictions}"
        " --out metrics={output.metrics} --out confusion={output.confusion} --out predictions={output.predictions}"
        " --out per_class={output.per_class} --out roc={output.roc} --out pr={output.pr}"
        " --out calibration={output.calibration} --out worst_errors={output.worst_errors}"
        " --out details={output.details} 2>&1 | tee {log}"
