"""Fine-tune a pretrained encoder on labelled rows (any modality) with Lightning: the library behind train and trial.

The run is seeded and deterministic; the best checkpoint (on a validation metric) is kept; a run that is
killed resumes from `<work_dir>/last.ckpt` when re-run with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from lightning_fabric.plugins.environments import ClusterEnvironment, LightningEnvironment, SLURMEnvironment
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from tunepipe.data.datamodule import ClassificationDataModule
from tunepipe.data_aware import resolve_max_epochs, resolve_val_check_interval
from tunepipe.errors import ParamsError, TunepipeError
from tunepipe.io import rows_digest, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.models.backbone import base_identity, check_quantize_base
from tunepipe.models.checkpointing import AdapterCheckpoint, MidEpochCheckpoint, per_rank
from tunepipe.models.efficiency import compile_model, resolve_batch_size
from tunepipe.models.lightning_module import ClassifierModule, DivergenceGuard, ProgressLog, RNGState, SilentProfiler
from tunepipe.models.loggers import STEP_COLUMNS, StepCurves, make_loggers
from tunepipe.tasks import DEFAULT as DEFAULT_TASK
from tunepipe.tasks import get_task, task_of

log = logging.getLogger("tunepipe.train")

def history_columns(task_name: str) -> list[str]:
    """results/train/history.csv's columns: the losses and the task's validation metrics per epoch."""
    return ["epoch", "train_loss", "val_loss", *(f"val_{name}" for name in get_task(task_name).val_metrics), "seconds"]



class TrainingInterrupted(TunepipeError):
    """Training stopped early (signal, Ctrl-C); the last epoch's checkpoint is kept for resuming."""


class RankLost(TunepipeError):
    """Another training process of a DDP run is gone (killed, or its node lost): the run stops and resumes when re-run."""


# How gloo reports a peer that is gone: "Read error [10.0.0.12]:36562: Connection reset by peer", "Connection closed
# by peer [10.0.0.12]:6380", a broken pipe on write. The bracketed address is the peer's.
_PEER_GONE = re.compile(r"Connection (?:reset|closed) by peer|Broken pipe|Socket closed")
_PEER_ADDRESS = re.compile(r"\[([0-9A-Fa-f.:]+)\]:\d+")


def lost_rank(error: BaseException, ranks: list[tuple[str, str]], rank: int) -> str | None:
    """Which rank `error` (a failed collective) says is gone, as "rank 1 on tpnode2 (10.0.0.12)", from the peer address
    gloo names and each rank's (host, address); "another rank" when the address is no rank's; None: not a lost peer."""
    text = str(error)
    if not _PEER_GONE.search(text):
        return None
    address = _PEER_ADDRESS.search(text)
    named = [f"rank {index} on {host} ({ip})" for index, (host, ip) in enumerate(ranks)
             if index != rank and address and ip == address.group(1)]
    return " or ".join(named) or (f"the rank at {address.group(1)}" if address else "another rank")


@dataclass(frozen=True)
class Hardware:
    accelerator: str
    devices: int | str
    precision: str
    deterministic: bool | str
    strategy: str = "auto"
    num_nodes: int = 1

    @property
    def processes(self) -> int:
        """Training processes in all (one per device per node): the world size Lightning expects."""
        if isinstance(self.devices, int):
            per_node = max(1, self.devices)
        else:  # `auto`: every visible GPU (SLURM shows a job only its own), one process on the CPU
            per_node = max(1, torch.cuda.device_count()) if self.accelerator == "gpu" else 1
        return per_node * self.num_nodes


@dataclass
class TrainResult:
    best_checkpoint: Path
    history: list[dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)  # per optimizer step: models/loggers.py STEP_COLUMNS


def resolve_hardware(train_cfg: dict[str, Any]) -> Hardware:
    """`auto` settings made concrete: a GPU when present, mixed precision only where it helps (GPU)."""
    wanted = train_cfg["accelerator"]
    on_gpu = wanted in ("gpu", "cuda") or (wanted == "auto" and torch.cuda.is_available())
    if wanted in ("gpu", "cuda") and not torch.cuda.is_available():
        raise TunepipeError("train.accelerator asks for a GPU but none is visible (torch.cuda.is_available() is False); use auto or cpu.")
    accelerator = "gpu" if on_gpu else ("cpu" if wanted == "auto" else wanted)
    precision = train_cfg["precision"]
    if precision == "auto":
        precision = ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed") if on_gpu else "32-true"
    devices = train_cfg["devices"]
    if not on_gpu and not isinstance(devices, int):
        devices = 1  # `auto` on the CPU: one process (it already uses every thread the job has)
    count = devices if isinstance(devices, int) else torch.cuda.device_count()
    # Several devices: one process per device with DistributedDataParallel, on CPUs too (gloo; each process
    # takes its share of the job's threads, see process_threads). Lightning starts the other processes by
    # re-running this same command (the `ddp` subprocess launcher; fit() keeps them off the stage's files),
    # or SLURM starts them as tasks of the job (cluster_environment). Not `ddp_spawn`: it would pickle the
    # module and datasets to its workers and bring their results back, for nothing the launcher lacks.
    num_nodes = int(train_cfg.get("num_nodes", 1))
    strategy = "ddp" if count > 1 or num_nodes > 1 else "auto"
    if train_cfg.get("strategy") == "fsdp":
        if not on_gpu:
            raise ParamsError("train.strategy fsdp shards a model over CUDA GPUs and none is used here; set train.strategy: auto (or ddp).")
        strategy = "fsdp"
    # Some CUDA kernels have no deterministic version: warn there instead of failing.
    return Hardware(accelerator, devices, precision, "warn" if on_gpu else True, strategy, num_nodes)


def host_address() -> str:
    """The address this host's name resolves to: the one gloo binds, unless GLOO_SOCKET_IFNAME names an interface."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return ""


def process_threads(threads: int, hardware: Hardware) -> int:
    """CPU threads for each training process: the job's threads shared among the processes of one node."""
    per_node = hardware.processes // hardware.num_nodes
    return max(1, threads // per_node)


def cluster_environment(hardware: Hardware) -> ClusterEnvironment:
    """Who starts the training processes and sets their ranks: SLURM, when it started them all; else Lightning.

    The slurm profile runs a training job of one process per device (`train.devices` x `train.num_nodes` > 1) as a
    job of that many tasks, started by `srun` (workflow/rules/common.smk, slurm_tasks): SLURMEnvironment then takes
    each process's rank from SLURM_PROCID. Any other job (one task: `srun -n1`, or no SLURM at all) is one process
    that Lightning manages itself, starting the other ranks when devices > 1. Left to detect SLURM there, Lightning
    would take the world size from SLURM_NTASKS (1) while `devices` may name every allocated GPU, and wait for ranks
    that srun never starts. A step whose task count differs from what the params ask for stops with an error
    rather than hang. Either way no SIGUSR1 auto-requeue by Lightning: requeueing is SLURM's (`sbatch --requeue`),
    and a requeued or re-run job resumes from last.ckpt, like any interrupted run.
    """
    # The val metrics are logged already reduced over the ranks (torchmetrics syncs on compute): no second sync.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val_")
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1) if "SLURM_PROCID" in os.environ else 1
    if tasks > 1:
        nodes = int(os.environ.get("SLURM_STEP_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
        per_node = hardware.processes // hardware.num_nodes
        if tasks != hardware.processes or nodes != hardware.num_nodes:
            raise TunepipeError(
                f"SLURM started {tasks} tasks on {nodes} node(s), but train.devices ({per_node}) x train.num_nodes "
                f"({hardware.num_nodes}) asks for {hardware.processes} processes on {hardware.num_nodes} node(s); "
                "submit the job with the slurm profile (it sizes --nodes/--ntasks-per-node from those params), or change them to match."
            )
        return SLURMEnvironment(auto_requeue=False)
    if hardware.num_nodes > 1:
        raise TunepipeError(
            f"train.num_nodes is {hardware.num_nodes}, but this is not a SLURM job step of {hardware.processes} tasks: "
            "training on several machines needs the slurm profile (snakemake --profile workflow/profiles/slurm); set train.num_nodes: 1 otherwise."
        )
    # Lightning still probes for SLURM when a run starts from scratch and warns, wherever srun is installed,
    # that it is not used: by design here.
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")
    return LightningEnvironment()


def fsdp_strategy(model: torch.nn.Module):
    """Lightning's FullyShardedDataParallel, one unit per backbone layer; the parameters' own names kept, so an adapter's
    frozen and trainable weights can share a unit and its checkpoint keeps only the trainable ones. Untested without GPUs."""
    from pytorch_lightning.strategies import FSDPStrategy

    _, layers = model.layers()
    return FSDPStrategy(auto_wrap_policy={type(layer) for layer in layers}, use_orig_params=True, state_dict_type="full")


def training_strategy(hardware: Hardware, model: torch.nn.Module):
    if hardware.strategy == "ddp":
        return ddp_strategy(hardware)
    if hardware.strategy == "fsdp":
        return fsdp_strategy(model)
    return hardware.strategy


def prepare_backbone(classifier: torch.nn.Module, model_cfg: dict[str, Any], train_cfg: dict[str, Any]) -> dict[str, Any]:
    """What makes a large backbone trainable, in place: gradient checkpointing, then the adapter (on a quantized base,
    prepared for it); returns the parameter counts for the log, the summary and the report."""
    from tunepipe.models.backbone import AdapterSettings, add_adapter, enable_gradient_checkpointing

    if train_cfg.get("gradient_checkpointing"):
        enable_gradient_checkpointing(classifier)
    adapter = AdapterSettings.from_params(model_cfg.get("adapter"))
    if adapter.enabled:
        if model_cfg.get("quantize_base", "none") != "none":
            from peft import prepare_model_for_kbit_training

            classifier.encoder = prepare_model_for_kbit_training(classifier.encoder, use_gradient_checkpointing=bool(train_cfg.get("gradient_checkpointing")),
                                                                 gradient_checkpointing_kwargs={"use_reentrant": False})
        add_adapter(classifier, adapter)
    total = sum(p.numel() for p in classifier.parameters())
    trainable = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
    return {"adapter": adapter.method, "trainable_parameters": trainable, "trainable_share": round(trainable / total, 6) if total else None}


def ddp_strategy(hardware: Hardware):
    """DistributedDataParallel as we need it: gloo on CPUs (NCCL on GPUs); unused parameters allowed, because a
    text encoder computes its pooler output, which the mean-pooled head never uses (DDP would stop at step 2)."""
    from pytorch_lightning.strategies import DDPStrategy

    return DDPStrategy(find_unused_parameters=True, process_group_backend="gloo" if hardware.accelerator == "cpu" else None)


class RankLog(pl.Callback):
    """One line per process when training starts, so a log shows that every rank trained, where, and on what share;
    and every rank's (host, address), so that a rank that loses another can say which one (`lost_rank`)."""

    def __init__(self) -> None:
        self.ranks: list[tuple[str, str]] = []

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.world_size > 1:
            self.ranks = per_rank((socket.gethostname(), host_address()))
            environment = trainer.strategy.cluster_environment
            where = type(environment).__name__
            if isinstance(environment, SLURMEnvironment):  # several nodes: which one this is, by its host name
                where += (f", SLURM job {os.environ.get('SLURM_JOB_ID')} step {os.environ.get('SLURM_STEP_ID')} task "
                          f"{os.environ.get('SLURM_PROCID')} on {socket.gethostname()}")
            log.info("rank %d of %d (%s): %d training batches per epoch, %d threads", trainer.global_rank, trainer.world_size,
                     where, trainer.num_training_batches, torch.get_num_threads())


class KillSafeCheckpoint(ModelCheckpoint):
    """Writes each checkpoint under a temporary name and renames it into place.

    A job killed while saving (SLURM requeue or preemption: SIGTERM, then SIGKILL after KillWait) keeps the
    previous complete `last.ckpt` to resume from, never a truncated one.
    """

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        super()._save_checkpoint(trainer, partial)
        if trainer.is_global_zero:
            os.replace(partial, filepath)
        self._last_checkpoint_saved = filepath


def linear_probe_head(module: ClassifierModule, data, batch_size: int) -> float:
    """Fit the task's linear model on frozen pooled embeddings (logistic regression; one per label; ridge) and copy it
    into the head; returns its training score (accuracy; micro F1; R2)."""
    from tunepipe.data.datamodule import BucketBatchSampler
    from tunepipe.models.inference import model_inputs

    model = module.model.eval()
    features = np.zeros((len(data), model.head.in_features), dtype=np.float32)
    with torch.inference_mode():
        for indices in BucketBatchSampler(data.lengths(), batch_size, seed=0, shuffle=False):
            batch = data.collate([data[i] for i in indices])
            features[indices] = model.embed(**model_inputs(model, batch)).float().numpy()
    weight, bias, score = module.task.probe_head(features, list(data.labels), module.target_stats, model.head.out_features)
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(np.asarray(weight)).float())
        model.head.bias.copy_(torch.from_numpy(np.asarray(bias)).float())
    model.train()
    return score


def resumes(work_dir: Path, last: Path, run_id: str, rank: int) -> bool:
    """Whether this run goes on from `last` (a killed run of the same data and settings left it), or starts afresh.

    Under DDP every rank asks; only rank 0 touches the work folder (and the stage's outputs). Another rank reads the
    marker first: rank 0 deletes a stale last.ckpt before it writes a new marker."""
    work_dir.mkdir(parents=True, exist_ok=True)
    marker = work_dir / "run.json"
    resume = marker.exists() and _run_id(marker) == run_id and last.exists()
    if not resume and rank == 0:
        for stale in work_dir.glob("*.ckpt"):
            stale.unlink()
        marker.write_text(json.dumps({"run_id": run_id}) + "\n")
    return resume


def _run_id(marker: Path) -> str | None:
    try:
        return json.loads(marker.read_text()).get("run_id")
    except (OSError, ValueError):  # being written by rank 0 (a new run): not this run's
        return None


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def probe_sample(candidates: list[int], cap: int, seed: int) -> list[int]:
    """The rows the linear probe embeds: every candidate, or a seeded sample of `cap` of them (in their order)."""
    if len(candidates) <= cap:
        return candidates
    import random

    return sorted(random.Random(f"probe:{seed}").sample(candidates, cap))


def fit(
    *,
    train_rows: list[dict],
    train_labels: list[int],
    val_rows: list[dict],
    val_labels: list[int],
    label_names: list[str],
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    seed: int,
    work_dir: Path,
    probe_rows: list[int] | None = None,
    callbacks: tuple[pl.Callback, ...] = (),
    modality: str = "text",
    loggers_dir: Path | None = None,
    task: str = DEFAULT_TASK,
) -> TrainResult:
    """Fine-tune and return the best checkpoint's path, the per-epoch history, a summary and the per-step rows.

    With `loggers_dir`, the `train.loggers` (TensorBoard, DVCLive) write their files under it as training goes."""
    from tunepipe import runtime
    from tunepipe.runtime import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    hardware = resolve_hardware(train_cfg)
    check_quantize_base(model_cfg, cuda=hardware.accelerator == "gpu")
    # How often checkpoints are saved is not part of what is trained: changing it still resumes.
    identity = {key: value for key, value in train_cfg.items() if key != "checkpoint_minutes"}
    # The rows by their digest (a file's sha256 when they are read from one): a million rows are not serialised again.
    run_id = fingerprint(modality, task, model_cfg, identity, seed, label_names, rows_digest(train_rows), rows_digest([{"y": train_labels}]),
                         rows_digest(val_rows), rows_digest([{"y": val_labels}]))
    last = work_dir / "last.ckpt"
    environment = cluster_environment(hardware)
    resume = resumes(work_dir, last, run_id, runtime.launch_rank())

    kind, target = get_modality(modality), get_task(task)
    pl.seed_everything(seed, workers=True, verbose=False)
    # From here on the order is the random numbers' order (the head's init, the probe): keep it.
    processor = kind.load_processor(model_cfg)
    # Data-aware defaults (`auto`): the token length from the training texts, the epochs from the steps they give.
    model_cfg, data_aware = kind.resolve_model_cfg(model_cfg, train_rows, processor)
    train_cfg, data_aware["train.batch_size"] = resolve_batch_size(train_cfg, len(train_rows), hardware.accelerator, hardware.processes)
    # each process trains on its shard: the epochs follow from the steps one process takes
    train_cfg, data_aware["train.max_epochs"] = resolve_max_epochs(train_cfg, len(train_rows), hardware.processes)
    train_cfg, data_aware["train.val_check_interval"] = resolve_val_check_interval(train_cfg, len(train_rows), len(val_rows), hardware.processes)
    validate_every = train_cfg["val_check_interval"]  # optimizer steps, or None: at each epoch's end
    for key, facts in data_aware.items():
        log.info("%s %s%s", key, facts["value"], " (auto)" if facts.get("auto") else "")
    if data_aware.get("model.max_length", {}).get("truncated_texts"):
        facts = data_aware["model.max_length"]
        log.info("%d of %d training texts (%.1f%%) are longer than %d tokens and are truncated", facts["truncated_texts"], facts["texts"],
                 100 * facts["truncated_share"], facts["max_length"])
    train_set = kind.encode(train_rows, train_labels, model_cfg, processor)
    val_set = kind.encode(val_rows, val_labels, model_cfg, processor)
    adversarial = (train_cfg.get("adversarial") or {}).get("method", "none") != "none"
    stats = target.target_stats(train_labels)
    classifier = kind.build_classifier(model_cfg, target.output_size(label_names))
    backbone = prepare_backbone(classifier, model_cfg, train_cfg)
    module = ClassifierModule(classifier, model_cfg, train_cfg, label_names, modality,
                              attack_space=kind.attack_space() if adversarial else None, task=target.name, target_stats=stats,
                              loss=target.loss(train_cfg, stats, train_labels))
    adapter_checkpoint = []
    if backbone["adapter"] != "none":
        # The checkpoints keep the adapter, the head and the training state; the frozen base is named, not copied.
        adapter_checkpoint = [AdapterCheckpoint(base_identity(model_cfg["pretrained"]))]
        module.strict_loading = False  # resuming loads the trainable weights over the base just loaded
    log.info("trainable parameters: %d of %d (%.2f%%)%s", backbone["trainable_parameters"], sum(p.numel() for p in classifier.parameters()),
             100 * (backbone["trainable_share"] or 0), f", {backbone['adapter']} adapter" if backbone["adapter"] != "none" else "")
    probe_accuracy = None
    if train_cfg["head_init"] == "linear_probe" and not resume:
        candidates = probe_rows if probe_rows is not None else list(range(len(train_rows)))
        rows = probe_sample(candidates, train_cfg["probe_rows"], seed)
        probe_set = kind.encode([train_rows[i] for i in rows], [train_labels[i] for i in rows], model_cfg, processor)
        log.info("linear probe on %d frozen embeddings to warm-start the head%s", len(probe_set),
                 f" (a sample of {len(candidates)} rows, train.probe_rows)" if len(rows) < len(candidates) else "")
        probe_accuracy = linear_probe_head(module, probe_set, batch_size=64)
        log.info("linear probe training score %.4f", probe_accuracy)
    if train_cfg.get("compile"):
        compile_model(module.model, hardware.accelerator)

    datamodule = ClassificationDataModule(
        train_set, val_set, train_cfg["batch_size"], eval_batch_size=max(64, train_cfg["batch_size"]), seed=seed,
        num_workers=train_cfg["num_workers"], pin_memory=hardware.accelerator == "gpu",
    )
    monitor = train_cfg["monitor"]
    mode = target.val_metrics.get(monitor.removeprefix("val_"), "min")  # val_loss: minimised
    # An adapter's best.ckpt keeps its (small) training state too: Lightning lets callbacks (AdapterCheckpoint) edit full checkpoints only.
    best_ckpt = KillSafeCheckpoint(dirpath=work_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_weights_only=not adapter_checkpoint,
                                   enable_version_counter=False)
    # last.ckpt at each epoch's end, whenever validation runs (mid-epoch states are MidEpochCheckpoint's, with the data position).
    last_ckpt = KillSafeCheckpoint(dirpath=work_dir, filename="last", save_top_k=1, monitor=None, every_n_epochs=1, enable_version_counter=False,
                                   save_on_train_epoch_end=True)
    progress = ProgressLog(train_cfg["log_every_n_steps"], tuple(f"val_{name}" for name in target.val_metrics))
    rank_log = RankLog()
    curves = StepCurves(make_loggers(train_cfg.get("loggers", []), loggers_dir) if loggers_dir else [], loggers_dir, train_cfg["log_every_n_steps"])
    trainer = pl.Trainer(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        strategy=training_strategy(hardware, module.model),
        precision=hardware.precision,
        accumulate_grad_batches=train_cfg["accumulate_grad_batches"],
        max_epochs=train_cfg["max_epochs"],
        max_steps=train_cfg.get("max_steps") or -1,
        # Every N optimizer steps across epochs (Lightning counts batches), or at each epoch's end.
        **({"val_check_interval": validate_every * train_cfg["accumulate_grad_batches"], "check_val_every_n_epoch": None}
           if validate_every is not None else {}),
        deterministic=hardware.deterministic,
        gradient_clip_val=train_cfg["gradient_clip_val"],
        callbacks=[best_ckpt, last_ckpt, EarlyStopping(monitor=monitor, mode=mode, patience=train_cfg["early_stopping_patience"]), RNGState(), DivergenceGuard(train_cfg["log_every_n_steps"], hardware.precision), progress, curves, rank_log, *adapter_checkpoint, *callbacks,
                   MidEpochCheckpoint(last, train_cfg.get("checkpoint_minutes"))],  # last: after every callback has seen the batch
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=work_dir,
        num_nodes=hardware.num_nodes,
        # BucketBatchSampler shards itself by rank (Lightning's DistributedSampler would not shard a batch sampler).
        use_distributed_sampler=False,
        plugins=[environment],
        profiler=SilentProfiler(),
    )
    if resume:
        log.info("resuming from %s", last)
    log.info("training on %s (%s), %d rows, %d epochs max%s, validating %s", hardware.accelerator, hardware.precision, len(train_set), train_cfg["max_epochs"],
             f" or {train_cfg['max_steps']} steps" if train_cfg.get("max_steps") else "",
             f"every {validate_every} steps" if validate_every is not None else "at each epoch's end")
    fit_started = time.perf_counter()
    run_trainer(trainer, module, datamodule, last, resume, rank_log)
    fit_seconds = time.perf_counter() - fit_started
    if trainer.world_size > 1 and not trainer.is_global_zero:
        # DDP (train.devices > 1): Lightning started this process as another rank running the same command.
        # Rank 0 alone writes the stage's outputs; this one ends here, its training done.
        logging.shutdown()
        os._exit(0)
    if trainer.interrupted or trainer.received_sigterm or not best_ckpt.best_model_path:
        raise TrainingInterrupted(f"training stopped before it finished; re-run to resume from {last}.")

    # Epochs trained: a fraction when validation (or max_steps) stopped the run within an epoch.
    epochs_run = len(progress.history) if validate_every is None else round(progress.batches_run / max(1, trainer.num_training_batches), 4)
    best_score = float(best_ckpt.best_model_score) if best_ckpt.best_model_score is not None else float("nan")
    best_epoch = max(
        (row for row in progress.history if monitor in row),
        key=lambda row: row[monitor] if mode == "max" else -row[monitor],
        default={"epoch": epochs_run},
    )["epoch"]
    summary = {
        "best_epoch": best_epoch,
        "monitor": monitor,
        "best_score": round(best_score, 6),
        "epochs_run": epochs_run,
        **({"steps": trainer.global_step, "validations": len(progress.history), "val_check_interval": validate_every}
           if validate_every is not None or train_cfg.get("max_steps") else {}),
        "resumed": resume,
        "device": torch.cuda.get_device_name(0) if hardware.accelerator == "gpu" else "cpu",
        "accelerator": hardware.accelerator,
        "precision": hardware.precision,
        "threads": torch.get_num_threads(),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "fit_seconds": round(fit_seconds, 2),
        "train_rows": len(train_set),
        "val_rows": len(val_set),
        "samples_per_second": round(len(train_set) * epochs_run / fit_seconds, 2) if fit_seconds else None,
        "linear_probe_train_accuracy": probe_accuracy,
        "pretrained": model_cfg["pretrained"],
        "modality": modality,
        "task": target.name,
        "target_stats": stats,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "frozen_parameters": module.frozen,
        **backbone,
        "gradient_checkpointing": bool(train_cfg.get("gradient_checkpointing")),
        "peak_device_memory_mb": peak_device_memory_mb(hardware),
        "adversarial": module.adversarial["method"],
        "strategy": hardware.strategy,
        "data_aware": data_aware,
    }
    return TrainResult(Path(best_ckpt.best_model_path), progress.history, summary, curves.steps)


def run_trainer(trainer: pl.Trainer, module: ClassifierModule, datamodule: pl.LightningDataModule, last: Path, resume: bool,
                rank_log: RankLog) -> None:
    """`trainer.fit`, from `last` when resuming; a signal, or a DDP rank lost, ends it with an error that says so and how
    to resume."""
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)
    except SystemExit as exc:
        # Lightning ends a run this way on Ctrl-C (exit 1) and on SIGTERM (exit 0, which would look like success).
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning leaves Ctrl-C ignored
        raise TrainingInterrupted(f"training was stopped by a signal before it finished; re-run to resume from {last}.") from exc
    except RuntimeError as exc:
        gone = lost_rank(exc, rank_log.ranks, trainer.global_rank) if trainer.world_size > 1 else None
        if gone is None:
            raise
        here = f"rank {trainer.global_rank} on {socket.gethostname()}"
        said = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).splitlines()[0]).split(". ")[0]  # without gloo's source line and advice
        raise RankLost(f"{here} lost {gone} in epoch {trainer.current_epoch + 1}: that process or its node is gone (gloo: {said}). "
                       f"Training stops; re-run to resume from its last checkpoint, {last}.") from exc


def peak_device_memory_mb(hardware: Hardware) -> float:
    """The most memory training held on its device: CUDA's peak allocation on a GPU, else the process's peak RSS."""
    if hardware.accelerator == "gpu":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def train_model(params: dict[str, Any], train_rows: list[dict], val_rows: list[dict], outputs: dict[str, Path], work_dir: Path,
                logger: logging.Logger, threads: int, extra: dict[str, Any] | None = None, loggers_dir: Path | None = None,
                callbacks: tuple[pl.Callback, ...] = ()) -> dict[str, Any]:
    """Fit on the given rows (params: seed, data, model, train); write `history`, `summary` and (when asked)
    `best`, `config` and `steps`; return the summary (with `extra` merged in). `loggers_dir`, `callbacks`: see `fit`."""
    from tunepipe import runtime

    runtime.torch_threads(process_threads(threads, resolve_hardware(params["train"])))
    task = task_of(params)
    names = task.names(params["data"]["labels"], params["data"], train_rows, val_rows)
    result = fit(
        train_rows=train_rows,
        train_labels=task.encode(train_rows, names, "training rows"),
        val_rows=val_rows,
        val_labels=task.encode(val_rows, names, "validation rows"),
        modality=params["data"]["modality"],
        task=task.name,
        label_names=names,
        model_cfg=params["model"],
        train_cfg=params["train"],
        seed=params["seed"],
        work_dir=work_dir,
        probe_rows=[i for i, row in enumerate(train_rows) if not row.get("augmented")],
        loggers_dir=loggers_dir,
        callbacks=callbacks,
    )
    best_row = next((row for row in result.history if row["epoch"] == result.summary["best_epoch"]), {})
    metrics = {key: best_row[key] for key in (*(f"val_{name}" for name in task.val_metrics), "val_loss") if key in best_row}
    summary = {**result.summary, "metrics_at_best_epoch": metrics, **(extra or {})}
    if "best" in outputs:
        shutil.copyfile(result.best_checkpoint, outputs["best"])
    write_csv(outputs["history"], result.history, history_columns(task.name))
    if "steps" in outputs:
        write_csv(outputs["steps"], result.steps, STEP_COLUMNS)
    if "config" in outputs:
        write_config(outputs["config"], params, names, summary)
    write_json(outputs["summary"], summary)
    logger.info("best %s %.4f at epoch %s", summary["monitor"], summary["best_score"], summary["best_epoch"])
    return summary


def write_config(path: Path, params: dict[str, Any], names: list[str], summary: dict[str, Any]) -> None:
    """The resolved training config saved beside the checkpoint: what was trained, how, and on which hardware."""
    resolved = {"seed": params["seed"], "task": task_of(params).name, "modality": params["data"]["modality"], "label_names": names,
                "model": params["model"], "train": params["train"],
                "resolved": {k: summary[k] for k in ("accelerator", "precision", "device", "threads")}}
    # the data-aware `auto` values as training resolved them (tunepipe.data_aware)
    for key, facts in summary.get("data_aware", {}).items():
        resolved["resolved"][key] = facts["value"]
    if "variant" in summary:
        resolved["variant"] = {"name": summary["variant"], "overrides": summary["overrides"]}
    path.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
