"""ONNX export with dynamic axes, a parity check that can fail, and the INT8 choices with the rule that ships one."""

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


@pytest.mark.parametrize("name", ["dynamic", "dynamic-per-channel", "dynamic-mixed", "static", "static-percentile", "static-entropy"])
def test_each_int8_choice_writes_a_valid_model_that_stays_close(tmp_path, exported, name):
    from tunepipe.optimize.onnx_export import ort_logits
    from tunepipe.optimize.quantization import CHOICES, quantize_int8
    from tunepipe.optimize.variants import calibration_feeds

    assert set(CHOICES) == {"dynamic", "dynamic-per-channel", "dynamic-mixed", "static", "static-percentile", "static-entropy"}
    model, data, path = exported
    target = tmp_path / "model.int8.onnx"
    info = quantize_int8(path, target, name, calibration_feeds(data, model.input_names, batch_size=2))  # onnx.checker passed inside
    assert info["choice"] == name and info["mode"] == CHOICES[name].method
    # the embedding table dominates the tiny model: int8 is about a quarter (static QDQ keeps some fp32 bias and scales)
    assert target.stat().st_size < 0.35 * path.stat().st_size
    fp32 = ort_logits(ort_session(path, threads=1), model.input_names, data, 4)
    int8 = ort_logits(ort_session(target, threads=1), model.input_names, data, 4)
    assert int8.shape == fp32.shape and np.abs(int8 - fp32).max() < 0.5
    if name == "dynamic-mixed":  # the nodes it names were measured and really are left fp32
        import onnx

        kept = [entry["node"] for entry in info["fp32_nodes"]]
        assert 1 <= len(kept) and all(entry["relative_error"] > info["median_relative_error"] for entry in info["fp32_nodes"])
        ops = {node.name: node.op_type for node in onnx.load(str(target)).graph.node}
        assert all(ops.get(node) == "MatMul" for node in kept)


def test_choices_that_calibrate_refuse_to_run_without_validation_rows(tmp_path, exported):
    from tunepipe.optimize.quantization import quantize_int8

    _, _, path = exported
    for name in ("static", "dynamic-mixed"):
        with pytest.raises(ValueError, match="needs calibration batches"):
            quantize_int8(path, tmp_path / "x.onnx", name)


def two_matmuls(path):
    """x (1, 2) @ I -> ya, and z (1, 2) @ [[1, 0.01], [0, 0]] -> yb: one node limited by its activation's int8 grid,
    one by its weights' per-tensor grid."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "wa"], ["ya"], name="a"), helper.make_node("MatMul", ["z", "wb"], ["yb"], name="b")],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("x", "z")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("ya", "yb")],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "wa"), numpy_helper.from_array(np.array([[1, 0.01], [0, 0]], dtype=np.float32), "wb")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_node_sensitivity_is_each_nodes_int8_output_error_worked_by_hand(tmp_path):
    from tunepipe.optimize.quantization import NodeError, dynamic_node_errors, nodes_left_fp32

    path = two_matmuls(tmp_path / "two.onnx")
    feeds = [{"x": np.array([[0.4, 255.0]], dtype=np.float32), "z": np.array([[255.0, 0.0]], dtype=np.float32)}]
    # a: x's range [0, 255] gives the uint8 grid step 1, so 0.4 becomes 0; the identity weight is exact in int8:
    #    error 0.4 / |(0.4, 255)|.
    # b: z is on the grid; 0.01 on the per-tensor weight grid (step 1/127) becomes 1/127: output (255, 2.55) comes
    #    out (255, 255/127): error (2.55 - 255/127) / |(255, 2.55)|. Per channel, 0.01 is its column's own scale: exact.
    a, b = 0.4 / np.hypot(0.4, 255.0), (2.55 - 255 / 127) / np.hypot(255.0, 2.55)
    errors = dynamic_node_errors(path, feeds, per_channel=False)
    assert [(e.node, e.op_type, e.weight_elements) for e in errors] == [("b", "MatMul", 4), ("a", "MatMul", 4)]  # largest first
    assert [e.relative_error for e in errors] == pytest.approx([b, a], rel=1e-4)
    per_channel = {e.node: e.relative_error for e in dynamic_node_errors(path, feeds, per_channel=True)}
    assert per_channel["a"] == pytest.approx(a, rel=1e-4) and per_channel["b"] == pytest.approx(0.0, abs=1e-7)

    # left fp32: largest error first, within the byte budget (3 bytes more per weight), above the median, at most max_nodes
    rows = [NodeError("big", "MatMul", 100, 0.5), NodeError("huge-weight", "MatMul", 10_000, 0.4), NodeError("small", "MatMul", 10, 0.3),
            NodeError("low", "MatMul", 10, 0.01), NodeError("lower", "MatMul", 10, 0.001), NodeError("lowest", "MatMul", 10, 0.0001)]
    # huge-weight does not fit; low is below the median error (0.155): never worth its bytes
    assert nodes_left_fp32(rows, budget_bytes=400, max_nodes=5) == ["big", "small"]
    assert nodes_left_fp32(rows, budget_bytes=400, max_nodes=1) == ["big"]
    assert nodes_left_fp32(rows, budget_bytes=100, max_nodes=5) == ["small"]
    assert nodes_left_fp32(rows, budget_bytes=-1, max_nodes=5) == [] and nodes_left_fp32([], 1e9, 5) == []


def test_the_shipped_int8_is_the_best_on_validation_within_the_size_bound():
    from tunepipe.optimize.quantization import Int8Candidate, select_int8

    def c(name, val, size, ms):
        return Int8Candidate(name, val_score=val, size_ratio=size, latency_ms=ms)

    rows = [c("dynamic", 0.80, 0.25, 50.0), c("dynamic-mixed", 0.83, 0.31, 60.0), c("dynamic-per-channel", 0.82, 0.26, 55.0), c("static", 0.79, 0.28, 30.0)]
    assert select_int8(rows, 0.3) == "dynamic-per-channel"  # dynamic-mixed is more accurate but over the bound
    assert select_int8(rows, 0.35) == "dynamic-mixed"
    assert select_int8(rows, 0.3) == select_int8(list(reversed(rows)), 0.3)  # order does not matter
    tie = [c("slow", 0.82, 0.25, 55.0), c("fast", 0.82, 0.29, 40.0)]
    assert select_int8(tie, 0.3) == "fast"  # equal val accuracy: the faster at the largest timed batch
    assert select_int8(rows, 0.2) == "dynamic"  # none small enough: the smallest
    # test accuracy is not an input: the rule cannot select on it. An empty val split (nan) ranks last
    assert select_int8([c("nan", float("nan"), 0.25, 1.0), c("scored", 0.5, 0.25, 9.0)], 0.3) == "scored"
    with pytest.raises(ValueError):
        select_int8([], 0.3)


def test_export_quantize_names_the_choices_auto_is_the_modalitys_list_and_an_unknown_one_is_a_params_error():
    from tunepipe.errors import ParamsError
    from tunepipe.optimize.quantization import AUTO_CHOICES, int8_choices

    def names(requested, modality):
        return [choice.name for choice in int8_choices(requested, get_modality(modality).default_quantization)]

    assert names("auto", "text") == list(AUTO_CHOICES["dynamic"]) == ["dynamic-per-channel", "dynamic-mixed"]
    assert names("auto", "image") == list(AUTO_CHOICES["static"]) == ["static", "static-percentile"]
    assert names("dynamic", "image") == ["dynamic"] and names("static", "text") == ["static"]  # the old values still work
    assert names(["static-entropy", "dynamic", "dynamic"], "text") == ["static-entropy", "dynamic"]
    with pytest.raises(ParamsError, match="unknown INT8 choice 'dynamik'"):
        int8_choices(["dynamic", "dynamik"], "dynamic")


def test_onnx_runtime_uses_the_declared_threads(exported):
    _, _, path = exported
    options = ort_session(path, threads=3).get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1


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


def test_the_reports_export_section_lists_every_int8_choice_and_marks_the_shipped_one(tmp_path):
    """Report section 7 (report/sections/export.py and its template): one variants row and one INT8-choices row per
    choice tried, the shipped one marked, each a point of the frontier figure (the shipped one boxed)."""
    import copy
    import re

    from tests.report.test_report import INPUTS, render, section

    inputs = copy.deepcopy(INPUTS)
    fp32 = inputs["variants"]["variants"][1]
    int8 = inputs["variants"]["variants"].pop()
    fp32["val_accuracy"] = 0.80
    for name, val, size in (("dynamic", 0.79, 0.25), ("dynamic-mixed", 0.795, 0.28)):
        inputs["variants"]["variants"].append({**int8, "variant": f"pruned-int8-{name}", "val_accuracy": val,
                                               "quantization": {"choice": name, "mode": "dynamic", "recipe": f"recipe of {name}"},
                                               "vs_fp32": {"size_ratio": size, "latency_ratio": {"1": 0.6}, "val_accuracy_delta": val - 0.80, "test_accuracy_delta": -0.005},
                                               "seconds": {"total": 4.2}, "selected": name == "dynamic-mixed"})
    inputs["variants"] |= {"int8_selected": "pruned-int8-dynamic-mixed", "int8_rule": "best validation accuracy within 0.3x"}
    export = section(render(tmp_path, inputs), "export")
    rows = dict(re.findall(r"<tr(?: class=\"selected\")?>\s*<td>(pruned-int8-[a-z-]+)</td>(.*?)</tr>", export, re.S))
    assert list(rows) == ["pruned-int8-dynamic", "pruned-int8-dynamic-mixed"]
    assert "model.int8.onnx" in rows["pruned-int8-dynamic-mixed"] and "tried" in rows["pruned-int8-dynamic"]
    choices = re.findall(r"<tr( class=\"selected\")?>\s*<td>(dynamic[a-z-]*)</td>(.*?)</tr>", export, re.S)
    assert [(bool(marked), name) for marked, name, _ in choices] == [(False, "dynamic"), (True, "dynamic-mixed")]
    assert "-1.0 pts" in choices[0][2] and "0.25×" in choices[0][2] and "4.2 s" in choices[0][2] and "shipped" in choices[1][2]
    assert "best validation accuracy within 0.3x" in export and "#0891b2" in export  # the rule, and the shipped INT8 boxed in the figure


def test_int8_variants_ship_the_rules_pick_and_skip_a_choice_onnxruntime_cannot_quantize(tmp_path, exported, monkeypatch):
    from tunepipe.optimize import quantization
    from tunepipe.optimize.onnx_export import latency, ort_logits
    from tunepipe.optimize.variants import ExportSettings, int8_variants

    model, data, path = exported
    targets = np.array([0, 1, 0, 1])
    session = ort_session(path, threads=1)
    logits = ort_logits(session, model.input_names, data, 4)
    fp32 = {"pruning_level": "dense", "params": 1, "onnx_bytes": path.stat().st_size, "val_accuracy": 0.5, "test_accuracy": 0.5,
            "latency_ms": latency(None, session, data, [2], 1, model.input_names)}
    settings = ExportSettings(opset=17, dynamo=False, latency_batch_sizes=(2,), latency_runs=1, max_abs_logit_diff=1e-3, quantize="auto",
                              calibration_rows=4, fuse=False, int8_max_size_ratio=0.3, parity_rows=None)
    real = quantization.quantize_int8

    def static_breaks(source, target, choice, *args, **kwargs):
        if choice.name == "static":
            raise RuntimeError("no kernel for this graph")
        return real(source, target, choice, *args, **kwargs)

    monkeypatch.setattr(quantization, "quantize_int8", static_breaks)
    choices = (quantization.CHOICES["static"], quantization.CHOICES["dynamic"], quantization.CHOICES["dynamic-per-channel"])
    rows, failed = int8_variants(path, tmp_path / "model.int8.onnx", fp32, logits, data, targets, data, targets, model.input_names,
                                 settings=settings, choices=choices, threads=1)
    assert failed == {"static": "RuntimeError: no kernel for this graph"}
    assert [row["variant"] for row in rows] == ["pruned-int8-dynamic", "pruned-int8-dynamic-per-channel"]
    shipped = [row for row in rows if row["selected"]]
    assert len(shipped) == 1 and shipped[0]["onnx_bytes"] == (tmp_path / "model.int8.onnx").stat().st_size
    with pytest.raises(TunepipeError, match="every INT8 choice failed"):
        int8_variants(path, tmp_path / "none.onnx", fp32, logits, data, targets, data, targets, model.input_names,
                      settings=settings, choices=choices[:1], threads=1)
