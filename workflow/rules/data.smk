# Data phase: read the raw dataset, clean it, split it, augment the training split.


rule prepare:
    input:
        raw=raw_data(),
        code=stage_code("prepare"),
    output:
        rows="results/prepare/rows.jsonl",
        summary=report("results/prepare/summary.json", category="Data", labels={"file": "source rows"}),
    log:
        "results/logs/prepare.log",
    benchmark:
        benchmark_file("prepare")
    params:
        cfg=prepare_params(),
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["data"],
    conda:
        "../../envs/data.yaml"
    shell:
        stage_command("prepare")


rule clean:
    input:
        rows=rules.prepare.output.rows,
        code=stage_code("clean"),
    output:
        rows="results/clean/rows.jsonl",
        report=report("results/clean/report.json", category="Data", labels={"file": "cleaning report"}),
    log:
        "results/logs/clean.log",
    benchmark:
        benchmark_file("clean")
    params:
        cfg=params_for("task", "data", "clean"),
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["data"],
    conda:
        "../../envs/data.yaml"
    shell:
        stage_command("clean")


rule split:
    input:
        rows=rules.clean.output.rows,
        code=stage_code("split"),
    output:
        train="results/split/train.jsonl",
        val="results/split/val.jsonl",
        test="results/split/test.jsonl",
        summary=report("results/split/summary.json", category="Data", labels={"file": "splits"}),
    log:
        "results/logs/split.log",
    benchmark:
        benchmark_file("split")
    params:
        cfg=params_for("seed", "task", "split"),
        files=stage_files,
    threads: 1
    resources:
        **RESOURCES["data"],
    conda:
        "../../envs/data.yaml"
    shell:
        stage_command("split")


rule augment:
    input:
        train=rules.split.output.train,
        code=stage_code("augment"),
    output:
        train="results/augment/train.jsonl",
        summary=report("results/augment/summary.json", category="Data", labels={"file": "augmentation"}),
    log:
        "results/logs/augment.log",
    benchmark:
        benchmark_file("augment")
    params:
        cfg=params_for("seed", "data", "augment"),
        files=stage_files,
    threads: 2
    resources:
        **RESOURCES["data"],
    conda:
        "../../envs/data.yaml"
    shell:
        stage_command("augment")
