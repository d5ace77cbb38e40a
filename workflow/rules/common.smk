# Shared helpers: validate params once, before any job runs; build every rule's stage command from the rule's
# own input/output (paths are written once, in the rule); compute each rule's code inputs from the imports.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from tunepipe.config import sections
from tunepipe.errors import ParamsError
from tunepipe.sources import stage_code
from tunepipe.sweep import NAME_PATTERN, expand_variants, fold_indices, sweep_enabled, validate_run_params

try:
    config.update(validate_run_params(config))
except ParamsError as error:
    raise WorkflowError(str(error)) from None

# Sweep variants and cross-validation folds (workflow/rules/sweep.smk); none of either: the DAG has no sweep jobs.
SWEEP = sweep_enabled(config)
VARIANTS = {variant.name: variant.overrides for variant in expand_variants(config)}
FOLDS = fold_indices(config)


wildcard_constraints:
    variant=NAME_PATTERN,
    fold=r"\d+",


# Jobs run `python -m tunepipe.stages...`: make that the interpreter Snakemake itself runs in, so
# `.venv/bin/snakemake` works without activating the venv (--use-conda jobs put their env first).
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def stage_command(stage):
    """The shell line of a rule: its stage module with the rule's params, threads and files; output also to its log."""
    return f"python -m tunepipe.stages.{stage} --params {{params.cfg:q}} --threads {{threads}} {{params.files}} 2>&1 | tee {{log}}"


def stage_files(wildcards, input, output):
    """`--in KEY=PATH` for each named input (once per path of a list) and `--out KEY=PATH` for each output.

    The keys are the rule's own names, which are the stage's keys (its harness refuses any other); `code`
    is the rule's code input (for staleness), not a stage input.
    """
    args = []
    for flag, files in (("--in", input), ("--out", output)):
        for key, value in files.items():
            if key == "code":
                continue
            for path in [value] if isinstance(value, str) else value:
                args.append(f"{flag} {shlex.quote(f'{key}={path}')}")
    return " ".join(args)


def raw_data():
    """The user's dataset (file or image folder), an input of prepare so that editing it reruns the pipeline.

    Bundled datasets come from pinned packages and need no input. A folder counts as changed when files are
    added or removed (its mtime); replacing an image in place needs `--forcerun prepare`.
    """
    data = config["data"]
    return [data["path"]] if data["source"] in ("file", "folder") and data["path"] else []


def prepare_params():
    """prepare reads the seed only when it samples (data.max_rows), so a new seed does not redo the reading."""
    return params_for("seed", "data") if config["data"]["max_rows"] is not None else params_for("data")


def params_for(*names):
    """The JSON of the params sections a rule reads; editing another section does not rerun it."""
    return sections(config, *names)


def benchmark_file(job):
    """The rule's `benchmark:` file (wall time, peak memory), shown per rule in the report's provenance."""
    return f"results/benchmarks/{job}.tsv"


def trial_params(wildcards):
    """A trial's params: what train reads, plus the variant's overrides and fold (applied by the trial stage)."""
    variant = {"name": wildcards.variant, "overrides": VARIANTS[wildcards.variant], "fold": int(wildcards.fold) if "fold" in wildcards.keys() else None}
    return json.dumps({**json.loads(params_for("seed", "data", "model", "train")), "variant": variant}, sort_keys=True)


def per_trial(single, per_fold):
    """One path per sweep job: `single` per variant, or `per_fold` per variant and fold with cross-validation."""
    if not FOLDS:
        return expand(single, variant=VARIANTS)
    return expand(per_fold, variant=VARIANTS, fold=FOLDS)


def sweep_inputs():
    """The selection (and, without folds, every variant's run, the winner's reused) as train's inputs; none without a sweep."""
    if not SWEEP:
        return {}
    inputs = {"selection": rules.select.output.selection}
    if not FOLDS:
        inputs["trials"] = expand(rules.trial.output.best, variant=VARIANTS)
    return inputs


def train_gpus():
    """GPUs a training job (train, trial, cv_fold) asks the scheduler for, only when params ask for a GPU:
    train.devices when it is a count, else 1. `auto` asks for none (see workflow/profiles/slurm)."""
    train = config["train"]
    if train["accelerator"] not in ("gpu", "cuda"):
        return 0
    return train["devices"] if isinstance(train["devices"], int) and train["devices"] > 0 else 1


# What a job asks the scheduler for, by kind of job (a profile may still override a rule: workflow/profiles/slurm).
RESOURCES = {
    "small": {"mem_mb": 1000},
    "data": {"mem_mb": 2000},
    "inference": {"mem_mb": 4000},
    "training": {"mem_mb": 6000, "runtime": 120, "gpu": train_gpus()},
}


def timings():
    """The benchmark file of every job the report describes: each rule before it (the sweep's only with a sweep)."""
    plain = [rule for rule in workflow.rules if rule.benchmark is not None and not rule.wildcard_names and rule.name != "report"]
    files = [str(rule.benchmark) for rule in plain if rule.name != "select" or SWEEP]
    if SWEEP:
        files += per_trial(str(rules.trial.benchmark), str(rules.cv_fold.benchmark))
    return files
