"""Mid-epoch checkpoints (train.checkpoint_minutes, SIGTERM, SIGUSR1) and exact resumes from them, on one process
and under 2-process DDP; and `tunepipe resume` after Snakemake itself was killed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from tunepipe.errors import TunepipeError
from tunepipe.io import write_jsonl
from tunepipe.training import fit


def train_cfg(default_params, **overrides):
    cfg = dict(default_params["train"], max_epochs=3, batch_size=4, log_every_n_steps=100, head_lr=5e-3, encoder_lr=1e-3,
               early_stopping_patience=5, checkpoint_minutes=None)
    cfg.update(overrides)
    return cfg


def run_fit(rows, work_dir, model_cfg, cfg, callbacks=()):
    labels = [0 if row["label"] == "neg" else 1 for row in rows]
    return fit(train_rows=rows[:36], train_labels=labels[:36], val_rows=rows[36:], val_labels=labels[36:], label_names=["neg", "pos"],
               model_cfg=model_cfg, train_cfg=cfg, seed=7, work_dir=work_dir, callbacks=callbacks)


def without_seconds(history):
    return [dict(row, seconds=0) for row in history]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    ours, theirs = weights(a), weights(b)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs), f"{a} and {b} differ"


def mid_epoch_position(checkpoint: Path) -> tuple[int, int]:
    """(epoch, step) a checkpoint was saved at; step 0 for an epoch-end checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["callbacks"].get("MidEpochCheckpoint") or {}
    return state.get("epoch", -1), state.get("batches", 0)


class At(pl.Callback):
    """Does `action` once, at the end of (epoch, step) (both from 1)."""

    def __init__(self, epoch, step, action):
        self.epoch, self.step, self.action, self.done = epoch, step, action, False

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if not self.done and (trainer.current_epoch + 1, batch_idx + 1) == (self.epoch, self.step):
            self.done = True
            self.action()


def send(signum):
    return lambda: os.kill(os.getpid(), signum)


def crash():
    raise KeyboardInterrupt  # what a kill looks like to Lightning; the process goes on to resume in this test


def test_a_sigterm_inside_a_gradient_accumulation_window_saves_after_its_step_and_the_resume_is_bit_identical(
        tmp_path, labelled_rows, tiny_model_cfg, default_params):
    accumulate = 2
    cfg = train_cfg(default_params, accumulate_grad_batches=accumulate)
    reference = run_fit(labelled_rows, tmp_path / "ref", tiny_model_cfg, cfg)
    # A real SIGTERM to this process in the middle of epoch 2, at step 3 of 9: inside an accumulation window, whose
    # gradients no checkpoint holds, so the save waits for the window's optimizer step, after step 4.
    with pytest.raises(TunepipeError, match="re-run to resume"):
        run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg, callbacks=(At(2, 3, send(signal.SIGTERM)),))
    assert mid_epoch_position(tmp_path / "run" / "last.ckpt") == (1, 4)
    resumed = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg)
    assert resumed.summary["resumed"] is True
    assert without_seconds(resumed.history) == without_seconds(reference.history) and len(reference.history) == 3
    assert_same_weights(resumed.best_checkpoint, reference.best_checkpoint)
    assert_same_weights(tmp_path / "run" / "last.ckpt", tmp_path / "ref" / "last.ckpt")  # the final weights too


def test_sigusr1_saves_mid_epoch_and_training_goes_on(tmp_path, labelled_rows, tiny_model_cfg, default_params, caplog):
    cfg = train_cfg(default_params, max_epochs=2)
    reference = run_fit(labelled_rows, tmp_path / "ref", tiny_model_cfg, cfg)
    # SIGUSR1 at epoch 2 step 2 asks for a checkpoint (saved after that step) and training goes on; the run then
    # dies at step 6 (after the SIGUSR1 checkpoint, before the epoch's end) and resumes from step 2.
    with caplog.at_level("INFO", logger="tunepipe.train"), pytest.raises(TunepipeError, match="re-run to resume"):
        run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg, callbacks=(At(2, 2, send(signal.SIGUSR1)), At(2, 6, crash)))
    assert "saved a mid-epoch checkpoint (SIGUSR1): epoch 2, step 2/9" in caplog.text
    assert mid_epoch_position(tmp_path / "run" / "last.ckpt") == (1, 2)
    assert signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)  # the handler is training's only
    resumed = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg)
    assert without_seconds(resumed.history) == without_seconds(reference.history)
    assert_same_weights(resumed.best_checkpoint, reference.best_checkpoint)


# ---- a real training process, killed ---------------------------------------------------------------------------------

def stage_command(tmp_path: Path, params: dict, out: Path) -> list[str]:
    from tunepipe.stages.train import STAGE

    suffix = {"best": ".ckpt", "config": ".yaml", "summary": ".json"}
    outputs = [arg for key in STAGE.outputs for arg in ("--out", f"{key}={out / key}{suffix.get(key, '.csv')}")]
    return [sys.executable, "-m", "tunepipe.stages.train", "--params", json.dumps(params), "--threads", "1",
            "--in", f"train={tmp_path / 'train.jsonl'}", "--in", f"val={tmp_path / 'val.jsonl'}", *outputs]


def stage_params(default_params, tiny_model_cfg, **train):
    return {"seed": 3, "data": dict(default_params["data"], labels=["neg", "pos"]), "model": tiny_model_cfg,
            "train": train_cfg(default_params, log_every_n_steps=1, **train)}  # a line per step: the signals' cue


def run_stage(tmp_path: Path, params: dict, out: Path) -> str:
    done = subprocess.run(stage_command(tmp_path, params, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def wait_for_line(log: Path, pattern: str, process: subprocess.Popen, timeout: float = 240) -> re.Match:
    def text() -> str:
        try:
            return log.read_text(errors="replace")
        except FileNotFoundError:  # not yet written (Snakemake creates a job's log when the job starts)
            return ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, text())
        if found:
            return found
        assert process.poll() is None, f"ended before {pattern!r}:\n{text()[-3000:]}"
        time.sleep(0.01)
    raise AssertionError(f"no {pattern!r} within {timeout}s:\n{text()[-3000:]}")


def history_rows(folder: Path) -> list[str]:
    return [line.rsplit(",", 1)[0] for line in (folder / "history.csv").read_text().splitlines()]  # all but the wall time


def start_stage(tmp_path: Path, params: dict, out: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:  # its own process group: a signal to it reaches every rank, as a scheduler's does
        return subprocess.Popen(stage_command(tmp_path, params, out), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def signal_when(process: subprocess.Popen, log: Path, pattern: str, signum: int) -> re.Match:
    try:
        found = wait_for_line(log, pattern, process)
        os.killpg(process.pid, signum)
        process.wait(timeout=120)
        return found
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def sigterm_then_sigkill_mid_epoch_then_resume(tmp_path, labelled_rows, params_of) -> None:
    """An uninterrupted reference; then one training stopped twice in the middle of an epoch, each time by a real
    signal to its process group (every rank), and resumed: SIGTERM in epoch 2 (it saves, then fails); the resume,
    saving every few milliseconds (the time trigger), SIGKILLed in epoch 3 right after such a save; the last resume
    (checkpoints by time off again: not part of the run's identity) must end bit for bit like the reference."""
    write_jsonl(tmp_path / "train.jsonl", labelled_rows[:36])
    write_jsonl(tmp_path / "val.jsonl", labelled_rows[36:])
    run_stage(tmp_path, params_of(checkpoint_minutes=None), tmp_path / "ref")
    out, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"

    # 1. SIGTERM, in epoch 2 (after its first step): a checkpoint after the current step, then a failure.
    process = start_stage(tmp_path, params_of(checkpoint_minutes=None), out, tmp_path / "1.log")
    signal_when(process, tmp_path / "1.log", r"epoch 2/3  step 1/\d+", signal.SIGTERM)
    log = (tmp_path / "1.log").read_text()
    assert process.returncode not in (0, -signal.SIGTERM), "a training stopped by SIGTERM must fail, and say so"
    assert "re-run to resume" in log and "saved a mid-epoch checkpoint (SIGTERM): epoch 2, step" in log
    epoch, step = mid_epoch_position(last)
    assert epoch == 1 and step > 0
    assert not (out / "summary.json").exists()

    # 2. Resumed, saving by time; SIGKILL right after one of those saves in epoch 3.
    process = start_stage(tmp_path, params_of(checkpoint_minutes=1e-4), out, tmp_path / "2.log")
    saved = signal_when(process, tmp_path / "2.log", r"saved a mid-epoch checkpoint \(every 0\.0001 min\): epoch 3, step (\d+)/", signal.SIGKILL)
    assert f"resuming in the middle of epoch 2, after its step {step}" in (tmp_path / "2.log").read_text()
    assert process.returncode == -signal.SIGKILL
    epoch, step = mid_epoch_position(last)
    assert epoch == 2 and step >= int(saved.group(1)), "the kill should land in epoch 3, after a mid-epoch save"
    assert not (out / "summary.json").exists()

    # 3. Resumed to the end: the same history, best and final weights as the reference.
    resumed = run_stage(tmp_path, params_of(checkpoint_minutes=None), out)
    assert f"resuming in the middle of epoch 3, after its step {step}" in resumed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] is True
    assert history_rows(out) == history_rows(tmp_path / "ref") and len(history_rows(out)) == 1 + 3
    assert_same_weights(out / "best.ckpt", tmp_path / "ref" / "best.ckpt")
    assert_same_weights(last, tmp_path / "ref" / "checkpoints" / "last.ckpt")
    return summary


def test_a_training_killed_mid_epoch_resumes_to_bit_identical_results(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    sigterm_then_sigkill_mid_epoch_then_resume(tmp_path, labelled_rows, lambda **train: stage_params(default_params, tiny_model_cfg, **train))


@pytest.mark.e2e
def test_a_2_process_ddp_training_killed_mid_epoch_resumes_to_bit_identical_results(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    summary = sigterm_then_sigkill_mid_epoch_then_resume(
        tmp_path, labelled_rows, lambda **train: stage_params(default_params, tiny_model_cfg, accelerator="cpu", devices=2, **train))
    assert summary["strategy"] == "ddp"


# ---- Snakemake itself killed: `tunepipe resume` ----------------------------------------------------------------------

def test_tunepipe_resume_refuses_while_a_snakemake_of_the_folder_runs(tmp_path):
    from tests.pipeline import tunepipe

    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text("results/train/best.ckpt\n")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "snakemake", "--cores", "2"], cwd=tmp_path)
    try:
        refused = tunepipe(tmp_path, "resume", "--cores", "2", "results/report.html")
    finally:
        alive.kill()
        alive.wait()
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"this run is still going (pid {alive.pid}:" in refused.stdout and "kill PID" in refused.stdout
    assert (tmp_path / ".snakemake" / "locks" / "0.output.lock").exists()  # nothing touched


@pytest.mark.e2e
def test_after_snakemake_is_killed_the_documented_tunepipe_resume_finishes_the_run_and_training_resumes(tmp_path, tiny_model_dir):
    """kill -9 of Snakemake during `train` (its job left running, then killed too: a power loss), then the README's
    command: the run finishes, the training resumed mid-epoch, bit for bit as an uninterrupted run of the same config."""
    import shutil

    import psutil
    import yaml

    from tests.conftest import REPO
    from tests.pipeline import SNAKEMAKE, scratch_project, snakemake, tunepipe

    project = scratch_project(tmp_path / "project")
    shutil.copy(REPO / "tests" / "fixtures" / "tiny.yaml", project / "tiny.yaml")
    config = {"model": {"pretrained": str(tiny_model_dir), "max_length": 24},
              "train": {"max_epochs": 2, "batch_size": 4, "checkpoint_minutes": 0.0005}}  # every 30 ms: many per epoch
    (project / "run.yaml").write_text(yaml.safe_dump(config))
    args = ["results/train/summary.json", "--cores", "2", "--configfile", "tiny.yaml", "run.yaml"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    with open(tmp_path / "snakemake.log", "w") as handle:
        first = subprocess.Popen([SNAKEMAKE, *args], cwd=project, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    train_log = project / "results" / "logs" / "train.log"
    job: list = []
    try:
        wait_for_line(train_log, r"saved a mid-epoch checkpoint \(every 0\.0005 min\): epoch 1,", first, timeout=600)
        job = psutil.Process(first.pid).children(recursive=True)  # the train job's shell, python and tee
        for process in job:
            process.suspend()  # so that it is surely still there when tunepipe resume looks
        first.kill()  # kill -9 of Snakemake alone: its job lives on
        first.wait(timeout=60)

        refused = tunepipe(project, "resume", *args)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "this run is still going" in refused.stdout and "tunepipe.stages.train" in refused.stdout
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for process in job:  # now the power goes: the training dies too, wherever it was (in a save, maybe)
            process.kill()
        psutil.wait_procs(job, timeout=60)

    blocked = snakemake(project, *args)  # what a plain re-run says
    assert blocked.returncode != 0 and "Directory cannot be locked" in blocked.stdout + blocked.stderr

    resumed = tunepipe(project, "resume", *args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert re.search(r"resuming in the middle of epoch 1, after its step \d+", train_log.read_text())
    assert json.loads((project / "results" / "train" / "summary.json").read_text())["resumed"] is True

    # The same config uninterrupted (and without checkpoints by time), on the same data phase.
    reference = tmp_path / "reference"
    shutil.copytree(project, reference, symlinks=True, ignore=lambda folder, names: ["train"] if Path(folder).name == "results" else [])
    (reference / "run.yaml").write_text(yaml.safe_dump({**config, "train": {**config["train"], "checkpoint_minutes": None}}))
    uninterrupted = snakemake(reference, *args)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert json.loads((reference / "results" / "train" / "summary.json").read_text())["resumed"] is False
    assert history_rows(project / "results" / "train") == history_rows(reference / "results" / "train")
    assert_same_weights(project / "results" / "train" / "best.ckpt", reference / "results" / "train" / "best.ckpt")
