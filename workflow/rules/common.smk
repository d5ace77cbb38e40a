# Shared helpers: validate params once, before any job runs, and describe each rule's code inputs.
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from tunepipe.config import sections, validate_params
from tunepipe.errors import ParamsError
from tunepipe.sweep import NAME_PATTERN, expand_variants, fold_indices, sweep_enabled

try:
    config.update(validate_params(config))
except ParamsError as error:
    raise WorkflowError(str(error)) from None

# Sweep variants and cross-validation folds (workflow/rules/sweep.smk); none of either: the DAG has no sweep jobs.
SWEEP = sweep_enabled(config)
VARIANTS = {variant.name: variant.overrides for variant in expand_variants(config)}
FOLDS = fold_indices(config)


wildcard_constraints:
    variant=NAME_PATTERN,
    fold=r"\d+",

SRC = Path("src/tunepipe")

# Jobs run `python -m tunepipe.stages...`: make that the interpreter Snakemake itself runs in, so
# `.venv/bin/snakemake` works without activating the venv (--use-conda jobs put their env first).
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def code(*parts):
    """The source files (and templates) a job runs, as inputs, so a code change reruns it (judged by content)."""
    files = []
    for part in ("__init__.py", "errors.py", "io.py", "runtime.py", "stages/harness.py") + parts:
        path = SRC / part
        if path.is_dir():
            files.extend(sorted(str(p) for p in path.rglob("*") if p.suffix in (".py", ".j2")))
        else:
            files.append(str(path))
    return files


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


def timing(rule_name):
    """The rule's `benchmark:` file (wall time, peak memory), shown per rule in the report's provenance."""
    return f"results/benchmarks/{rule_name}.tsv"


def trial_params(wildcards):
    """A trial's params: what train reads, plus the variant's overrides and fold (applied by the trial stage)."""
    variant = {"name": wildcards.variant, "overrides": VARIANTS[wildcards.variant], "fold": int(wildcards.fold) if "fold" in wildcards.keys() else None}
    return json.dumps({**json.loads(params_for("seed", "data", "model", "train")), "variant": variant}, sort_keys=True)


def per_trial(single, per_fold):
    """One path per sweep job: `single` per variant, or `per_fold` per variant and fold with cross-validation."""
    if not FOLDS:
        return expand(single, variant=VARIANTS)
    return expand(per_fold, variant=VARIANTS, fold=FOLDS)


def trial_summaries():
    """Every trial's summary: one per variant, or one per variant and fold with cross-validation."""
    return per_trial("results/sweep/{variant}/summary.json", "results/sweep/{variant}/fold{fold}/summary.json")


def repeated(key, paths):
    """`--in KEY=PATH` once per path, for a stage input given several times."""
    return " ".join(f"--in {key}={path}" for path in paths)


def sweep_inputs():
    """The selection (and, without folds, every variant's run, the winner's reused) as train's inputs; none without a sweep."""
    if not SWEEP:
        return {}
    inputs = {"selection": "results/select/selection.json"}
    if not FOLDS:
        inputs["trials"] = expand("results/sweep/{variant}/best.ckpt", variant=VARIANTS)
    return inputs


def train_sweep_args(input):
    """train's extra `--in` arguments with a sweep: the selection and (without folds) every variant's run."""
    if not SWEEP:
        return ""
    return " ".join(["", f"--in selection={input.selection}", repeated("trial", input.get("trials", []))]).rstrip()


def train_gpus():
    """GPUs a training job (train, trial, cv_fold) asks the scheduler for, only when params ask for a GPU:
    train.devices when it is a count, else 1. `auto` asks for none (see workflow/profiles/slurm)."""
    train = config["train"]
    if train["accelerator"] not in ("gpu", "cuda"):
        return 0
    return train["devices"] if isinstance(train["devices"], int) and train["devices"] > 0 else 1


def timings():
    """The benchmark files of every rule the report describes (the sweep's jobs only when a sweep runs)."""
    files = [timing(name) for name in ("prepare", "clean", "split", "augment", "train", "baseline", "evaluate", "prune", "export")]
    if SWEEP:
        files += per_trial(timing("trial/{variant}"), timing("cv_fold/{variant}/fold{fold}")) + [timing("select")]
    return files
