"""Fine-tuning with Lightning on a tiny local model: outputs, determinism, resume after an interruption."""

from __future__ import annotations

import pytorch_lightning as pl
import pytest
import torch

from tunepipe.errors import TunepipeError
from tunepipe.checkpoints import load_checkpoint
from tunepipe.training import fit, resolve_hardware


def train_cfg(default_params, **overrides):
    cfg = dict(default_params["train"], max_epochs=2, batch_size=8, log_every_n_steps=2, head_lr=5e-3, encoder_lr=1e-3)
    cfg.update(overrides)
    return cfg


def run_fit(rows, work_dir, model_cfg, cfg, callbacks=()):
    labels = [0 if row["label"] == "neg" else 1 for row in rows]
    return fit(
        train_rows=rows[:36], train_labels=labels[:36],
        val_rows=rows[36:], val_labels=labels[36:],
        label_names=["neg", "pos"], model_cfg=model_cfg, train_cfg=cfg, seed=7, work_dir=work_dir, callbacks=callbacks,
    )


def test_fit_keeps_the_best_checkpoint_and_a_history_per_epoch(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    result = run_fit(labelled_rows, tmp_path / "ckpt", tiny_model_cfg, train_cfg(default_params))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "val_f1_macro"} <= set(result.history[0])
    assert result.summary["accelerator"] == "cpu" and result.summary["precision"] == "32-true"
    best = max(row["val_f1_macro"] for row in result.history)
    assert result.summary["best_score"] == pytest.approx(best, abs=1e-6)
    model, meta = load_checkpoint(result.best_checkpoint)
    assert meta == {"model_cfg": tiny_model_cfg, "label_names": ["neg", "pos"], "modality": "text", "task": "single_label", "target_stats": {}}
    assert not model.training
    assert (tmp_path / "ckpt" / "last.ckpt").exists()


def test_same_params_give_bit_identical_results(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    cfg = train_cfg(default_params)
    a = run_fit(labelled_rows, tmp_path / "a", tiny_model_cfg, cfg)
    b = run_fit(labelled_rows, tmp_path / "b", tiny_model_cfg, cfg)
    assert [dict(r, seconds=0) for r in a.history] == [dict(r, seconds=0) for r in b.history]
    weights_a = torch.load(a.best_checkpoint, weights_only=True)["state_dict"]
    weights_b = torch.load(b.best_checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)


class InterruptAtEpoch(pl.Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt  # what Ctrl-C / a kill looks like to Lightning


def test_an_interrupted_training_fails_then_resumes_to_the_same_result(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    cfg = train_cfg(default_params, max_epochs=3, early_stopping_patience=5)
    reference = run_fit(labelled_rows, tmp_path / "ref", tiny_model_cfg, cfg)
    with pytest.raises(TunepipeError, match="re-run to resume"):  # Lightning turns Ctrl-C into exit 1; never a success
        run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg, callbacks=(InterruptAtEpoch(2),))
    resumed = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, cfg)
    assert resumed.summary["resumed"] is True
    assert [dict(r, seconds=0) for r in resumed.history] == [dict(r, seconds=0) for r in reference.history]
    ref_weights = torch.load(tmp_path / "ref" / "last.ckpt", weights_only=True)["state_dict"]
    new_weights = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(ref_weights[key], new_weights[key]) for key in ref_weights)


def test_the_encoder_is_fine_tuned_in_train_mode(tiny_model_cfg, default_params):
    # from_pretrained hands back an eval-mode encoder; fine-tuning it so would silently turn its dropout off.
    from tunepipe.modalities import get_modality
    from tunepipe.models.lightning_module import ClassifierModule

    model = get_modality("text").build_classifier(tiny_model_cfg, 2)
    module = ClassifierModule(model, tiny_model_cfg, default_params["train"], ["neg", "pos"], "text")
    assert all(m.training for m in module.model.modules())


def test_changed_params_start_over_instead_of_resuming(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, train_cfg(default_params, max_epochs=1))
    again = run_fit(labelled_rows, tmp_path / "run", tiny_model_cfg, train_cfg(default_params, max_epochs=1, head_lr=1e-2))
    assert again.summary["resumed"] is False


def test_auto_hardware_falls_back_to_cpu_without_a_gpu(default_params):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    hardware = resolve_hardware(default_params["train"])
    assert (hardware.accelerator, hardware.precision, hardware.deterministic) == ("cpu", "32-true", True)
    with pytest.raises(TunepipeError, match="asks for a GPU but none is visible"):
        resolve_hardware(dict(default_params["train"], accelerator="gpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_hardware_uses_the_gpu_with_mixed_precision(default_params):
    hardware = resolve_hardware(default_params["train"])
    assert hardware.accelerator == "gpu" and hardware.precision in ("bf16-mixed", "16-mixed")


def test_a_diverging_training_fails_with_advice_instead_of_keeping_a_broken_model(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    cfg = train_cfg(default_params, encoder_lr=1e30, head_lr=1e30, gradient_clip_val=None, head_init="random")
    with pytest.raises(TunepipeError, match=r"training diverged: the loss is (nan|inf).*train\.encoder_lr"):
        run_fit(labelled_rows, tmp_path / "ckpt", tiny_model_cfg, cfg)
    assert not (tmp_path / "ckpt" / "best.ckpt").exists()


def test_bf16_mixed_trains_on_the_cpu_and_keeps_float32_weights(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    """CPUs with bf16 units (AMX) run autocast bf16 faster; the checkpoint keeps float32 weights that the later stages load."""
    result = run_fit(labelled_rows, tmp_path / "bf16", tiny_model_cfg, train_cfg(default_params, max_epochs=1, precision="bf16-mixed"))
    assert result.summary["accelerator"] == "cpu" and result.summary["precision"] == "bf16-mixed"
    assert all(torch.isfinite(torch.tensor(row["train_loss"])) for row in result.history)
    model, _ = load_checkpoint(result.best_checkpoint)
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}


def test_inference_in_bf16_gives_float32_logits_close_to_float32_inference(tiny_model_cfg, labelled_rows):
    from tunepipe.modalities import get_modality
    from tunepipe.models.inference import predict_logits

    text = get_modality("text")
    model = text.build_classifier(tiny_model_cfg, 2)
    data = text.encode(labelled_rows, None, tiny_model_cfg, text.load_processor(tiny_model_cfg))
    full = predict_logits(model, data, 16)
    half = predict_logits(model, data, 16, precision="bf16-mixed")
    assert half.dtype == torch.float32 and not torch.equal(full, half)  # bf16 products really ran
    assert torch.allclose(full, half, atol=0.05 * float(full.abs().max()) + 1e-3)
