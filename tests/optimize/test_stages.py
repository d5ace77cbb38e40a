"""prune -> export through the stage CLIs, for a text model (tiny BERT) and an image model (EfficientNet-Lite0)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from tunepipe.checkpoints import load_model
from tunepipe.io import write_jsonl
from tunepipe.modalities import get_modality
from tunepipe.optimize.onnx_export import ort_session
from tunepipe.optimize.quantization import AUTO_CHOICES, Int8Candidate, select_int8
from tunepipe.stages import export as export_stage
from tunepipe.stages import prune as prune_stage
from tunepipe.stages.harness import main

NAMES = ["neg", "pos"]


def checkpoint(path, model, model_cfg, modality):
    """What the train stage writes, as far as load_checkpoint reads it."""
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model_cfg": model_cfg, "label_names": NAMES, "modality": modality}, "state_dict": state}, path)


def run_prune_and_export(tmp_path, ckpt, rows, prune_cfg, quantize="auto"):
    splits = {}
    for name, part in zip(("train", "val", "test"), (rows[:16], rows[16:32], rows[32:])):
        splits[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(splits[name], part)
    params = {"seed": 0, "prune": {"batch_size": 8, "max_accuracy_drop": 1.0, "select": "smallest", "finetune_steps": 2, "finetune_lr": 1e-4, "finetune_batch_size": 4, "latency_runs": 2, **prune_cfg}}
    out = tmp_path / "out"
    code = main(prune_stage.STAGE, ["--params", json.dumps(params), "--in", f"best={ckpt}", *[f"--in={k}={v}" for k, v in splits.items()], "--out", f"model={out / 'model.pt'}", "--out", f"levels={out / 'levels.json'}"])
    assert code == 0
    assert run_export(out, ckpt, splits, quantize=quantize) == 0
    return out


def run_export(out, ckpt, splits, quantize="auto", max_abs_logit_diff=1e-3, parity_rows=None):
    export_params = {"export": {"opset": 17, "dynamo": False, "latency_batch_sizes": [1, 4], "latency_runs": 2, "max_abs_logit_diff": max_abs_logit_diff, "quantize": quantize, "calibration_rows": 8, "fuse": True,
                              "int8_max_size_ratio": 0.3, "parity_rows": parity_rows}}
    outputs = {"onnx": "model.onnx", "int8": "model.int8.onnx", "parity": "parity.json", "variants": "variants.json", "card": "model_card.json", "bundle": "bundle"}
    return main(
        export_stage.STAGE,
        ["--params", json.dumps(export_params), "--in", f"model={out / 'model.pt'}", "--in", f"best={ckpt}", "--in", f"val={splits['val']}", "--in", f"test={splits['test']}", *[f"--out={k}={out / v}" for k, v in outputs.items()]],
    )


def check_outputs(out, dense_params, input_names):
    levels = json.loads((out / "levels.json").read_text())
    by_name = {level["name"]: level for level in levels["levels"]}
    structured = by_name["structured-0.50"]
    # structured pruning really removed parameters; unstructured only zeroed them
    assert structured["total_params"] < dense_params and structured["removed_fraction"] > 0
    assert by_name["unstructured-0.50"]["total_params"] == dense_params
    assert by_name["unstructured-0.50"]["nonzero_params"] < dense_params
    assert all(level["latency_ms"] > 0 for level in levels["levels"])
    # max_accuracy_drop 1.0 lets every level qualify: "smallest" is the one with the fewest non-zero params
    assert levels["selected"] == min(levels["levels"], key=lambda level: level["nonzero_params"])["name"]

    model, payload = load_model(out / "model.pt")
    selected = by_name[levels["selected"]]
    assert payload["pruning_level"] == {"name": selected["name"], "method": selected["method"], "sparsity": selected["sparsity"]}
    assert (levels["selected_method"], levels["selected_sparsity"]) == (selected["method"], selected["sparsity"])
    assert sum(p.numel() for p in model.parameters()) == by_name[levels["selected"]]["total_params"]

    onnx.checker.check_model(str(out / "model.onnx"))
    record = json.loads((out / "variants.json").read_text())
    variants = {row["variant"]: row for row in record["variants"]}
    int8_rows = [row for row in record["variants"] if row["precision"] == "int8"]
    assert list(variants)[:2] == ["dense-fp32", "pruned-fp32"] and [row["variant"] for row in int8_rows] == list(variants)[2:]
    assert variants["dense-fp32"]["params"] == dense_params
    assert variants["pruned-fp32"]["prediction_agreement"] == 1.0 and variants["pruned-fp32"]["max_abs_logit_diff"] < 1e-3
    # one INT8 choice is shipped as model.int8.onnx: the one the rule picks from the rows written, on validation accuracy
    assert [row["variant"] for row in int8_rows if row["selected"]] == [record["int8_selected"]]
    assert record["int8_selected"] == select_int8([Int8Candidate(row["variant"], row["val_accuracy"], row["vs_fp32"]["size_ratio"], row["latency_ms"]["4"]["onnxruntime"])
                                                   for row in int8_rows], record["int8_max_size_ratio"])
    shipped = variants[record["int8_selected"]]
    assert shipped["onnx_bytes"] == (out / "model.int8.onnx").stat().st_size
    for row in int8_rows:
        assert row["size_ratio"] < 0.5  # int8 weights: a quarter of fp32, plus graph overhead
        assert set(row["latency_ms"]) == {"1", "4"} and row["val_rows"] == 16 and 0 <= row["val_accuracy"] <= 1
        assert row["vs_fp32"]["size_ratio"] == pytest.approx(row["onnx_bytes"] / variants["pruned-fp32"]["onnx_bytes"], abs=1e-4)
        assert row["vs_fp32"]["val_accuracy_delta"] == pytest.approx(row["val_accuracy"] - variants["pruned-fp32"]["val_accuracy"], abs=1e-6)
        # each figure is rounded to 10 ms on its own, so the parts may add up to a little more than the rounded total
        assert row["seconds"]["quantize"] > 0 and row["seconds"]["total"] >= row["seconds"]["quantize"] + row["seconds"]["val_scoring"] - 0.015
    int8 = ort_session(out / "model.int8.onnx", threads=1)
    assert [i.name for i in int8.get_inputs()] == input_names
    card = json.loads((out / "model_card.json").read_text())
    assert card["labels"] == NAMES and [i["name"] for i in card["inputs"]] == input_names
    assert card["metrics"]["accuracy"] == variants["pruned-fp32"]["test_accuracy"] and card["metrics"]["int8_accuracy"] == shipped["test_accuracy"]
    # the card names the files a user deploys beside it, not the temporary names they had while export ran
    assert (card["model"]["file"], card["model"]["int8_file"]) == ((out / "model.onnx").name, (out / "model.int8.onnx").name)
    # the bundle: everything inference needs, checked by its own manifest, and its model answers like model.onnx
    from tunepipe.serving.runtime import load_bundle

    bundle = load_bundle(out / "bundle", verify=True)
    assert bundle.labels == NAMES and bundle.manifest["input_names"] == input_names and bundle.card == card
    assert (out / "bundle" / "model.onnx").read_bytes() == (out / "model.onnx").read_bytes()
    parity = json.loads((out / "parity.json").read_text())
    assert parity["pruning_level"] == levels["selected"] and parity["onnx_bytes"] == (out / "model.onnx").stat().st_size
    # the verdict is written once, here; nobody re-judges it with the params
    assert parity["passed"] is True and parity["tolerance"] == 1e-3 and parity["max_abs_logit_diff"] <= parity["tolerance"]


def test_text_model_prunes_exports_and_quantizes(tmp_path, tiny_model_cfg, labelled_rows):
    model = get_modality("text").build_classifier(tiny_model_cfg, num_labels=2)
    ckpt = tmp_path / "best.ckpt"
    checkpoint(ckpt, model, tiny_model_cfg, "text")
    rows = [{**row, "label": row["label"]} for row in labelled_rows]
    out = run_prune_and_export(tmp_path, ckpt, rows, {"method": "both", "sparsities": [0.5]})
    check_outputs(out, sum(p.numel() for p in model.parameters()), ["input_ids", "attention_mask"])
    variants = {row["variant"]: row for row in json.loads((out / "variants.json").read_text())["variants"]}
    # auto: the transformer list of INT8 choices, each a row
    assert [name for name in variants if "int8" in name] == [f"pruned-int8-{name}" for name in AUTO_CHOICES["dynamic"]]
    assert all(variants[f"pruned-int8-{name}"]["quantization"]["choice"] == name for name in AUTO_CHOICES["dynamic"])
    assert all(variants[f"pruned-int8-{name}"]["quantization"]["mode"] == "dynamic" for name in AUTO_CHOICES["dynamic"])
    mixed = variants["pruned-int8-dynamic-mixed"]["quantization"]
    assert mixed["calibration_split"] == "val" and mixed["fp32_nodes"] and mixed["sensitivity"].startswith("per-node output error")
    # the BERT's graphs are fused for ONNX Runtime (and still passed parity); the structured level has uneven
    # heads or not, but its LayerNorm/GELU patterns fuse either way
    assert variants["dense-fp32"]["graph_fusion"]["applied"] and variants["dense-fp32"]["graph_fusion"]["operators"]["Attention"] == 2
    assert variants["pruned-fp32"]["graph_fusion"]["applied"] and variants["pruned-fp32"]["graph_fusion"]["operators"]

    # a parity failure stops export before anything is written: a parity.json on disk always passed
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "model.pt").write_bytes((out / "model.pt").read_bytes())
    splits = {name: tmp_path / f"{name}.jsonl" for name in ("val", "test")}
    assert run_export(failed, ckpt, splits, max_abs_logit_diff=-1.0) == 2  # no graph is within a negative tolerance
    assert sorted(path.name for path in failed.iterdir()) == ["model.pt"]

    # export.parity_rows: the check compares the first test rows only; the variants are still scored on every test row
    whole = json.loads((out / "parity.json").read_text())
    assert (whole["rows"], whole["test_rows"], whole["parity_rows"]) == (16, 16, None)
    capped = tmp_path / "capped"
    capped.mkdir()
    (capped / "model.pt").write_bytes((out / "model.pt").read_bytes())
    assert run_export(capped, ckpt, splits, quantize="dynamic-per-channel", parity_rows=5) == 0
    parity = json.loads((capped / "parity.json").read_text())
    assert (parity["rows"], parity["test_rows"], parity["parity_rows"]) == (5, 16, 5)
    scored = {row["variant"]: row for row in json.loads((capped / "variants.json").read_text())["variants"]}
    for name in ("dense-fp32", "pruned-fp32"):
        assert (scored[name]["rows"], scored[name]["test_rows"]) == (5, 16)
        assert scored[name]["test_accuracy"] == variants[name]["test_accuracy"]
    int8 = "pruned-int8-dynamic-per-channel"  # compared with the fp32 model's logits on every test row
    assert [scored[int8][key] for key in ("rows", "test_accuracy", "max_abs_logit_diff_vs_fp32")] == \
           [variants[int8][key] for key in ("rows", "test_accuracy", "max_abs_logit_diff_vs_fp32")]
    card = json.loads((capped / "model_card.json").read_text())["metrics"]
    assert (card["rows"], card["onnx_vs_pytorch_rows"]) == (16, 5)


@pytest.fixture
def image_rows(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(44):
        label = NAMES[i % 2]
        base = 200 if label == "pos" else 40
        pixels = np.clip(rng.normal(base, 30, size=(20, 20, 3)), 0, 255).astype(np.uint8)
        path = tmp_path / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        rows.append({"id": f"r{i}", "path": str(path), "label": label})
    return rows


def test_image_model_prunes_channels_exports_and_quantizes_statically(tmp_path, image_rows):
    model_cfg = {"pretrained": "efficientnet-lite0", "dropout": 0.1, "image_size": 32, "allow_download": False}
    model = get_modality("image").build_classifier(model_cfg, num_labels=2)
    ckpt = tmp_path / "best.ckpt"
    checkpoint(ckpt, model, model_cfg, "image")
    out = run_prune_and_export(tmp_path, ckpt, image_rows, {"method": "both", "sparsities": [0.5]})
    check_outputs(out, sum(p.numel() for p in model.parameters()), ["pixels"])
    variants = {row["variant"]: row for row in json.loads((out / "variants.json").read_text())["variants"]}
    assert [name for name in variants if "int8" in name] == [f"pruned-int8-{name}" for name in AUTO_CHOICES["static"]]
    assert variants["pruned-int8-static"]["quantization"]["mode"] == "static"
    assert variants["pruned-int8-static"]["quantization"]["calibration_rows"] == 8
    assert variants["pruned-fp32"]["graph_fusion"] is None  # a CNN: nothing for the transformer fuser
