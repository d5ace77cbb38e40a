"""Fine-tune a pretrained encoder on labelled rows (any modality) with Lightning: the library behind train and trial.

The run is seeded and deterministic; the best checkpoint (on a validation metric) is kept; a run that is
killed resumes from `<work_dir>/last.ckpt` when re-run with the same settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from lightning_fabric.plugins.environments import LightningEnvironment
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

from tunepipe.data.datamodule import ClassificationDataModule
from tunepipe.data.labels import encode, label_names as run_label_names
from tunepipe.errors import TunepipeError
from tunepipe.io import write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.models.lightning_module import ClassifierModule, DivergenceGuard, ProgressLog, RNGState

log = logging.getLogger("tunepipe.train")

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_accuracy", "val_f1_macro", "seconds"]


class TrainingInterrupted(TunepipeError):
    """Training stopped early (signal, Ctrl-C); the last epoch's checkpoint is kept for resuming."""


@dataclass(frozen=True)
class Hardware:
    accelerator: str
    devices: int | str
    precision: str
    deterministic: bool | str
    strategy: str = "auto"


@dataclass
class TrainResult:
    best_checkpoint: Path
    history: list[dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)


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
    devices = train_cfg["devices"] if on_gpu else 1
    count = devices if isinstance(devices, int) else (torch.cuda.device_count() if on_gpu else 1)
    # Several devices: one process per device with DistributedDataParallel (Lightning launches the others).
    strategy = "ddp" if count > 1 else "auto"
    # Some CUDA kernels have no deterministic version: warn there instead of failing.
    return Hardware(accelerator, devices, precision, "warn" if on_gpu else True, strategy)


def cluster_environment() -> LightningEnvironment:
    """Training is one process that Lightning manages itself, also inside a SLURM job.

    The slurm profile runs each job as a one-task step (`srun -n1`). Left to detect it, Lightning would
    pick SLURMEnvironment: world size from SLURM_NTASKS (1) while `devices` may name every allocated GPU,
    with the other ranks expected from srun (which never starts them), and auto-requeue on SIGUSR1 (a
    mid-epoch checkpoint that does not resume exactly). Here requeueing is SLURM's (`sbatch --requeue`);
    a requeued or re-run job resumes from the epoch-end last.ckpt, like any interrupted run.
    """
    # Lightning still probes for SLURM when a run starts from scratch and warns, wherever srun is installed,
    # that it is not used: by design here.
    warnings.filterwarnings("ignore", message="The `srun` command is available on your system but is not used")
    return LightningEnvironment()


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
    """Fit a logistic regression on frozen pooled embeddings and copy it into the head; returns its train accuracy."""
    from sklearn.linear_model import LogisticRegression

    from tunepipe.data.datamodule import BucketBatchSampler
    from tunepipe.models.inference import model_inputs

    model = module.model.eval()
    features = np.zeros((len(data), model.head.in_features), dtype=np.float32)
    with torch.inference_mode():
        for indices in BucketBatchSampler(data.lengths(), batch_size, seed=0, shuffle=False):
            batch = data.collate([data[i] for i in indices])
            features[indices] = model.embed(**model_inputs(model, batch)).float().numpy()
    labels = np.asarray(data.labels)
    probe = LogisticRegression(max_iter=2000, C=1.0).fit(features, labels)
    weight, bias = probe.coef_, probe.intercept_
    if weight.shape[0] == 1:  # binary: sklearn keeps one row; softmax over [-z/2, z/2] gives the same probabilities
        weight = np.concatenate([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(weight).float())
        model.head.bias.copy_(torch.from_numpy(bias).float())
    model.train()
    return float(probe.score(features, labels))


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
) -> TrainResult:
    """Fine-tune and return the best checkpoint's path, the per-epoch history and a summary."""
    from tunepipe.runtime import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    hardware = resolve_hardware(train_cfg)
    run_id = fingerprint(modality, model_cfg, train_cfg, seed, label_names, train_rows, train_labels, val_rows, val_labels)
    work_dir.mkdir(parents=True, exist_ok=True)
    marker = work_dir / "run.json"
    last = work_dir / "last.ckpt"
    resume = last.exists() and marker.exists() and json.loads(marker.read_text()).get("run_id") == run_id
    if not resume:
        for stale in work_dir.glob("*.ckpt"):
            stale.unlink()
        marker.write_text(json.dumps({"run_id": run_id}) + "\n")

    kind = get_modality(modality)
    pl.seed_everything(seed, workers=True, verbose=False)
    # From here on the order is the random numbers' order (the head's init, the probe): keep it.
    processor = kind.load_processor(model_cfg)
    train_set = kind.encode(train_rows, train_labels, model_cfg, processor)
    val_set = kind.encode(val_rows, val_labels, model_cfg, processor)
    adversarial = (train_cfg.get("adversarial") or {}).get("method", "none") != "none"
    module = ClassifierModule(kind.build_classifier(model_cfg, len(label_names)), model_cfg, train_cfg, label_names, modality,
                              attack_space=kind.attack_space() if adversarial else None)
    probe_accuracy = None
    if train_cfg["head_init"] == "linear_probe" and not resume:
        rows = probe_rows if probe_rows is not None else list(range(len(train_rows)))
        probe_set = kind.encode([train_rows[i] for i in rows], [train_labels[i] for i in rows], model_cfg, processor)
        log.info("linear probe on %d frozen embeddings to warm-start the head", len(probe_set))
        probe_accuracy = linear_probe_head(module, probe_set, batch_size=64)
        log.info("linear probe train accuracy %.4f", probe_accuracy)

    datamodule = ClassificationDataModule(
        train_set, val_set, train_cfg["batch_size"], eval_batch_size=max(64, train_cfg["batch_size"]), seed=seed,
        num_workers=train_cfg["num_workers"], pin_memory=hardware.accelerator == "gpu",
    )
    monitor = train_cfg["monitor"]
    mode = "min" if monitor == "val_loss" else "max"
    best_ckpt = KillSafeCheckpoint(dirpath=work_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True, enable_version_counter=False)
    last_ckpt = KillSafeCheckpoint(dirpath=work_dir, filename="last", save_top_k=1, monitor=None, every_n_epochs=1, enable_version_counter=False)
    progress = ProgressLog(train_cfg["log_every_n_steps"])
    trainer = pl.Trainer(
        accelerator=hardware.accelerator,
        devices=hardware.devices,
        strategy=hardware.strategy,
        precision=hardware.precision,
        accumulate_grad_batches=train_cfg["accumulate_grad_batches"],
        max_epochs=train_cfg["max_epochs"],
        deterministic=hardware.deterministic,
        gradient_clip_val=train_cfg["gradient_clip_val"],
        callbacks=[best_ckpt, last_ckpt, EarlyStopping(monitor=monitor, mode=mode, patience=train_cfg["early_stopping_patience"]), RNGState(), DivergenceGuard(train_cfg["log_every_n_steps"], hardware.precision), progress, *callbacks],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=work_dir,
        plugins=[cluster_environment()],
    )
    if resume:
        log.info("resuming from %s", last)
    log.info("training on %s (%s), %d rows, %d epochs max", hardware.accelerator, hardware.precision, len(train_set), train_cfg["max_epochs"])
    fit_started = time.perf_counter()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume else None)
    except SystemExit as exc:
        # Lightning ends a run this way on Ctrl-C (exit 1) and on SIGTERM (exit 0, which would look like success).
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning leaves Ctrl-C ignored
        raise TrainingInterrupted(f"training was stopped by a signal before it finished; re-run to resume from {last}.") from exc
    fit_seconds = time.perf_counter() - fit_started
    if trainer.world_size > 1 and not trainer.is_global_zero:
        # DDP (train.devices > 1): Lightning started this process as another rank running the same command.
        # Rank 0 alone writes the stage's outputs; this one ends here, its training done.
        logging.shutdown()
        os._exit(0)
    if trainer.interrupted or trainer.received_sigterm or not best_ckpt.best_model_path:
        raise TrainingInterrupted(f"training stopped before it finished; re-run to resume from {last}.")

    epochs_run = len(progress.history)
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
        "parameters": sum(p.numel() for p in module.model.parameters()),
        "frozen_parameters": module.frozen,
        "adversarial": module.adversarial["method"],
        "strategy": hardware.strategy,
    }
    return TrainResult(Path(best_ckpt.best_model_path), progress.history, summary)


def train_model(params: dict[str, Any], train_rows: list[dict], val_rows: list[dict], outputs: dict[str, Path], work_dir: Path,
                logger: logging.Logger, threads: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fit on the given rows (params: seed, data, model, train); write `history`, `summary` and (when asked)
    `best` and `config`; return the summary (with `extra` merged in)."""
    from tunepipe import runtime

    runtime.torch_threads(threads)
    names = run_label_names(params["data"]["labels"], train_rows, val_rows)
    result = fit(
        train_rows=train_rows,
        train_labels=encode(train_rows, names, "training rows"),
        val_rows=val_rows,
        val_labels=encode(val_rows, names, "validation rows"),
        modality=params["data"]["modality"],
        label_names=names,
        model_cfg=params["model"],
        train_cfg=params["train"],
        seed=params["seed"],
        work_dir=work_dir,
        probe_rows=[i for i, row in enumerate(train_rows) if not row.get("augmented")],
    )
    best_row = next((row for row in result.history if row["epoch"] == result.summary["best_epoch"]), {})
    metrics = {key: best_row[key] for key in ("val_f1_macro", "val_accuracy", "val_loss") if key in best_row}
    summary = {**result.summary, "metrics_at_best_epoch": metrics, **(extra or {})}
    if "best" in outputs:
        shutil.copyfile(result.best_checkpoint, outputs["best"])
    write_csv(outputs["history"], result.history, HISTORY_COLUMNS)
    if "config" in outputs:
        write_config(outputs["config"], params, names, summary)
    write_json(outputs["summary"], summary)
    logger.info("best %s %.4f at epoch %s", summary["monitor"], summary["best_score"], summary["best_epoch"])
    return summary


def write_config(path: Path, params: dict[str, Any], names: list[str], summary: dict[str, Any]) -> None:
    """The resolved training config saved beside the checkpoint: what was trained, how, and on which hardware."""
    resolved = {"seed": params["seed"], "modality": params["data"]["modality"], "label_names": names, "model": params["model"], "train": params["train"],
                "resolved": {k: summary[k] for k in ("accelerator", "precision", "device", "threads")}}
    if "variant" in summary:
        resolved["variant"] = {"name": summary["variant"], "overrides": summary["overrides"]}
    path.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
