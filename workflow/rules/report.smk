# Report phase: one self-contained HTML file that tells the whole run.


rule report:
    input:
        prepare=rules.prepare.output.summary,
        clean=rules.clean.output.report,
        split=rules.split.output.summary,
        augment=rules.augment.output.summary,
        train_history=rules.train.output.history,
        train_steps=rules.train.output.steps,
        train=rules.train.output.summary,
        baseline=rules.baseline.output.metrics,
        metrics=rules.evaluate.output.metrics,
        # The task's own evaluate files (confusion, details, worst_errors, ...; the CSV tables the report reads from details).
        **{key: path for key, path in task_outputs("results/evaluate").items() if path.endswith(".json")},
        decision=rules.evaluate.output.decision,
        slices=rules.evaluate.output.slices,
        comparison=rules.evaluate.output.comparison,
        predictions=rules.evaluate.output.predictions,
        **unless_skipped("explain", {"explanations": rules.explain.output.attributions}),
        **unless_skipped("robustness", {
            "robustness_metrics": rules.robustness.output.metrics,
            "robustness_perturbations": rules.robustness.output.perturbations,
            "robustness_attacks": rules.robustness.output.attacks,
            "robustness_examples": rules.robustness.output.examples,
        }),
        # The optional steps these params leave out, each with why (skipped.json; see workflow/rules/skip.smk).
        skipped=skip_markers(),
        levels=rules.prune.output.levels,
        parity=rules.export.output.parity,
        variants=rules.export.output.variants,
        timings=timings(),
        code=stage_code("report"),
        # The sweep/CV section's data, only when a sweep or cross-validation ran.
        **({"selection": rules.select.output.selection} if SWEEP else {}),
        # The top-k variants' ensemble against the winner, only when the ensemble rule runs.
        **({"ensemble": rules.ensemble.output.summary} if ENSEMBLE else {}),
    output:
        html=report("results/report.html", category="Report", labels={"file": "tunepipe report"}),
    log:
        "results/logs/report.log",
    benchmark:
        benchmark_file("report")
    params:
        # Every section: the report prints them all (and report.* is read by this rule alone).
        cfg=params_for(*sorted(config)),
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["small"],
    conda:
        "../../envs/report.yaml"
    shell:
        stage_command("report")
