# Report phase: one self-contained HTML file that tells the whole run.


rule report:
    input:
        prepare=rules.prepare.output.summary,
        clean=rules.clean.output.report,
        split=rules.split.output.summary,
        augment=rules.augment.output.summary,
        history=rules.train.output.history,
        train=rules.train.output.summary,
        metrics=rules.evaluate.output.metrics,
        confusion=rules.evaluate.output.confusion,
        details=rules.evaluate.output.details,
        worst_errors=rules.evaluate.output.worst_errors,
        prune=rules.prune.output.levels,
        export=rules.export.output.parity,
        variants=rules.export.output.variants,
        timings=timings(),
        code=code("stages/report.py", "report"),
        # The sweep/CV section's data, only when a sweep or cross-validation ran.
        **({"selection": "results/select/selection.json"} if SWEEP else {}),
    output:
        html=report("results/report.html", category="Report", labels={"file": "tunepipe report"}),
    log:
        "results/logs/report.log",
    benchmark:
        timing("report")
    params:
        cfg=params_for(*sorted(config)),
        sweep=lambda wildcards, input: f" --in selection={input.selection}" if SWEEP else "",
        timings=lambda wildcards, input: repeated("timings", input.timings),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m tunepipe.stages.report --params {params.cfg:q} --threads {threads}"
        " --in prepare={input.prepare} --in clean={input.clean} --in split={input.split}"
        " --in augment={input.augment} --in history={input.history} --in train={input.train}"
        " --in metrics={input.metrics} --in confusion={input.confusion} --in details={input.details}"
        " --in worst_errors={input.worst_errors} --in prune={input.prune} --in export={input.export}"
        " --in variants={input.variants}{params.sweep} {params.timings} --out html={output.html} 2>&1 | tee {log}"
