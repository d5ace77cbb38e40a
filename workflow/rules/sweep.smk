# Sweep phase (only with sweep.method grid/random/tpe or split.folds >= 2): one job per variant and fold, then
# `select` ranks the variants; `train` (model.smk) makes the final model with the winner's overrides.
# tpe: the variants are asked in rounds by the `ask` checkpoint; round k's trials run side by side, and round
# k+1 is asked once they have all finished (common.smk: ask_inputs, trial_round_inputs, per_trial).


checkpoint ask:
    input:
        unpack(ask_inputs),
        code=stage_code("ask"),
    output:
        asked="results/sweep/round{round}/asked.json",
    log:
        "results/logs/ask/round{round}.log",
    benchmark:
        benchmark_file("ask/round{round}")
    params:
        cfg=ask_params,
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["small"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("ask")


rule trial:
    input:
        # tpe: the round that asked this trial and, with median pruning, the earlier rounds' histories.
        unpack(trial_round_inputs),
        train=rules.augment.output.train,
        val=rules.split.output.val,
        code=stage_code("trial"),
    output:
        best="results/sweep/{variant}/best.ckpt",
        history="results/sweep/{variant}/history.csv",
        steps="results/sweep/{variant}/steps.csv",
        summary="results/sweep/{variant}/summary.json",
    log:
        "results/logs/trial/{variant}.log",
    benchmark:
        benchmark_file("trial/{variant}")
    params:
        cfg=trial_params,
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["training"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("trial", tasks=True)


# The same stage on one cross-validation fold: no checkpoint is kept.
rule cv_fold:
    input:
        train=rules.augment.output.train,
        val=rules.split.output.val,
        code=stage_code("trial"),
    output:
        history="results/sweep/{variant}/fold{fold}/history.csv",
        summary="results/sweep/{variant}/fold{fold}/summary.json",
    log:
        "results/logs/trial/{variant}-fold{fold}.log",
    benchmark:
        benchmark_file("cv_fold/{variant}/fold{fold}")
    params:
        cfg=trial_params,
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["training"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("trial", tasks=True)


rule select:
    input:
        trials=per_trial(rules.trial.output.summary, rules.cv_fold.output.summary),
        code=stage_code("select"),
    output:
        selection="results/select/selection.json",
    log:
        "results/logs/select.log",
    benchmark:
        benchmark_file("select")
    params:
        cfg=params_for("sweep", "split"),
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["small"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("select")


# The top-k variants by select's ranking averaged (their mean class probabilities), a candidate of prune (optimize.smk);
# only with a sweep without folds of two variants or more and ensemble.top_k >= 2 (ENSEMBLE, common.smk).
rule ensemble:
    input:
        selection=rules.select.output.selection,
        # every variant's checkpoint (the stage reads the top-k); none to name when folds are on (no ensemble then)
        trials=per_trial(rules.trial.output.best, None) if ENSEMBLE else [],
        val=rules.split.output.val,
        test=rules.split.output.test,
        code=stage_code("ensemble"),
    output:
        model="results/ensemble/model.pt",
        summary="results/ensemble/summary.json",
    log:
        "results/logs/ensemble.log",
    benchmark:
        benchmark_file("ensemble")
    params:
        cfg=params_for("ensemble"),
        files=stage_files,
    threads: workflow.cores
    resources:
        **RESOURCES["inference"],
    conda:
        "../../envs/train.yaml"
    shell:
        stage_command("ensemble")
