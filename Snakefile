# tunepipe: clean -> split -> augment -> [sweep/CV -> select] -> fine-tune -> evaluate -> prune -> export -> report.
# An optional step that the params leave out (distill, robustness, explain) leaves its reason instead (skip.smk).
# This file is the table of contents; each phase's rules live in workflow/rules/.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/trust.smk"
include: "workflow/rules/optimize.smk"
include: "workflow/rules/skip.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,


# After a successful whole run, record it in dvc.lock and the DVC cache as `dvc commit` does, so that
# `git add dvc.lock && git commit` versions it; not under `dvc repro`/`dvc exp run`, nor with TUNEPIPE_RECORD_RUN=0.
onsuccess:
    from tunepipe.record import record_run

    record_run(config=config, jobs=workflow.dag.jobs, dryrun=workflow.dryrun or workflow.touch)
