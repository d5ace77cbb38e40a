"""LoRA adapters (model.adapter, peft) on the tiny random BERT: what trains, what the checkpoints hold, the merged model
later stages get, the base check, an exact resume, sweeps over the rank; and the memory settings' params errors."""

from __future__ import annotations

import io
import shutil

import pytest
import pytorch_lightning as pl
import torch

from tunepipe.checkpoints import load_checkpoint
from tunepipe.config import validate_params
from tunepipe.errors import ParamsError, TunepipeError
from tunepipe.modalities import get_modality
from tunepipe.models.backbone import (ADAPTER_BASE, AdapterSettings, add_adapter, auto_target_modules, check_quantize_base,
                                      enable_gradient_checkpointing)
from tunepipe.sweep import apply_overrides, expand_variants
from tunepipe.training import fit, resolve_hardware

LORA = {"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "auto"}


def train_cfg(default_params, **overrides):
    return dict(default_params["train"], max_epochs=3, batch_size=4, log_every_n_steps=100, head_lr=5e-3, encoder_lr=1e-2,
                early_stopping_patience=5, checkpoint_minutes=None, loggers=[], **overrides)


def run_fit(rows, work_dir, model_cfg, cfg, callbacks=()):
    labels = [0 if row["label"] == "neg" else 1 for row in rows]
    return fit(train_rows=rows[:36], train_labels=labels[:36], val_rows=rows[36:], val_labels=labels[36:], label_names=["neg", "pos"],
               model_cfg=model_cfg, train_cfg=cfg, seed=7, work_dir=work_dir, callbacks=callbacks)


def saved_bytes(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_model_dir):
    """One LoRA training (3 epochs on 36 rows) on a copy of the tiny BERT, and the copy's folder."""
    from tests.conftest import NEGATIVE, POSITIVE

    root = tmp_path_factory.mktemp("lora")
    base = shutil.copytree(tiny_model_dir, root / "base")
    rows = [{"id": f"{label}{c}-{i}", "text": f"{text} (take {c})", "label": label}
            for c in range(4) for label, texts in (("pos", POSITIVE), ("neg", NEGATIVE)) for i, text in enumerate(texts)]
    model_cfg = {"pretrained": str(base), "allow_download": False, "max_length": 24, "dropout": 0.1, "adapter": LORA, "quantize_base": "none"}
    result = run_fit(rows, root / "run", model_cfg, train_cfg(validate_params({})))
    return result, model_cfg, base, rows


def test_lora_trains_the_attention_and_mlp_adapters_and_the_head_only(tiny_model_cfg):
    model = get_modality("text").build_classifier(tiny_model_cfg, 2)
    targets = auto_target_modules(model)
    assert {name.rsplit(".", 1)[-1] for name in targets} == {"query", "key", "value", "dense"} and len(targets) == 2 * 6
    assert not any("pooler" in name for name in targets)  # nothing outside the layers
    trainable = add_adapter(model, AdapterSettings.from_params(LORA))
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in name or name.startswith("head.") for name in names) and any(name.startswith("head.") for name in names)
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad) < 0.05 * sum(p.numel() for p in model.parameters())


def test_an_adapter_checkpoint_keeps_no_frozen_weight_names_its_base_and_is_a_tenth_of_a_full_one(lora_run):
    result, model_cfg, base, _ = lora_run
    assert result.summary["adapter"] == "lora" and 0 < result.summary["trainable_share"] < 0.05
    for path in (result.best_checkpoint, result.best_checkpoint.parent / "last.ckpt"):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        assert all("lora_" in key or key.startswith("model.head.") for key in checkpoint["state_dict"])
        assert checkpoint[ADAPTER_BASE]["path"] == str(base) and len(checkpoint[ADAPTER_BASE]["sha256"]) == 64
        assert "optimizer_states" in checkpoint  # the training state too
    full = get_modality("text").build_classifier({**model_cfg, "adapter": {"method": "none"}}, 2).state_dict()
    assert result.best_checkpoint.stat().st_size <= 0.1 * saved_bytes({"state_dict": full})


def test_later_stages_get_the_adapter_merged_into_a_plain_model_that_computes_the_same(lora_run):
    result, model_cfg, _, rows = lora_run
    merged, meta = load_checkpoint(result.best_checkpoint)
    assert meta["model_cfg"]["adapter"]["method"] == "none" and not any("lora" in key for key in merged.state_dict())
    modality = get_modality("text")
    adapted = modality.build_classifier(model_cfg, 2)
    add_adapter(adapted, AdapterSettings.from_params(LORA))
    saved = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    adapted.load_state_dict({key.removeprefix("model."): value for key, value in saved.items()}, strict=False)
    data = modality.encode(rows[:8], None, model_cfg, modality.load_processor(model_cfg))
    batch = data.collate([data[i] for i in range(8)])
    with torch.no_grad():
        torch.testing.assert_close(merged(batch["input_ids"], batch["attention_mask"]),
                                   adapted.eval()(batch["input_ids"], batch["attention_mask"]), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(merged.encoder.embeddings.word_embeddings.weight, merged.encoder.embeddings.word_embeddings.weight * 0)


def test_an_adapter_is_refused_on_a_base_other_than_its_own(lora_run, tmp_path):
    result, _, base, _ = lora_run
    copy = tmp_path / "best.ckpt"
    shutil.copyfile(result.best_checkpoint, copy)
    config = base / "config.json"
    original = config.read_text()
    try:
        config.write_text(original + "\n")
        with pytest.raises(TunepipeError, match="sha256.*restore that base model or retrain"):
            load_checkpoint(copy)
    finally:
        config.write_text(original)
    load_checkpoint(copy)


class Crash(pl.Callback):
    """A kill in the middle of epoch 2 (what Ctrl-C looks like to Lightning)."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if (trainer.current_epoch, batch_idx) == (1, 3):
            raise KeyboardInterrupt


def test_a_killed_adapter_training_resumes_to_the_uninterrupted_one(lora_run, tmp_path, default_params):
    result, model_cfg, _, rows = lora_run
    cfg = train_cfg(default_params)
    with pytest.raises(TunepipeError, match="re-run to resume"):
        run_fit(rows, tmp_path / "run", model_cfg, cfg, callbacks=(Crash(),))
    resumed = run_fit(rows, tmp_path / "run", model_cfg, cfg)
    assert resumed.summary["resumed"] is True
    assert [dict(row, seconds=0) for row in resumed.history] == [dict(row, seconds=0) for row in result.history]
    ours = torch.load(resumed.best_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    reference = torch.load(result.best_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert ours.keys() == reference.keys() and all(torch.equal(ours[key], reference[key]) for key in ours)


def test_a_sweep_may_vary_the_adapters_rank():
    params = validate_params({"model": {"adapter": {"method": "lora"}}, "sweep": {"method": "grid", "parameters": {"model.adapter.r": [4, 8]}}})
    variants = expand_variants(params)
    assert [variant.overrides for variant in variants] == [{"model.adapter.r": 4}, {"model.adapter.r": 8}]
    assert apply_overrides(params, variants[1].overrides)["model"]["adapter"] == {**params["model"]["adapter"], "r": 8}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_cfg):
    modality = get_modality("text")
    data = modality.encode([{"text": "a warm film"}, {"text": "dull and slow"}], None, tiny_model_cfg, modality.load_processor(tiny_model_cfg))
    batch = data.collate([data[0], data[1]])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = modality.build_classifier({**tiny_model_cfg, "dropout": 0.0}, 2).train()
        if checkpointing:
            enable_gradient_checkpointing(model)
        model(batch["input_ids"], batch["attention_mask"]).sum().backward()
        grads.append(model.encoder.embeddings.word_embeddings.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_a_quantized_base_and_fsdp_say_what_they_need_on_a_machine_without_cuda(default_params):
    with pytest.raises(ParamsError, match="model.quantize_base 4bit needs a CUDA GPU"):
        check_quantize_base({"quantize_base": "4bit", "adapter": {"method": "lora"}}, cuda=False)
    with pytest.raises(ParamsError, match="trains only through an adapter"):
        check_quantize_base({"quantize_base": "8bit", "adapter": {"method": "none"}}, cuda=True)
    check_quantize_base({"quantize_base": "none"}, cuda=False)
    with pytest.raises(ParamsError, match="train.strategy fsdp shards a model over CUDA GPUs"):
        resolve_hardware(dict(default_params["train"], strategy="fsdp", accelerator="cpu"))


def test_the_reports_training_section_shows_the_trained_share_and_the_peak_memory(tmp_path):
    from tests.report.test_report import INPUTS, render, section

    train = {**INPUTS["train"], "trainable_parameters": 664322, "trainable_share": 0.028417, "adapter": "lora", "gradient_checkpointing": True,
             "peak_device_memory_mb": 1234.5}
    training = section(render(tmp_path, {**INPUTS, "train": train}), "training")
    assert "664,322 (2.84%), lora adapter on a frozen base; gradient checkpointing" in training
    assert "1234 MiB (the process's peak RSS" in training
