"""ONNX export with dynamic axes, and a parity check that can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tunepipe.data.datamodule import EncodedTexts, pad_batch
from tunepipe.errors import TunepipeError
from tunepipe.models.backbone import load_tokenizer
from tunepipe.modalities import get_modality
from tunepipe.optimize.onnx_export import export_onnx, latency, ort_session, parity, require_parity

TEXTS = ["a fine film", "a dull film with a long and winding plot that goes nowhere", "ok", "great acting and a clever script"]


@pytest.fixture
def exported(tmp_path, tiny_model_cfg):
    model = get_modality("text").build_classifier(tiny_model_cfg, num_labels=2).eval()
    tokenizer = load_tokenizer(tiny_model_cfg["pretrained"])
    data = EncodedTexts(TEXTS, None, tokenizer, 24)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, pad_batch([data[0], data[1]], data.pad_id), opset=17, dynamo=False)
    return model, data, path


def test_exported_model_matches_pytorch_for_any_batch_and_length(exported):
    model, data, path = exported
    session = ort_session(path, threads=1)
    report = parity(model, session, data, batch_size=3)
    assert report["rows"] == len(TEXTS) and report["prediction_agreement"] == 1.0
    assert report["max_abs_logit_diff"] < 1e-4
    for size in (1, 4):  # batch sizes and lengths that differ from the export sample
        batch = pad_batch([data[i] for i in range(size)], data.pad_id)
        out = session.run(["logits"], {"input_ids": batch["input_ids"].numpy(), "attention_mask": batch["attention_mask"].numpy()})[0]
        assert out.shape == (size, 2)


def test_parity_catches_a_model_that_differs(exported):
    model, data, path = exported
    session = ort_session(path, threads=1)
    with torch.no_grad():
        model.head.bias.add_(1.0)  # the ONNX file no longer matches this model
    report = parity(model, session, data, batch_size=4)
    assert report["max_abs_logit_diff"] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(TunepipeError, match="differ from PyTorch by"):
        require_parity(report, 1e-3, path)


def test_latency_reports_medians_for_each_batch_size(exported):
    model, data, path = exported
    timings = latency(model, ort_session(path, threads=1), data, [1, 2], runs=3)
    assert set(timings) == {"1", "2"}
    assert all(np.isfinite(v["onnxruntime"]) and v["eager"] > 0 for v in timings.values())


def test_a_structurally_pruned_model_exports_with_dynamic_axes_and_matches(tmp_path, tiny_model_cfg):
    from tunepipe.optimize.pruning import structured_prune

    tokenizer = load_tokenizer(tiny_model_cfg["pretrained"])
    data = EncodedTexts(TEXTS, None, tokenizer, 24)
    sample = pad_batch([data[0], data[1]], data.pad_id)
    pruned = structured_prune(get_modality("text").build_classifier(tiny_model_cfg, num_labels=2).eval(), 0.5, sample)
    path = tmp_path / "pruned.onnx"
    export_onnx(pruned, path, sample, opset=17, dynamo=False)
    report = parity(pruned, ort_session(path, threads=1), data, batch_size=3)
    assert report["rows"] == len(TEXTS) and report["prediction_agreement"] == 1.0 and report["max_abs_logit_diff"] < 1e-4


def test_int8_quantization_shrinks_the_model_and_stays_close(tmp_path, exported):
    from tunepipe.optimize.onnx_export import ort_logits
    from tunepipe.optimize.quantization import quantize_int8

    model, data, path = exported
    target = tmp_path / "model.int8.onnx"
    info = quantize_int8(path, target, "dynamic")
    assert info["mode"] == "dynamic"
    assert target.stat().st_size < 0.35 * path.stat().st_size  # the embedding table dominates the tiny model: int8 is a quarter
    fp32 = ort_logits(ort_session(path, threads=1), model.input_names, data, 4)
    int8 = ort_logits(ort_session(target, threads=1), model.input_names, data, 4)
    assert int8.shape == fp32.shape and np.abs(int8 - fp32).max() < 0.5


def test_onnx_runtime_uses_the_declared_threads(exported):
    _, _, path = exported
    options = ort_session(path, threads=3).get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1


def test_auto_quantization_takes_the_modality_default_and_an_explicit_mode_wins():
    from tunepipe.optimize.quantization import quantization_mode

    assert [quantization_mode("auto", get_modality(name).default_quantization) for name in ("text", "image")] == ["dynamic", "static"]
    assert quantization_mode("dynamic", get_modality("image").default_quantization) == "dynamic"


def test_graph_fusion_fuses_attention_and_keeps_parity(tmp_path, tiny_model_cfg):
    """ORT's transformer optimizer fuses the eager-attention export of a BERT; the fused graph computes the same logits."""
    import onnx

    from tunepipe.optimize.graph_fusion import exportable_for_fusion, fuse, fusion_target

    model = get_modality("text").build_classifier(tiny_model_cfg, num_labels=2).eval()
    attention = model.encoder.config._attn_implementation
    tokenizer = load_tokenizer(tiny_model_cfg["pretrained"])
    data = EncodedTexts(TEXTS, None, tokenizer, 24)
    spec = fusion_target(model)
    assert (spec.model_type, spec.num_heads, spec.hidden_size) == ("bert", 2, 32)
    plain, fused = tmp_path / "plain.onnx", tmp_path / "fused.onnx"
    export_onnx(exportable_for_fusion(model), plain, pad_batch([data[0], data[1]], data.pad_id), opset=17, dynamo=False)
    operators = fuse(plain, fused, spec)
    assert operators.get("Attention") == 2 and operators.get("SkipLayerNormalization", 0) >= 2  # 2 layers
    assert "Attention" in {node.op_type for node in onnx.load(str(fused)).graph.node}
    report = parity(model, ort_session(fused, threads=1), data, batch_size=3)  # against the SDPA model itself
    assert report["prediction_agreement"] == 1.0 and report["max_abs_logit_diff"] < 1e-4
    assert attention != "eager" and model.encoder.config._attn_implementation == attention  # the copy was switched, not the model


def test_only_bert_like_encoders_are_fused_and_uneven_heads_are_left_to_detection(tiny_model_cfg):
    from tunepipe.optimize.graph_fusion import fusion_target
    from tunepipe.optimize.pruning import structured_prune

    assert fusion_target(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))) is None  # a CNN: nothing to fuse
    model = get_modality("text").build_classifier(tiny_model_cfg, num_labels=2).eval()
    tokenizer = load_tokenizer(tiny_model_cfg["pretrained"])
    data = EncodedTexts(TEXTS, None, tokenizer, 24)
    pruned = structured_prune(model, 0.5, pad_batch([data[0], data[1]], data.pad_id))
    heads = {m.num_attention_heads for m in pruned.modules() if hasattr(m, "num_attention_heads") and hasattr(m, "all_head_size")}
    spec = fusion_target(pruned)
    assert spec.model_type == "bert"
    assert (spec.num_heads > 0) == (len(heads) == 1)
