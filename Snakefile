# tunepipe: clean -> split -> augment -> [sweep/CV -> select] -> fine-tune -> evaluate -> prune -> export -> report.
# This file is the table of contents; each phase's rules live in workflow/rules/.

configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/optimize.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.report.output.html,
