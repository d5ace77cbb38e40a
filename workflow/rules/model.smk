# Model phase: fine-tune the pretrained encoder, fit the simple baseline, evaluate both on the test split.


rule train:
    input:
        train=rules.augment.output.train,
        val=rules.split.output.val,
        code=stage_code("train"),
        # With a sweep: the selection, and without folds every variant's run (the winner's is reused).
        **sweep_inputs(),
    output:
        best="results/train/best.ckpt",
        history="results/train/history.csv",
        # Every optimizer step (the report's curves); the loggers write results/train/tensorboard/ and dvclive/ beside it.
        steps="results/train/steps.csv",
        config="results/train/config.yaml",
        summary="results/train/summary.json",
    log:
        "results/logs/train.log",
    benchmark:
        benchmark_file("train")
    params:
        cfg=params_for("seed", "task", "data", "model", "train"),
        files=stage_files,
    threads: workflow.cores
    resources:
        # GPUs, and tasks with several processes, to ask the scheduler for (SLURM profile); see slurm_tasks() in common.smk.
        **RESOURCES["training"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("train", tasks=True)


rule baseline:
    input:
        train=rules.split.output.train,
        test=rules.split.output.test,
        code=stage_code("baseline"),
    output:
        metrics="results/baseline/metrics.json",
        predictions="results/baseline/predictions.csv",
    log:
        "results/logs/baseline.log",
    benchmark:
        benchmark_file("baseline")
    params:
        cfg=params_for("seed", "task", "data", "baseline"),
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["data"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("baseline")


rule evaluate:
    input:
        best=rules.train.output.best,
        test=rules.split.output.test,
        baseline_predictions=rules.baseline.output.predictions,
        train_summary=rules.train.output.summary,
        train_history=rules.train.output.history,
        code=stage_code("evaluate"),
        # multi_label: the validation split, to tune each label's threshold; see validation_input() in common.smk.
        **validation_input(),
    output:
        metrics="results/evaluate/metrics.json",
        predictions="results/evaluate/predictions.csv",
        decision="results/evaluate/decision.json",
        slices="results/evaluate/slices.json",
        slices_table="results/evaluate/slices.csv",
        comparison="results/evaluate/comparison.json",
        # The task's own files (single_label: confusion, per_class, roc, pr, calibration, worst_errors, details); see tunepipe/tasks/.
        **task_outputs("results/evaluate"),
    log:
        "results/logs/evaluate.log",
    benchmark:
        benchmark_file("evaluate")
    params:
        cfg=params_for("seed", "evaluate"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["inference"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("evaluate")
