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
        prune=rules.prune.output.levels,
        export=rules.export.output.parity,
        variants=rules.export.output.variants,
        code=code("stages/report.py", "report"),
    output:
        html="results/report.html",
    log:
        "results/logs/report.log",
    params:
        cfg=params_for(*sorted(config)),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m tunepipe.stages.report --params {params.cfg:q} --threads {threads}"
        " --in prepare={input.prepare} --in clean={input.clean} --in split={input.split}"
        " --in augment={input.augment} --in history={input.history} --in train={input.train}"
        " --in metrics={input.metrics} --in confusion={input.confusion} --in prune={input.prune}"
        " --in export={input.export} --in variants={input.variants} --out html={output.html} 2>&1 | tee {log}"
