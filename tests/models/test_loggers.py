"""Live training curves (tunepipe.models.loggers): every step in steps.csv, TensorBoard and DVCLive; no effect on
the training's results; a resumed run's curves equal an uninterrupted run's; train.batch_size auto; train.compile."""

from __future__ import annotations

import csv
import json

import pytorch_lightning as pl
import pytest

from tunepipe.errors import ParamsError, TunepipeError
from tunepipe.models.efficiency import auto_batch_size, resolve_batch_size
from tunepipe.models.loggers import make_loggers
from tunepipe.training import fit


def _cfg(default_params, **overrides):
    return {**default_params["train"], "max_epochs": 2, "batch_size": 8, "log_every_n_steps": 2, "head_lr": 5e-3, "encoder_lr": 1e-3,
            "early_stopping_patience": 5, **overrides}


def _fit(rows, work_dir, model_cfg, cfg, callbacks=(), loggers_dir=None):
    labels = [0 if row["label"] == "neg" else 1 for row in rows]
    return fit(train_rows=rows[:36], train_labels=labels[:36], val_rows=rows[36:], val_labels=labels[36:], label_names=["neg", "pos"],
               model_cfg=model_cfg, train_cfg=cfg, seed=7, work_dir=work_dir, callbacks=callbacks, loggers_dir=loggers_dir)


def _same(logged, expected, rel=1e-6):
    """(step, value) pairs: the same steps in the same order, each value equal up to float32 rounding."""
    return [step for step, _ in logged] == [step for step, _ in expected] and \
        [value for _, value in logged] == pytest.approx([value for _, value in expected], rel=rel)


def _dvclive(folder, name):
    with open(folder / "dvclive" / "plots" / "metrics" / f"{name}.tsv", newline="") as handle:
        return [(int(row["step"]), float(row[name])) for row in csv.DictReader(handle, delimiter="\t")]


def _tensorboard(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard")).Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


class InterruptMidEpoch(pl.Callback):
    """Ctrl-C in the middle of epoch 2, after steps past the last checkpoint reached the loggers."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 3:
            raise KeyboardInterrupt


def test_every_step_reaches_the_loggers_without_changing_results_and_a_resumed_run_has_each_step_once(
        tmp_path, labelled_rows, tiny_model_cfg, default_params):
    cfg = _cfg(default_params)
    plain = _fit(labelled_rows, tmp_path / "plain" / "checkpoints", tiny_model_cfg, dict(cfg, loggers=[]))
    logged_dir = tmp_path / "logged"
    logged = _fit(labelled_rows, logged_dir / "checkpoints", tiny_model_cfg, cfg, loggers_dir=logged_dir)
    # Loggers are bookkeeping: the history (and so the checkpoint chosen) is bit-identical without them.
    assert [dict(r, seconds=0) for r in logged.history] == [dict(r, seconds=0) for r in plain.history]
    assert logged.steps == plain.steps

    steps = logged.steps
    assert [row["step"] for row in steps] == list(range(1, 11))  # 36 rows / batch 8 = 5 steps, 2 epochs
    assert [row["epoch"] for row in steps] == [1] * 5 + [2] * 5
    assert all(row["loss"] > 0 and row["lr_head"] > row["lr_encoder"] > 0 for row in steps[1:])
    expected = [(row["step"], row["loss"]) for row in steps]
    assert _same(_dvclive(logged_dir, "train_loss_step"), expected)
    assert _same(_tensorboard(logged_dir, "train_loss_step"), expected)
    assert [step for step, _ in _dvclive(logged_dir, "val_f1_macro")] == [5, 10]  # per epoch, on the step axis
    summary = json.loads((logged_dir / "dvclive" / "metrics.json").read_text())
    assert summary["step"] == 10 and summary["val_loss"] == pytest.approx(logged.history[-1]["val_loss"], abs=1e-6)

    # Killed mid-epoch 2 (steps 6-7 already logged past the epoch-1 checkpoint), then resumed: each step once.
    resumed_dir = tmp_path / "resumed"
    with pytest.raises(TunepipeError, match="re-run to resume"):
        _fit(labelled_rows, resumed_dir / "checkpoints", tiny_model_cfg, cfg, callbacks=(InterruptMidEpoch(),), loggers_dir=resumed_dir)
    resumed = _fit(labelled_rows, resumed_dir / "checkpoints", tiny_model_cfg, cfg, loggers_dir=resumed_dir)
    assert resumed.summary["resumed"] is True
    assert resumed.steps == steps
    assert _same(_dvclive(resumed_dir, "train_loss_step"), expected)
    assert _same(_dvclive(resumed_dir, "lr_encoder"), [(row["step"], row["lr_encoder"]) for row in steps])
    assert _same(_tensorboard(resumed_dir, "train_loss_step"), expected)


def test_an_unknown_logger_is_a_params_error(tmp_path):
    with pytest.raises(ParamsError, match="train.loggers: unknown logger 'wandb'"):
        make_loggers(["wandb"], tmp_path)


def test_auto_batch_size_is_a_power_of_two_capped_by_device_and_data():
    assert auto_batch_size(10_000, "cpu") == 32 and auto_batch_size(10_000, "gpu") == 256
    assert auto_batch_size(130, "cpu") == 16  # at least 8 steps an epoch: 130 // 8 = 16
    assert auto_batch_size(100, "gpu") == 8 and auto_batch_size(3, "cpu") == 1
    cfg, facts = resolve_batch_size({"batch_size": "auto"}, 4000, "gpu", processes=2)  # DDP: each process's 2000 rows
    assert cfg["batch_size"] == 128 and facts == {"value": 128, "auto": True, "rows": 4000, "cap": 256}
    assert resolve_batch_size({"batch_size": 12}, 4000, "cpu")[0]["batch_size"] == 12


def test_compile_without_a_cxx_compiler_is_a_clear_error(monkeypatch):
    from torch import nn

    from tunepipe.models.efficiency import compile_model

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ParamsError, match="train.compile is true but no C\\+\\+ compiler"):
        compile_model(nn.Linear(2, 2), "cpu")


@pytest.mark.e2e
def test_the_pipeline_writes_step_curves_for_the_report_tensorboard_and_dvclive(tiny_run):
    from tunepipe.report.load import read_rows

    train = tiny_run / "results" / "train"
    steps, history = read_rows(train / "steps.csv"), read_rows(train / "history.csv")
    assert [row["step"] for row in steps] == list(range(1, len(steps) + 1)) and len(steps) > len(history)
    assert {row["epoch"] for row in steps} == {row["epoch"] for row in history}
    assert _same(_dvclive(train, "train_loss_step"), [(row["step"], row["loss"]) for row in steps])
    assert _same(_tensorboard(train, "lr_head"), [(row["step"], row["lr_head"]) for row in steps])
    html = (tiny_run / "results" / "report.html").read_text(encoding="utf-8")
    assert 'id="fig-steps' in html and f"each of the {len(steps)} optimizer steps" in html


@pytest.mark.e2e
def test_dvc_exp_show_lists_the_step_metrics_and_dvclive_left_dvc_yaml_alone(history):
    from tests.conftest import REPO

    # The fixture's first run asserted `git status` clean (dvc.yaml included); the DVCLive summary is a metrics file.
    assert (history.project / "dvc.yaml").read_text() == (REPO / "dvc.yaml").read_text()
    experiments = [exp for row in history.exp_show for exp in (row.get("experiments") or [])]
    data = next(run["data"] for exp in experiments if exp.get("name") == "lr-2e-4" for run in exp["revs"])
    live = data["metrics"]["results/train/dvclive/metrics.json"]["data"]
    assert live["step"] >= 1 and {"train_loss_step", "lr_encoder", "lr_head", "val_f1_macro"} <= set(live)


def test_a_reused_sweep_run_gets_its_logger_files_from_its_rows(tmp_path):
    from tunepipe.models.loggers import write_curves

    steps = [{"step": i, "epoch": 1 + (i > 3), "loss": 1.0 / i, "lr_encoder": 1e-5 * i, "lr_head": 1e-3} for i in range(1, 7)]
    history = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.8, "val_f1_macro": 0.7},
               {"epoch": 2, "train_loss": 0.3, "val_loss": 0.35, "val_accuracy": 0.85, "val_f1_macro": 0.8}]
    write_curves(["tensorboard", "dvclive"], tmp_path, steps, history)
    assert _same(_dvclive(tmp_path, "lr_encoder"), [(i, 1e-5 * i) for i in range(1, 7)])
    assert _dvclive(tmp_path, "val_loss") == [(3, 0.4), (6, 0.35)]  # each epoch at its last step
    assert _same(_tensorboard(tmp_path, "train_loss_step"), [(i, 1.0 / i) for i in range(1, 7)])


def test_the_report_draws_step_curves_only_when_there_are_steps():
    from tunepipe.report.sections.training import training
    from tunepipe.tasks import get_task

    task = get_task("single_label")
    shown = (tuple(task.val_metrics), task.report_view())
    assert training({"train_steps": []}, *shown)["step_figure"] is None
    view = training({"train_steps": [{"step": i, "epoch": 1 + i // 20, "loss": 1 / i, "lr_encoder": 1e-5, "lr_head": 1e-3} for i in range(1, 41)]}, *shown)
    assert view["steps"] == 40 and view["step_figure"].startswith("<svg") and "fig-steps" in view["step_figure"]
