# Shared helpers: validate params once, before any job runs; build every rule's stage command from the rule's
# own input/output (paths are written once, in the rule); compute each rule's code inputs from the imports.
import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from tunepipe.cluster import memory_request
from tunepipe.config import sections
from tunepipe.errors import ParamsError
from tunepipe.modalities import get_modality
from tunepipe.sources import stage_code
from tunepipe.stages.harness import SKIP_MARKER
from tunepipe.steps import skipped_steps
from tunepipe.tasks import task_of
from tunepipe.search import round_sizes, space_json
from tunepipe.sweep import NAME_PATTERN, expand_variants, fold_indices, search_space, sweep_enabled, validate_run_params

try:
    config.update(validate_run_params(config))
except ParamsError as error:
    raise WorkflowError(str(error)) from None

# Sweep variants and cross-validation folds (workflow/rules/sweep.smk); none of either: the DAG has no sweep jobs.
SWEEP = sweep_enabled(config)
VARIANTS = {variant.name: variant.overrides for variant in expand_variants(config)}
FOLDS = fold_indices(config)
# What is predicted (tunepipe.tasks): one label, a label set, a number. Rules read it from params; evaluate's files are the task's.
TASK = task_of(config)
# Optional steps these params leave out, with the reason (tunepipe.steps): the `skip` rule (workflow/rules/skip.smk)
# writes results/<step>/skipped.json for each instead of its outputs, and the report says why it did not run.
SKIPPED = skipped_steps(config)
# The distill rule runs when it is on and the modality can make a student (texts); image runs leave it out.
DISTILL = "distill" not in SKIPPED
# sweep.method tpe: VARIANTS is empty; each round's `ask` checkpoint names its trials (results/sweep/round<k>/asked.json).
TPE = config["sweep"]["method"] == "tpe"
ROUNDS = round_sizes(config["sweep"]["samples"], config["sweep"]["parallel"]) if TPE else []
# The ensemble rule runs with a sweep without folds (each variant keeps its best.ckpt) of two variants or more and
# ensemble.top_k >= 2; a cross-validated sweep keeps no checkpoint to average, so it has none.
ENSEMBLE = SWEEP and not FOLDS and min(config["ensemble"]["top_k"], config["sweep"]["samples"] if TPE else len(VARIANTS)) >= 2


wildcard_constraints:
    variant=NAME_PATTERN,
    fold=r"\d+",
    round=r"\d+",


# Jobs run `python -m tunepipe.stages...`: make that the interpreter Snakemake itself runs in, so
# `.venv/bin/snakemake` works without activating the venv (--use-conda jobs put their env first).
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def stage_command(stage, tasks=False):
    """The shell line of a rule: its stage module with the rule's params, threads and files; output also to its log.

    `tasks`: a training rule, which with several processes (train.devices x train.num_nodes > 1) starts them with srun
    inside a SLURM job of that many tasks (slurm_tasks); anywhere else (no SLURM, or a one-task job) the command is
    plain and Lightning starts the other processes itself."""
    return f"{task_launcher() if tasks else ''}python -m tunepipe.stages.{stage} --params {{params.cfg:q}} --threads {{threads}} {{params.files}} 2>&1 | tee {{log}}"


def task_launcher():
    """`srun` with the job's task layout, inside a SLURM job (SLURM_JOB_ID), for a training of several processes; "" else.

    Every option is explicit: the plugin's job step hands the rule's shell no SLURM_* variable but the job id.
    `--mem=0`: each task may use the whole job's memory on its node."""
    if training_processes() == 1:
        return ""
    train = config["train"]
    gpus = f" --gpus-per-node={train_gpus()}" if train_gpus() else ""
    srun = (f"srun --kill-on-bad-exit=1 --nodes={train['num_nodes']} --ntasks={training_processes()} "
            f"--ntasks-per-node={training_processes() // train['num_nodes']} --cpus-per-task={{resources.cpus_per_task}} --mem=0{gpus}")
    return f'$([ -n "${{{{SLURM_JOB_ID:-}}}}" ] && echo {srun}) '


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
    return params_for("seed", "task", "data") if config["data"]["max_rows"] is not None else params_for("task", "data")


def params_for(*names):
    """The JSON of the params sections a rule reads; editing another section does not rerun it."""
    return sections(config, *names)


def benchmark_file(job):
    """The rule's `benchmark:` file (wall time, peak memory), shown per rule in the report's provenance."""
    return f"results/benchmarks/{job}.tsv"


def trial_params(wildcards, input):
    """A trial's params: what train reads, plus the variant's overrides and fold (applied by the trial stage).

    A tpe trial's overrides come from the round that asked it, with its round and (after round 0) the pruning rule."""
    variant = {"name": wildcards.variant, "fold": int(wildcards.fold) if "fold" in wildcards.keys() else None}
    if TPE:
        asked = json.loads(Path(input.asked).read_text())
        variant["overrides"] = next(trial["overrides"] for trial in asked["trials"] if trial["name"] == wildcards.variant)
        sweep = config["sweep"]
        variant["round"] = asked["round"]
        variant["pruning"] = ({"metric": sweep["metric"], "mode": sweep["mode"], "warmup_epochs": sweep["pruning_warmup_epochs"]}
                              if sweep["pruning"] == "median" and asked["round"] > 0 else None)
    else:
        variant["overrides"] = VARIANTS[wildcards.variant]
    return json.dumps({**json.loads(params_for("seed", "task", "data", "model", "train")), "variant": variant}, sort_keys=True)


def asked_trials(round_index):
    """The variant names round k asked (its checkpoint must have run: Snakemake runs it first when it has not).

    A job step on a cluster node (SLURM) builds a DAG of its own job alone, with no checkpoint job to resolve: the
    main process submitted it once its rounds were asked, so there it reads the round's file as it is."""
    if workflow.is_main_process:
        checkpoints.ask.get(round=str(round_index))
    asked = expand(rules.ask.output.asked, round=round_index)[0]
    return [trial["name"] for trial in json.loads(Path(asked).read_text())["trials"]]


def tpe_files(pattern, rounds=None):
    """`pattern` for every trial of the first `rounds` rounds (all of them by default), in round order."""
    return [pattern.format(variant=name) for k in range(len(ROUNDS) if rounds is None else rounds) for name in asked_trials(k)]


def tpe_round_of(variant):
    for k in range(len(ROUNDS)):
        if variant in asked_trials(k):
            return k
    raise WorkflowError(f"results/sweep/{variant}: no round of the tpe sweep asked for this variant (see results/sweep/round*/asked.json).")


def ask_inputs(wildcards):
    """Round k's `ask` reads every earlier round: what it asked, and its trials' summaries and histories."""
    k = int(wildcards.round)
    return {"rounds": expand(rules.ask.output.asked, round=range(k)), "summaries": tpe_files(rules.trial.output.summary, k),
            "histories": tpe_files(rules.trial.output.history, k)}


def ask_params(wildcards):
    """What round k's asking depends on: the checked space, seed, parallel, metric/mode and how many it asks
    (not sweep.samples: raising it adds rounds and leaves the earlier ones as they are)."""
    k = int(wildcards.round)
    sweep = {key: value for key, value in config["sweep"].items() if key != "samples"}
    return json.dumps({"sweep": {**sweep, "parameters": space_json(search_space(config))}, "round": k, "count": ROUNDS[k]}, sort_keys=True)


def trial_round_inputs(wildcards):
    """A tpe trial's round (`asked`) and, with median pruning, every earlier round's history; nothing for grid/random."""
    if not TPE:
        return {}
    k = tpe_round_of(wildcards.variant)
    earlier = tpe_files(rules.trial.output.history, k) if config["sweep"]["pruning"] == "median" else []
    return {"asked": expand(rules.ask.output.asked, round=k)[0], "earlier": earlier}


def per_trial(single, per_fold):
    """One path per sweep job: `single` per variant, or `per_fold` per variant and fold with cross-validation.

    tpe: a function of the checkpoints (the variants are known once their rounds have been asked)."""
    if TPE:
        return lambda wildcards: tpe_files(single)
    if not FOLDS:
        return expand(single, variant=VARIANTS)
    return expand(per_fold, variant=VARIANTS, fold=FOLDS)


def sweep_inputs():
    """The selection (and, without folds, every variant's run, the winner's reused) as train's inputs; none without a sweep."""
    if not SWEEP:
        return {}
    inputs = {"selection": rules.select.output.selection}
    if not FOLDS:
        inputs["trials"] = per_trial(rules.trial.output.best, None)
    return inputs


def unless_skipped(step, inputs):
    """A rule's inputs from an optional step: `inputs` when the step runs, none when these params leave it out."""
    return {} if step in SKIPPED else inputs


def skip_markers():
    """The skipped.json of every optional step these params leave out (the report lists them with their reasons)."""
    return expand(rules.skip.output.marker, step=sorted(SKIPPED))


def task_outputs(folder):
    """The task's own files of evaluate (`Task.evaluate_files`: single_label's confusion, per_class, roc, pr, ...) under `folder`."""
    return {key: f"{folder}/{name}" for key, name in TASK.evaluate_files.items()}


def validation_input():
    """The validation split as evaluate's input when the task decides something on it (multi_label's thresholds); else none."""
    return {"val": rules.split.output.val} if TASK.decides_on_validation else {}


def decision_input():
    """evaluate's decision.json (multi_label's thresholds) as an input of the rules that score answers; none when the task
    decides nothing on validation."""
    return {"decision": rules.evaluate.output.decision} if TASK.decides_on_validation else {}


def distill_inputs():
    """The distilled student as prune's input when `distill.enabled` and the modality can make one (texts); else none."""
    return {"student": rules.distill.output.student} if DISTILL else {}


def ensemble_inputs():
    """The sweep's top-k ensemble as prune's input when the ensemble rule runs (ENSEMBLE); else none."""
    return {"ensemble": rules.ensemble.output.model} if ENSEMBLE else {}


def training_processes():
    """Training processes per job: one per device (train.devices when a count) on each of train.num_nodes machines."""
    train = config["train"]
    return (train["devices"] if isinstance(train["devices"], int) else 1) * train["num_nodes"]


def _gpus_per_process():
    """TUNEPIPE_SLURM_GPUS (default 1): GPUs per training process that a training job asks for with `accelerator: auto`;
    0 for a cluster without GPUs. An environment variable, not a param: where a job runs never makes results stale."""
    value = os.environ.get("TUNEPIPE_SLURM_GPUS", "1")
    if value not in ("0", "1"):
        raise WorkflowError(f"TUNEPIPE_SLURM_GPUS is {value!r}: set 1 (training jobs ask for a GPU per process, the default) or 0 (a CPU-only cluster).")
    return int(value)


def train_gpus():
    """GPUs a training job (train, trial, cv_fold) asks the scheduler for, per machine: one per process (train.devices
    when a count, else 1), unless `accelerator: cpu`; with `auto` unless TUNEPIPE_SLURM_GPUS=0 (a CPU-only cluster).
    `auto` then trains on the GPU it gets, or on the CPU where CUDA sees none. Locally nothing is limited by it."""
    train = config["train"]
    if train["accelerator"] == "cpu" or (train["accelerator"] == "auto" and not _gpus_per_process()):
        return 0
    return training_processes() // train["num_nodes"]


def slurm_tasks():
    """A training job of several processes as one SLURM job with one task per process, which the rule's srun starts
    (stage_command) and Lightning's SLURMEnvironment ranks (training.cluster_environment): sbatch --nodes=<num_nodes>
    --ntasks-per-node=<devices> --cpus-per-task=<threads / devices> and, with GPUs, --gpus-per-node=<devices> (every
    rank sees its node's GPUs, as Lightning expects). `mpi` tells the plugin not to wrap the job in `srun -n1`.
    One process: the plain one-task job (--gpus=N from `gpu`)."""
    train = config["train"]
    if training_processes() == 1:
        return {"gpu": train_gpus()}
    per_node = training_processes() // train["num_nodes"]
    geometry = {"tasks_per_node": per_node} if per_node > 1 else {"tasks": train["num_nodes"]}
    gpus = {"slurm_extra": f"--gpus-per-node={train_gpus()}"} if train_gpus() else {}
    return {"mpi": "srun", "nodes": train["num_nodes"], **geometry, "cpus_per_task": lambda wildcards, threads: max(1, threads // per_node), **gpus}


# What a job asks the scheduler for, by kind of job (a profile may still set a rule's: workflow/profiles/slurm).
# Memory (sbatch --mem) is a base plus MB per MiB of the rows the job reads (its JSONL row files; prepare: the user's
# dataset), times the attempt (tunepipe.cluster.memory_request). Measured (benchmarks/README.md, "Scaling": bench_scale,
# each rule's stage on 100k and 1M synthetic texts, peak RSS): the data rules grow by 2.0 (augment) to 7.7 (clean) MiB
# per MiB of rows read and start from 170-540 MiB; training's tokenised rows by 2.8 MiB per MiB. The default run (MiniLM,
# a 4,000-row sample) peaked at 0.53 GB (baseline), 1.7 GB (train, export), 0.7-1.4 GB (evaluate, robustness, explain,
# prune, distill), 0.3 GB (report): results/benchmarks/*.tsv. Inference rules were not measured at scale; they tokenise
# their rows as training does and keep a few values a row, hence the data rules' 10. Images are decoded into memory
# (3 x model.image_size^2 bytes a row), which a row file's size does not show: set mem_mb in the profile for a big image run.
RESOURCES = {
    "small": {"mem_mb": memory_request(500, 10)},
    "data": {"mem_mb": memory_request(800, 10)},
    "inference": {"mem_mb": memory_request(2500, 10)},
    "training": {"mem_mb": memory_request(2500, 5), "runtime": 120, **slurm_tasks()},
    # a training of one process whatever train.devices says (distill): one task, and a GPU when training jobs get one
    "training_single": {"mem_mb": memory_request(2500, 5), "runtime": 120, "gpu": min(1, train_gpus())},
}


# Submitting to SLURM: first check every job against what the cluster's partitions and nodes can give (sinfo/scontrol).
# SLURM would accept a job no node can run and keep it pending for ever while Snakemake waits in silence.
# SIGTERM (a closed login session, `timeout`, `kill`) then ends the run as Ctrl-C does: its SLURM jobs are cancelled
# and Snakemake exits. Snakemake's own SIGTERM handling waits for every running job to finish, hours for a training.
onstart:
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        import signal

        from tunepipe.cluster import UnrunnableJob, check_jobs

        try:
            check_jobs(workflow.dag.needrun_jobs())
        except UnrunnableJob as error:
            raise WorkflowError("\n".join(f"SLURM could never run this job: {line}" for line in str(error).splitlines())) from None
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def timings():
    """The benchmark file of every job the report describes: each rule before it (the sweep's only with a sweep)."""
    plain = [rule for rule in workflow.rules if rule.benchmark is not None and not rule.wildcard_names and rule.name != "report"]
    files = [str(rule.benchmark) for rule in plain if (rule.name != "select" or SWEEP) and rule.name not in SKIPPED
             and (rule.name != "ensemble" or ENSEMBLE)]
    if TPE:  # the rounds' jobs are known once they have been asked
        return lambda wildcards: files + expand(str(rules.ask.benchmark), round=range(len(ROUNDS))) + tpe_files(str(rules.trial.benchmark))
    if SWEEP:
        files += per_trial(str(rules.trial.benchmark), str(rules.cv_fold.benchmark))
    return files
