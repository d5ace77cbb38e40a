# Data phase: read the raw dataset, clean it, split it, augment the training split.


rule prepare:
    input:
        raw=raw_data(),
        code=code("stages/prepare.py", "data/readers.py", "data/images.py"),
    output:
        rows="results/prepare/rows.jsonl",
        summary=report("results/prepare/summary.json", category="Data", labels={"file": "source rows"}),
    log:
        "results/logs/prepare.log",
    benchmark:
        timing("prepare")
    params:
        cfg=prepare_params(),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tunepipe.stages.prepare --params {params.cfg:q} --threads {threads}"
        " --out rows={output.rows} --out summary={output.summary} 2>&1 | tee {log}"


rule clean:
    input:
        rows=rules.prepare.output.rows,
        code=code("stages/clean.py", "data/cleaning.py", "data/text.py", "data/images.py"),
    output:
        rows="results/clean/rows.jsonl",
        report=report("results/clean/report.json", category="Data", labels={"file": "cleaning report"}),
    log:
        "results/logs/clean.log",
    benchmark:
        timing("clean")
    params:
        cfg=params_for("data", "clean", "report"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tunepipe.stages.clean --params {params.cfg:q} --threads {threads}"
        " --in rows={input.rows} --out rows={output.rows} --out report={output.report} 2>&1 | tee {log}"


rule split:
    input:
        rows=rules.clean.output.rows,
        code=code("stages/split.py", "data/splitting.py", "data/text.py"),
    output:
        train="results/split/train.jsonl",
        val="results/split/val.jsonl",
        test="results/split/test.jsonl",
        summary=report("results/split/summary.json", category="Data", labels={"file": "splits"}),
    log:
        "results/logs/split.log",
    benchmark:
        timing("split")
    params:
        cfg=params_for("seed", "split"),
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tunepipe.stages.split --params {params.cfg:q} --threads {threads} --in rows={input.rows}"
        " --out train={output.train} --out val={output.val} --out test={output.test}"
        " --out summary={output.summary} 2>&1 | tee {log}"


rule augment:
    input:
        train=rules.split.output.train,
        code=code("stages/augment.py", "data/augment.py", "data/images.py"),
    output:
        train="results/augment/train.jsonl",
        summary=report("results/augment/summary.json", category="Data", labels={"file": "augmentation"}),
    log:
        "results/logs/augment.log",
    benchmark:
        timing("augment")
    params:
        cfg=params_for("seed", "data", "augment", "report"),
    threads: 2
    resources:
        mem_mb=2000,
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m tunepipe.stages.augment --params {params.cfg:q} --threads {threads} --in train={input.train}"
        " --out train={output.train} --out summary={output.summary} 2>&1 | tee {log}"
