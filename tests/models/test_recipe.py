"""Training recipe knobs: optimizers and schedules built from params, weight-decay groups, layer freezing,
gradient accumulation and the multi-device strategy."""

from __future__ import annotations

import math

import pytest
import torch

from tunepipe.errors import ParamsError
from tunepipe.modalities import get_modality
from tunepipe.models.lightning_module import ClassifierModule, freeze_layers, parameter_groups
from tunepipe.models.schedules import cosine_warmup
from tunepipe.training import resolve_hardware

OPTIMIZERS = {
    "torch.optim.AdamW": {"weight_decay": 0.01},
    "torch.optim.Adam": {"weight_decay": 0.0},
    "torch.optim.SGD": {"momentum": 0.9, "weight_decay": 0.01},
    "torch.optim.Adagrad": {"weight_decay": 0.01},
}


def text_module(model_cfg, train_cfg, names=("neg", "pos")):
    model = get_modality("text").build_classifier(model_cfg, len(names))
    return ClassifierModule(model, model_cfg, train_cfg, list(names), "text")


def batch(n=4):
    return {"input_ids": torch.randint(1000, 2000, (n, 12)), "attention_mask": torch.ones(n, 12, dtype=torch.long),
            "labels": torch.tensor([0, 1] * (n // 2))}


def one_step(module, optimizer):
    module.train()
    optimizer.zero_grad()
    module.training_step(batch(), 0).backward()
    optimizer.step()


@pytest.mark.parametrize("target", sorted(OPTIMIZERS))
def test_each_optimizer_is_built_from_its_target_and_updates_the_model(target, tiny_model_cfg, default_params):
    cfg = dict(default_params["train"], optimizer={"_target_": target, **OPTIMIZERS[target]}, scheduler=None)
    module = text_module(tiny_model_cfg, cfg)
    optimizer = module.configure_optimizers()
    assert type(optimizer).__name__ == target.rsplit(".", 1)[1]
    before = module.model.head.weight.detach().clone()
    one_step(module, optimizer)
    assert not torch.equal(before, module.model.head.weight)
    lrs = {group["lr"] for group in optimizer.param_groups}
    assert lrs == {cfg["encoder_lr"], cfg["head_lr"]}


@pytest.mark.parametrize(("key", "target"), [
    ("train.optimizer._target_", "os.system"),
    ("train.scheduler._target_", "torch.optim.lr_scheduler.partial"),  # functools.partial, merely imported there
])
def test_a_target_outside_the_optimizer_modules_is_refused_naming_its_key_and_never_called(key, target, tiny_model_cfg, default_params,
                                                                                            monkeypatch):
    called = []
    monkeypatch.setattr("os.system", lambda *a, **k: called.append(a))
    section = key.split(".")[1]
    cfg = dict(default_params["train"], **{section: dict(default_params["train"][section] or {}, _target_=target)})
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        text_module(tiny_model_cfg, cfg).configure_optimizers()
    assert not called


def test_biases_and_norm_weights_get_no_weight_decay(tiny_model_cfg, default_params):
    module = text_module(tiny_model_cfg, dict(default_params["train"], scheduler=None))
    optimizer = module.configure_optimizers()
    names = {id(p): n for n, p in module.model.named_parameters()}
    for group in optimizer.param_groups:
        group_names = [names[id(p)] for p in group["params"]]
        if group["weight_decay"] == 0.0:
            assert all(n.endswith("bias") or "LayerNorm" in n for n in group_names)
        else:
            assert group["weight_decay"] == 0.01 and all(n.endswith("weight") and "LayerNorm" not in n for n in group_names)
    covered = sum(len(g["params"]) for g in optimizer.param_groups)
    assert covered == len(list(module.model.parameters()))


def test_cosine_warmup_rises_then_falls_to_the_floor():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = cosine_warmup(optimizer, total_steps=20, warmup_fraction=0.1, min_factor=0.1)
    factors = [schedule.lr_lambdas[0](step) for step in range(21)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)  # warm-up of 2 steps
    assert factors[2] == pytest.approx(1.0)
    assert factors[11] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 9 / 18)))  # half-way down
    assert factors[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))


def test_freezing_n_layers_freezes_embeddings_and_those_layers_and_they_do_not_move(tiny_model_cfg, default_params):
    cfg = dict(default_params["train"], freeze_layers=1, optimizer={"_target_": "torch.optim.AdamW", "weight_decay": 0.1}, scheduler=None)
    module = text_module(tiny_model_cfg, cfg)
    named = dict(module.model.named_parameters())
    frozen = {n for n, p in named.items() if not p.requires_grad}
    assert frozen and all(n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.")) for n in frozen)
    assert {n for n in named if n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0."))} == frozen
    assert module.frozen == sum(named[n].numel() for n in frozen)
    before = {n: p.detach().clone() for n, p in named.items()}
    optimizer = module.configure_optimizers()
    assert not {id(named[n]) for n in frozen} & {id(p) for g in optimizer.param_groups for p in g["params"]}
    one_step(module, optimizer)
    for name, parameter in named.items():
        if ".pooler." in name:  # BERT's pooler is not used (mean pooling): no gradient, never moves
            continue
        assert torch.equal(before[name], parameter) == (name in frozen), name


def test_freezing_more_layers_than_the_encoder_has_names_the_key(tiny_model_cfg, default_params):
    with pytest.raises(ParamsError, match="train.freeze_layers is 3 but the encoder has only 2 layers"):
        text_module(tiny_model_cfg, dict(default_params["train"], freeze_layers=3))


def test_freezing_efficientnet_blocks():
    model = get_modality("image").build_classifier({"pretrained": "efficientnet-lite0", "allow_download": False, "dropout": 0.1, "image_size": 32}, 3)
    frozen = freeze_layers(model, 2)
    assert frozen > 0
    assert not any(p.requires_grad for p in model.encoder._conv_stem.parameters())
    assert not any(p.requires_grad for block in model.encoder._blocks[:2] for p in block.parameters())
    assert all(p.requires_grad for p in model.encoder._blocks[2].parameters())
    groups = parameter_groups(model, 1e-4, 1e-3)
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters()) - frozen


def test_several_devices_select_ddp_and_one_device_does_not(default_params, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    train = default_params["train"]
    assert resolve_hardware(dict(train, devices=2)).strategy == "ddp"
    assert resolve_hardware(dict(train, devices="auto")).strategy == "ddp"  # every visible GPU
    assert resolve_hardware(dict(train, devices=1)).strategy == "auto"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_hardware(dict(train, devices="auto")).strategy == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_hardware(dict(train, devices=2, accelerator="auto")).strategy == "ddp"  # CPU: two processes (gloo)
    assert resolve_hardware(dict(train, devices="auto", accelerator="auto")).strategy == "auto"  # CPU: one process


def test_gradient_accumulation_reaches_the_trainer_and_the_schedule_length(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    from tunepipe.training import fit

    seen = {}

    class Probe(__import__("pytorch_lightning").Callback):
        def on_train_start(self, trainer, module):
            seen["accumulate"] = trainer.accumulate_grad_batches
            seen["steps"] = trainer.estimated_stepping_batches

        def on_train_end(self, trainer, module):
            seen["optimizer_steps"] = trainer.global_step

    labels = [0 if row["label"] == "neg" else 1 for row in labelled_rows]
    cfg = dict(default_params["train"], max_epochs=1, batch_size=4, accumulate_grad_batches=3, head_init="random")
    fit(train_rows=labelled_rows[:36], train_labels=labels[:36], val_rows=labelled_rows[36:], val_labels=labels[36:],
        label_names=["neg", "pos"], model_cfg=tiny_model_cfg, train_cfg=cfg, seed=1, work_dir=tmp_path, callbacks=(Probe(),))
    assert seen == {"accumulate": 3, "steps": 3, "optimizer_steps": 3}  # 36 rows / 4 = 9 batches -> 3 optimizer steps


def test_model_dropout_reaches_the_head_dropout(tiny_model_cfg, default_params):
    module = text_module(dict(tiny_model_cfg, dropout=0.37), default_params["train"])
    assert module.model.dropout.p == 0.37


def test_early_stopping_ends_training_once_the_monitor_stops_improving(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    from tunepipe.training import fit

    labels = [0 if row["label"] == "neg" else 1 for row in labelled_rows]
    # Learning rates so small that predictions (hence val_f1_macro) cannot change: no epoch after the first improves.
    cfg = dict(default_params["train"], max_epochs=6, batch_size=12, early_stopping_patience=2, encoder_lr=1e-12, head_lr=1e-12, head_init="random")
    result = fit(train_rows=labelled_rows[:36], train_labels=labels[:36], val_rows=labelled_rows[36:], val_labels=labels[36:],
                 label_names=["neg", "pos"], model_cfg=tiny_model_cfg, train_cfg=cfg, seed=1, work_dir=tmp_path)
    assert result.summary["epochs_run"] == 3 and result.summary["best_epoch"] == 1
