"""The LightningModule that fine-tunes a classifier (any modality's), and the callbacks training uses."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.profilers import PassThroughProfiler
from torch import nn

from tunepipe.errors import TunepipeError
from tunepipe.models.inference import model_inputs
from tunepipe.robustness.adversarial import AttackSpace, adversarial_loss
from tunepipe.targets import resolve_target
from tunepipe.tasks import DEFAULT as DEFAULT_TASK

log = logging.getLogger("tunepipe.train")


class ClassifierModule(pl.LightningModule):
    """Fine-tuning with the task's loss and validation metrics (tunepipe.tasks), with separate learning rates for the
    pretrained encoder and the new head."""

    def __init__(self, model: nn.Module, model_cfg: dict[str, Any], train_cfg: dict[str, Any], label_names: list[str], modality: str,
                 attack_space: AttackSpace | None = None, task: str = DEFAULT_TASK, target_stats: dict[str, float] | None = None,
                 loss: Any = None) -> None:
        """`model` is the modality's classifier; the other arguments are kept as the checkpoint's hyper-parameters,
        from which `tunepipe.checkpoints.load_checkpoint` rebuilds it (`target_stats`: what the task keeps about the
        training targets, e.g. regression's mean and std). `attack_space` is the modality's input space (token
        embeddings, or pixels) that `train.adversarial` moves inputs in; training passes it, inference needs none.
        `loss`: the task's loss made from the training targets (multi_label's pos_weight); the task's plain loss if None."""
        from tunepipe.tasks import get_task

        super().__init__()
        self.save_hyperparameters(ignore=["model", "attack_space", "loss"])
        self.task = get_task(task)
        self.target_stats = dict(target_stats or {})
        self.model = model
        # from_pretrained returns the encoder in eval mode and Lightning keeps submodule modes: without this the
        # encoder would be fine-tuned with its dropout off.
        self.model.train()
        self.frozen = freeze_layers(self.model, train_cfg.get("freeze_layers", 0))
        self.loss = loss if loss is not None else self.task.loss(train_cfg, self.target_stats, [])
        self.val_metrics = self.task.val_collection(label_names, self.target_stats)
        self.adversarial = dict(train_cfg.get("adversarial") or {"method": "none"})
        if self.adversarial["method"] != "none" and attack_space is None:
            raise ValueError(f"train.adversarial.method {self.adversarial['method']!r} needs the modality's attack_space")
        self.attack_space = attack_space if self.adversarial["method"] != "none" else None
        self.epoch_means = EpochMeans()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(**model_inputs(self.model, batch))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch)
        loss = self.loss(logits.float(), batch["labels"])
        self.step_loss = loss.detach()  # the clean loss, for the per-step curves (models/loggers.py StepCurves); no sync
        self.epoch_means.add("train_loss", self.step_loss, len(batch["labels"]))
        if self.attack_space is None:
            return loss
        # Adversarial training: add the loss on inputs moved by FGM/PGD (train_loss stays the clean loss, comparable to val_loss).
        adv = self.adversarial
        adversarial = adversarial_loss(self.attack_space, self.model, model_inputs(self.model, batch), batch["labels"],
                                       method=adv["method"], epsilon=adv["epsilon"], steps=adv["steps"], loss=self.loss)
        self.epoch_means.add("train_adversarial_loss", adversarial.detach(), len(batch["labels"]))
        return loss + adv["weight"] * adversarial

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # The epoch's means are logged with its last batch, before validation and before any callback's epoch-end hook
        # reads them (Lightning calls those hooks before the module's own on_train_epoch_end).
        if not validates_within_epochs(self.trainer) and batch_idx + 1 == self.trainer.num_training_batches:
            self._log_training_means()

    def on_validation_epoch_start(self) -> None:
        # Validation within epochs: the means since the last validation, logged when the next one starts.
        if validates_within_epochs(self.trainer) and validating_while_fitting(self.trainer):
            self._log_training_means()

    def _log_training_means(self) -> None:
        for name, mean in self.epoch_means.pop(self.trainer.strategy).items():
            self.log(f"{name}_epoch", mean, on_step=False, on_epoch=True, batch_size=1)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch).float()
        loss = self.loss(logits, batch["labels"])
        self.val_metrics.update(self.task.outputs(logits, self.target_stats), batch["labels"])
        self.log("val_loss", loss, on_epoch=True, batch_size=len(batch["labels"]), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def configure_optimizers(self) -> Any:
        cfg = self.hparams.train_cfg
        # Both are checked before anything is built: a `_target_` outside the allowed modules is never called.
        resolve_target("train.optimizer._target_", cfg["optimizer"]["_target_"])
        if cfg.get("scheduler"):
            resolve_target("train.scheduler._target_", cfg["scheduler"]["_target_"])
        groups = parameter_groups(self.model, cfg["encoder_lr"], cfg["head_lr"])
        optimizer = instantiate(cfg["optimizer"], groups, lr=cfg["head_lr"])
        if not cfg.get("scheduler"):
            return optimizer
        scheduler = instantiate(cfg["scheduler"], optimizer=optimizer, total_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class EpochMeans:
    """Batch-size-weighted means of the training losses over an epoch, summed on the device with no sync per step.

    Lightning's per-step `self.log(..., on_epoch=True)` cost about 8% of a small model's CPU step (bench_training);
    these sums cost two tensor operations a step, and are reduced over every rank (DDP) once, at the epoch's end.
    A mid-epoch checkpoint saves them (`state`/`load`), so a resumed epoch's means are the uninterrupted run's.
    """

    def __init__(self) -> None:
        self.sums: dict[str, list[torch.Tensor]] = {}

    def add(self, name: str, value: torch.Tensor, rows: int) -> None:
        total, count = self.sums.get(name, (None, 0))
        weighted = value * rows
        self.sums[name] = [weighted if total is None else total + weighted, count + rows]

    def pop(self, strategy: Any) -> dict[str, torch.Tensor]:
        """Each name's mean over every rank's rows of the epoch (a collective under DDP); the sums start again."""
        sums, self.sums = self.sums, {}
        means = {}
        for name, (total, count) in sums.items():
            both = torch.stack([total.float(), torch.tensor(float(count), device=total.device)])
            both = strategy.reduce(both, reduce_op="sum")
            means[name] = both[0] / both[1]
        return means

    def state(self) -> dict[str, list[torch.Tensor]]:
        return {name: [total.detach().cpu().clone(), torch.tensor(float(count))] for name, (total, count) in self.sums.items()}

    def load(self, state: dict[str, list[torch.Tensor]], device: torch.device) -> None:
        self.sums = {name: [total.to(device), int(count)] for name, (total, count) in state.items()}


def parameter_groups(model: nn.Module, encoder_lr: float, head_lr: float) -> list[dict[str, Any]]:
    """Encoder and head at their own learning rates; biases and norm weights (1-D) without weight decay.

    Decaying biases and LayerNorm/BatchNorm scales only pulls them towards 0 (the BERT recipe exempts them);
    the optimizer's own `weight_decay` applies to the other groups. Frozen parameters are left out.
    """
    groups = []
    for part, lr in ((model.encoder, encoder_lr), (model.head, head_lr)):
        trainable = [p for p in part.parameters() if p.requires_grad]
        decay = [p for p in trainable if p.ndim > 1]
        no_decay = [p for p in trainable if p.ndim <= 1]
        if decay:
            groups.append({"params": decay, "lr": lr})
        if no_decay:
            groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return groups


def freeze_layers(model: nn.Module, count: int) -> int:
    """Freeze the stem (embeddings) and the first `count` layers/blocks of the encoder (`model.layers()`); returns the frozen parameter count."""
    from tunepipe.errors import ParamsError

    if not count:
        return 0
    try:
        stem, layers = model.layers()
    except ValueError as exc:
        raise ParamsError(str(exc)) from None
    if count > len(layers):
        raise ParamsError(f"train.freeze_layers is {count} but the encoder has only {len(layers)} layers; use at most {len(layers)}.")
    frozen = 0
    for module in [*stem, *layers[:count]]:
        for parameter in module.parameters():
            if parameter.requires_grad:
                parameter.requires_grad_(False)
                frozen += parameter.numel()
    return frozen


class SilentProfiler(PassThroughProfiler):
    """The profiler Lightning gets when nothing is profiled: Lightning enters `profiler.profile(name)` around each of the
    hundred or so hook calls of a training step, and PassThroughProfiler makes a generator-based context manager each
    time (0.7 us: 75 us a step, bench_training); this one hands back one shared empty context."""

    _NOTHING = contextlib.nullcontext()

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return self._NOTHING


class RNGState(pl.Callback):
    """Saves torch/CUDA/numpy/python RNG states in checkpoints so a resumed run draws the same numbers.

    Lightning's checkpoints hold no RNG state (verified: resumed runs diverged without this). Under DDP every
    process draws its own numbers (dropout on its own batches), so each rank's state is saved and restored.
    """

    def state_dict(self) -> dict[str, Any]:
        from tunepipe.models.checkpointing import per_rank

        return {"ranks": per_rank(self._local_state())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from tunepipe.models.checkpointing import own

        self._set_local_state(own(state["ranks"]) if "ranks" in state else state)

    @staticmethod
    def _local_state() -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
            "numpy_rest": [int(pos), int(has_gauss), float(cached)],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def _set_local_state(state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        pos, has_gauss, cached = state["numpy_rest"]
        np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def validating_while_fitting(trainer: pl.Trainer) -> bool:
    """A validation that is part of `fit` (not `validate`, not the sanity check)."""
    from pytorch_lightning.trainer.states import TrainerFn

    return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking


def validates_within_epochs(trainer: pl.Trainer) -> bool:
    """Validation every N optimizer steps across epochs (train.val_check_interval; tunepipe.training.fit then sets no
    epoch cadence) rather than at each epoch's end."""
    return trainer.check_val_every_n_epoch is None


def is_logged_step(batch_idx: int, every_n_steps: int, batches: int) -> bool:
    """Every `every_n_steps`-th step of an epoch, and its last one (train.log_every_n_steps)."""
    step = batch_idx + 1
    return step % every_n_steps == 0 or step == batches


class DivergenceGuard(pl.Callback):
    """Stop with a clear error when the training loss stops being a finite number.

    A NaN/inf loss never recovers, and the checkpoint it leaves predicts one class: better to fail the job
    than to hand evaluate a broken model. Checked every `every_n_steps` steps (each check syncs the device).
    """

    def __init__(self, every_n_steps: int, precision: str) -> None:
        self.every = every_n_steps
        self.precision = precision

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not is_logged_step(batch_idx, self.every, trainer.num_training_batches):
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss.detach()).all():
            raise TunepipeError(
                f"training diverged: the loss is {float(loss)} at epoch {trainer.current_epoch + 1}, step {batch_idx + 1} "
                f"(precision {self.precision}). Lower train.encoder_lr / train.head_lr, or set train.precision: 32-true."
            )


class ProgressLog(pl.Callback):
    """Plain progress lines (readable in log files, unlike a progress bar) and the history: a row per epoch, or, when
    the trainer validates within epochs (train.val_check_interval), a row per validation, whose `epoch` is the epochs
    trained so far (1.25: a quarter into the second) and whose losses are means since the row before."""

    def __init__(self, every_n_steps: int, val_metrics: tuple[str, ...] = ("val_accuracy", "val_f1_macro")) -> None:
        self.every = every_n_steps
        self.val_metrics = val_metrics
        self.history: list[dict[str, float]] = []
        self._epoch_start = 0.0
        self._seen = 0
        #: Training batches run, all epochs together (a resumed run counts on from its checkpoint).
        self.batches_run = 0
        self._row_start = time.perf_counter()
        self._row_seconds_loaded = 0.0  # the current history row's seconds before a resume (load_state_dict)

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._seen = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._row_start = time.perf_counter() - self._row_seconds_loaded
        self._row_seconds_loaded = 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._seen += len(batch["labels"])
        self.batches_run += 1
        step, total = batch_idx + 1, trainer.num_training_batches
        if not is_logged_step(batch_idx, self.every, total):
            return
        if trainer.max_steps > 0:  # train.max_steps may end the run within this epoch: count to there
            total = min(total, step + (trainer.max_steps - trainer.global_step) * trainer.accumulate_grad_batches)
        elapsed = time.perf_counter() - self._epoch_start
        rate = step / elapsed if elapsed else 0.0
        eta = (total - step) / rate if rate else 0.0
        loss = getattr(module, "step_loss", None)  # this process's batch: a sync only on logged steps
        log.info(
            "epoch %d/%d  step %d/%d  loss %.4f  %.1f rows/s  epoch eta %.0fs",
            trainer.current_epoch + 1, trainer.max_epochs, step, total, float(loss) if loss is not None else float("nan"),
            self._seen / elapsed if elapsed else 0.0, eta,
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not validates_within_epochs(trainer):
            self._add_row(trainer, trainer.current_epoch + 1, time.perf_counter() - self._epoch_start)

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if validates_within_epochs(trainer) and validating_while_fitting(trainer):
            epochs = round(self.batches_run / max(1, trainer.num_training_batches), 4)
            self._add_row(trainer, epochs, time.perf_counter() - self._row_start)
            self._row_start = time.perf_counter()

    def _add_row(self, trainer: pl.Trainer, epoch: float, seconds: float) -> None:
        metrics = trainer.callback_metrics
        row = {"epoch": epoch}
        for key in ("train_loss_epoch", "val_loss", *self.val_metrics):
            if key in metrics:
                row[key.removesuffix("_epoch")] = round(float(metrics[key]), 6)
        row["seconds"] = round(seconds, 2)
        self.history.append(row)
        shown = "  ".join(f"{key} {value:.4f}" for key, value in row.items() if key not in ("epoch", "seconds"))
        if validates_within_epochs(trainer):
            log.info("validation at epoch %.2f (step %d) after %.0fs: %s", epoch, trainer.global_step, seconds, shown)
        else:
            log.info("epoch %d done in %.0fs: %s", epoch, seconds, shown)

    def state_dict(self) -> dict[str, Any]:
        # The epoch's time and rows so far matter in a mid-epoch checkpoint (the resumed epoch's row adds them up).
        return {"history": self.history, "epoch_seconds": time.perf_counter() - self._epoch_start, "seen": self._seen,
                "batches_run": self.batches_run, "row_seconds": time.perf_counter() - self._row_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self._epoch_start = time.perf_counter() - state.get("epoch_seconds", 0.0)
        self._seen = state.get("seen", 0)
        self.batches_run = state.get("batches_run", 0)
        self._row_seconds_loaded = state.get("row_seconds", 0.0)
