"""train.adversarial: the adversarial loss is computed and changes the gradients; `method: none` trains exactly as before."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.test_training import run_fit, train_cfg
from tunepipe.modalities import get_modality
from tunepipe.models.lightning_module import ClassifierModule

OFF = {"method": "none", "epsilon": 0.05, "steps": 3, "weight": 1.0}


def module_and_batch(model_cfg, cfg, rows):
    torch.manual_seed(0)
    text = get_modality("text")
    model = text.build_classifier(model_cfg, 2)
    dataset = text.encode(rows[:8], [i % 2 for i in range(8)], model_cfg, text.load_processor(model_cfg))
    space = text.attack_space() if cfg["adversarial"]["method"] != "none" else None  # what training passes
    return ClassifierModule(model, model_cfg, cfg, ["neg", "pos"], "text", attack_space=space), dataset.collate([dataset[i] for i in range(8)])


def gradients(module, batch):
    module.zero_grad()
    torch.manual_seed(1)  # the same dropout masks for every module compared
    loss = module.training_step(batch, 0)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_the_adversarial_loss_is_added_and_changes_the_gradients(tiny_model_cfg, default_params, labelled_rows, method):
    plain_cfg = dict(default_params["train"], adversarial=OFF)
    adv_cfg = dict(default_params["train"], adversarial=dict(OFF, method=method, epsilon=0.5, steps=2))
    plain, batch = module_and_batch(tiny_model_cfg, plain_cfg, labelled_rows)
    adversarial, _ = module_and_batch(tiny_model_cfg, adv_cfg, labelled_rows)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), adversarial.state_dict().values()))  # same start
    plain_loss, plain_grads = gradients(plain, batch)
    adv_loss, adv_grads = gradients(adversarial, batch)
    assert adv_loss > plain_loss  # clean loss + the loss on the moved inputs (which is higher than clean)
    assert plain_grads.keys() == adv_grads.keys()
    assert any(not torch.allclose(plain_grads[k], adv_grads[k]) for k in plain_grads)
    assert adversarial.attack_space is not None and plain.attack_space is None


def test_method_none_trains_bit_identically_to_a_config_without_the_option(tmp_path, labelled_rows, tiny_model_cfg, default_params):
    before = {k: v for k, v in train_cfg(default_params, max_epochs=1).items() if k != "adversarial"}  # the config as it was
    runs = {
        "before": run_fit(labelled_rows, tmp_path / "before", tiny_model_cfg, before),
        "none": run_fit(labelled_rows, tmp_path / "none", tiny_model_cfg, dict(before, adversarial=copy.deepcopy(OFF))),
        "fgm": run_fit(labelled_rows, tmp_path / "fgm", tiny_model_cfg, dict(before, adversarial=dict(OFF, method="fgm", epsilon=0.5))),
    }
    weights = {name: torch.load(run.best_checkpoint, weights_only=True)["state_dict"] for name, run in runs.items()}
    assert all(torch.equal(weights["before"][k], weights["none"][k]) for k in weights["before"])
    assert [dict(r, seconds=0) for r in runs["before"].history] == [dict(r, seconds=0) for r in runs["none"].history]
    assert any(not torch.equal(weights["before"][k], weights["fgm"][k]) for k in weights["before"])
    assert runs["fgm"].summary["adversarial"] == "fgm" and runs["none"].summary["adversarial"] == "none"
