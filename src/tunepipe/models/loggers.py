"""Live training curves: every optimizer step's loss and learning rates, to TensorBoard and DVCLive, and as rows.

`StepCurves` keeps each step's loss as a tensor and turns them into numbers only every `every_n_steps` steps
(one device sync per interval, not per step); the rows go to `results/train/steps.csv` and, on rank 0, to the
loggers (Lightning's `TensorBoardLogger`, DVCLive's Lightning logger). The loggers are driven by this callback,
not through `Trainer(logger=...)`: Lightning would log on its own schedule, convert values with a sync per
logged step, and duplicate steps after a resume.

Resuming: the rows are part of the checkpoint (this callback's state), and each (re)start rewrites the
logger folders from them, so a resumed run's curves hold every step exactly once, like an uninterrupted run's.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from tunepipe.errors import ParamsError

STEP_COLUMNS = ["step", "epoch", "loss", "lr_encoder", "lr_head"]
EPOCH_KEYS = ("train_loss_epoch", "val_loss", "val_accuracy", "val_f1_macro")
LOGGERS = {"tensorboard": "tensorboard", "dvclive": "dvclive"}  # train.loggers name -> folder under results/train/


@contextmanager
def _rng_untouched():
    """Logger set-up must not move the seeded random streams (the training's results would change)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def make_loggers(names: Sequence[str], folder: Path) -> list[Any]:
    """The loggers `train.loggers` names, writing under `folder` (nothing is written until training starts)."""
    loggers = []
    for name in names:
        if name == "tensorboard":
            try:
                import tensorboard  # noqa: F401  (Lightning falls back to tensorboardX, which we do not pin)
            except ImportError:
                raise ParamsError("train.loggers names tensorboard but the `tensorboard` package is not installed: "
                                  "`pip install tensorboard`, or drop it from train.loggers.") from None
            from pytorch_lightning.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(save_dir=str(folder), name=LOGGERS[name], version="", default_hp_metric=False))
        elif name == "dvclive":
            try:
                from dvclive.lightning import DVCLiveLogger
            except ImportError:
                raise ParamsError("train.loggers names dvclive but the `dvclive` package is not installed: "
                                  "`pip install dvclive`, or drop it from train.loggers.") from None
            # dvcyaml=None: our dvc.yaml (one pipeline stage) declares these files itself and must not be rewritten;
            # save_dvc_exp=False: `dvc exp run` or a commit records the run, not the logger.
            loggers.append(DVCLiveLogger(dir=str(folder / LOGGERS[name]), save_dvc_exp=False, dvcyaml=None, report=None))
        else:
            raise ParamsError(f"train.loggers: unknown logger {name!r}; use any of {sorted(LOGGERS)}.")
    return loggers


def _is_dvclive(logger: Any) -> bool:
    return type(logger).__module__.startswith("dvclive")


def _write(logger: Any, rows: Sequence[tuple[int, dict[str, float]]]) -> None:
    """(step, metrics) rows to one logger."""
    if not rows:
        return
    if not _is_dvclive(logger):
        for step, metrics in rows:
            logger.log_metrics(metrics, step=step)
        return
    # DVCLive: its own files, in its format (plots/metrics/<name>.tsv: step<TAB>name), one append per metric per
    # interval; Live.log_metric opens its file for every value (3 files a step). The latest values go through
    # Live (plot=False: summary only) so metrics.json and Live.end() know every metric.
    live = logger.experiment
    points: dict[str, list[tuple[int, float]]] = {}
    for step, metrics in rows:
        for name, value in metrics.items():
            points.setdefault(name, []).append((step, value))
    folder = Path(live.plots_dir) / "metrics"
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in points.items():
        path = folder / f"{name}.tsv"
        header = not path.exists()
        with open(path, "a", encoding="utf-8", newline="") as handle:
            if header:
                handle.write(f"step\t{name}\n")
            handle.writelines(f"{step}\t{value}\n" for step, value in values)
        live.step = values[-1][0]
        live.log_metric(name, values[-1][1], plot=False)
    live.step = max(step for step, _ in rows)


def _sync(logger: Any) -> None:
    if _is_dvclive(logger):
        # metrics.json only (dvc exp show, dvc metrics show). Live.sync() would also re-read every metric's whole
        # history for DVC Studio, even with no Studio configured: O(steps) per call, O(steps^2) per run.
        logger.experiment.make_summary()
    else:
        logger.experiment.flush()  # the event file, for a TensorBoard watching the run


def _step_metrics(row: dict[str, Any]) -> dict[str, float]:
    names = {"loss": "train_loss_step", "lr_encoder": "lr_encoder", "lr_head": "lr_head"}
    return {names[key]: float(row[key]) for key in names if row.get(key) is not None}


def _epoch_metrics(row: dict[str, Any]) -> dict[str, float]:
    return {key: int(value) if key == "epoch" else float(value) for key, value in row.items() if key != "step" and value is not None}


def replay(loggers: Iterable[Any], folder: Path, steps: Sequence[dict], epochs: Sequence[dict]) -> None:
    """Rewrite the loggers' folders from rows: step rows (STEP_COLUMNS) and epoch rows ({step, epoch, EPOCH_KEYS...})."""
    loggers = list(loggers)
    for name in LOGGERS.values():
        shutil.rmtree(folder / name, ignore_errors=True)
    with _rng_untouched():
        for logger in loggers:
            logger.experiment  # noqa: B018  (created here, inside the guard: the SummaryWriter, DVCLive's Live)
            _write(logger, [(int(row["step"]), _step_metrics(row)) for row in steps])
            _write(logger, [(int(row["step"]), _epoch_metrics(row)) for row in epochs])
            _sync(logger)


def write_curves(names: Sequence[str], folder: Path, steps: Sequence[dict], history: Sequence[dict]) -> None:
    """The loggers' files of a finished run, from its steps.csv and history.csv rows (train reusing a sweep's run)."""
    last_step = {}
    for row in steps:
        last_step[int(row["epoch"])] = max(int(row["step"]), last_step.get(int(row["epoch"]), 0))
    epochs = [{"step": last_step[int(row["epoch"])], "epoch": row["epoch"],
               **{key: row.get(key.removesuffix("_epoch")) for key in EPOCH_KEYS}}
              for row in history if int(row["epoch"]) in last_step]
    loggers = make_loggers(names, folder)
    replay(loggers, folder, steps, epochs)
    for logger in loggers:
        logger.finalize("success")


class StepCurves(pl.Callback):
    """Per optimizer step: the training loss (mean over accumulated batches) and the encoder's and head's
    learning rates used for it; per epoch: the validation metrics. Rows are kept on every rank (the loss is the
    rank's own batches'); only rank 0 writes to the loggers."""

    def __init__(self, loggers: Sequence[Any] = (), folder: Path | None = None, every_n_steps: int = 20) -> None:
        self.loggers = list(loggers)
        self.folder = folder
        self.every = every_n_steps
        self.steps: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self._pending: list[tuple[int, int, torch.Tensor, dict[str, float]]] = []
        self._batch_losses: list[torch.Tensor] = []
        self._lrs: dict[str, float] = {}
        self._groups: dict[str, int] = {}
        self._last_step = 0
        self._logged = 0

    # Lightning hooks

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._last_step = trainer.global_step
        self._groups = self._group_names(module, trainer.optimizers[0]) if trainer.optimizers else {}
        if self.folder is not None and trainer.is_global_zero:
            replay(self.loggers, self.folder, self.steps, self.epochs)  # without loggers: removes an earlier run's folders
            self._logged = len(self.steps)

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        # Read before the step: the scheduler moves the rates right after it.
        groups = trainer.optimizers[0].param_groups
        self._lrs = {name: float(groups[index]["lr"]) for name, index in self._groups.items()}

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = getattr(module, "step_loss", None)
        if loss is not None:
            self._batch_losses.append(loss)
        if trainer.global_step == self._last_step:
            return  # accumulating gradients: no optimizer step yet
        self._last_step = trainer.global_step
        losses, self._batch_losses = self._batch_losses, []
        mean = (losses[0] if len(losses) == 1 else torch.stack(losses).mean()) if losses else None
        self._pending.append((trainer.global_step, trainer.current_epoch + 1, mean, dict(self._lrs)))
        if trainer.global_step % self.every == 0 or batch_idx + 1 == trainer.num_training_batches:
            self._publish(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = trainer.callback_metrics
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch + 1,
               **{key: float(metrics[key]) for key in EPOCH_KEYS if key in metrics}}
        self.epochs.append(row)
        self._publish(trainer, epoch_row=row)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._publish(trainer)
        self._finalize(trainer, "success")

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        self._finalize(trainer, "failed")

    def state_dict(self) -> dict[str, Any]:
        self._collect()
        return {"steps": list(self.steps), "epochs": list(self.epochs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = list(state.get("steps", []))
        self.epochs = list(state.get("epochs", []))

    # helpers

    @staticmethod
    def _group_names(module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> dict[str, int]:
        """lr_encoder / lr_head -> the index of the first parameter group holding that part's parameters."""
        encoder = getattr(getattr(module, "model", None), "encoder", None)
        encoder_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
        names: dict[str, int] = {}
        for index, group in enumerate(optimizer.param_groups):
            if group["params"]:
                names.setdefault("lr_encoder" if id(group["params"][0]) in encoder_ids else "lr_head", index)
        return names

    def _collect(self) -> None:
        """Pending steps into rows: one device sync for all their losses."""
        if not self._pending:
            return
        losses = [loss for _, _, loss, _ in self._pending if loss is not None]
        values = iter(torch.stack([loss.detach().float() for loss in losses]).tolist() if losses else [])
        for step, epoch, loss, lrs in self._pending:
            self.steps.append({"step": step, "epoch": epoch, "loss": next(values) if loss is not None else None,
                               "lr_encoder": lrs.get("lr_encoder"), "lr_head": lrs.get("lr_head")})
        self._pending = []

    def _publish(self, trainer: pl.Trainer, epoch_row: dict[str, Any] | None = None) -> None:
        self._collect()
        if not (self.loggers and trainer.is_global_zero):
            return
        fresh, self._logged = self.steps[self._logged:], len(self.steps)
        if not fresh and epoch_row is None:
            return
        for logger in self.loggers:
            _write(logger, [(int(row["step"]), _step_metrics(row)) for row in fresh])
            if epoch_row is not None:
                _write(logger, [(int(epoch_row["step"]), _epoch_metrics(epoch_row))])
            _sync(logger)

    def _finalize(self, trainer: pl.Trainer, status: str) -> None:
        if self.loggers and trainer.is_global_zero:
            for logger in self.loggers:
                logger.finalize(status)
