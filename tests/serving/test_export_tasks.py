"""The export stage's bundle for multi-label and regression models: the thresholds of decision.json, the target stats of the
checkpoint, the drift reference and the card's metric reach the bundle, and the light runtime answers as PyTorch does."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.serving.conftest import run_export_stage, torch_outputs
from tunepipe.checkpoints import save_model
from tunepipe.io import read_json, write_json
from tunepipe.modalities import get_modality
from tunepipe.serving.runtime import Predictor, load_bundle
from tunepipe.tasks import get_task

EXPORT = {"opset": 17, "dynamo": False, "latency_batch_sizes": [1], "latency_runs": 1, "max_abs_logit_diff": 1e-3, "quantize": "dynamic",
          "calibration_rows": 8, "fuse": False, "int8_max_size_ratio": 0.5, "parity_rows": None}
CASES = {
    # task: (names, each row's target from (row index, positive?), decision.json's extra keys, the card's title,
    #        monitoring.json's keys; single_label's as before tasks)
    "single_label": (["neg", "pos"], lambda i, positive: "pos" if positive else "neg", {}, "text classification",
                     ["split", "rows", "label_distribution", "metrics"]),
    "multi_label": (["comedy", "drama"], lambda i, positive: (["comedy"] + (["drama"] if i % 3 == 0 else [])) if positive else (["drama"] if i % 2 else []),
                    {"thresholds": [0.45, 0.55], "thresholds_from": "tuned on validation"}, "text multi-label classification",
                    ["split", "rows", "label_frequency", "metrics"]),
    "regression": (["rating"], lambda i, positive: (7.5 if positive else 4.0) + (i % 5) / 10, {}, "text regression",
                   ["split", "rows", "target_histogram", "metrics"]),
}


@pytest.mark.parametrize("task_name", sorted(CASES))
def test_the_export_stage_writes_a_bundle_that_answers_like_the_model(task_name, tmp_path, tiny_model_cfg, labelled_rows):
    names, target, extra, title, monitoring_keys = CASES[task_name]
    task = get_task(task_name)
    rows = [{**row, "label": target(i, row["label"] == "pos")} for i, row in enumerate(labelled_rows)]
    stats = task.target_stats(task.encode(rows[:16], names, "train"))
    torch.manual_seed(0)
    model = get_modality("text").build_classifier(tiny_model_cfg, task.output_size(names)).eval()
    ckpt = tmp_path / "best.ckpt"
    torch.save({"hyper_parameters": {"model_cfg": tiny_model_cfg, "label_names": names, "modality": "text", "task": task_name, "target_stats": stats},
                "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()}}, ckpt)
    save_model(tmp_path / "model.pt", model, model_cfg=tiny_model_cfg, label_names=names, modality="text",
               pruning_level={"name": "dense", "method": "dense", "sparsity": 0.0}, task=task_name, target_stats=stats)
    write_json(tmp_path / "decision.json", {"task": task_name, "labels": names, **extra})
    out = run_export_stage(tmp_path, EXPORT, tmp_path / "model.pt", ckpt, rows[16:32], rows[32:], decision=tmp_path / "decision.json")

    bundle = load_bundle(out / "bundle", verify=True)
    assert bundle.manifest["task"] == {"type": task_name, "decision": extra, "target_stats": stats}
    level = task.level_metrics[0]
    variants = {row["variant"]: row for row in read_json(out / "variants.json")["variants"]}
    card = bundle.card
    assert card["model"]["task"] == title and card["intended_use"].startswith(f"{title.capitalize()} ")
    assert list(card["metrics"]) == ["split", "rows", level, f"dense_{level}", f"int8_{level}", "onnx_vs_pytorch_max_abs_logit_diff",
                                     "onnx_vs_pytorch_prediction_agreement", "onnx_vs_pytorch_rows"]
    assert card["metrics"][level] == variants["pruned-fp32"][f"test_{level}"] and card["metrics"][f"int8_{level}"] == variants[read_json(out / "variants.json")["int8_selected"]][f"test_{level}"]
    assert list(bundle.monitoring) == monitoring_keys and bundle.monitoring["rows"] == len(rows[32:])
    assert bundle.monitoring["metrics"] == {level: card["metrics"][level], f"int8_{level}": card["metrics"][f"int8_{level}"], "rows": len(rows[32:])}
    texts = [row["text"] for row in rows[32:40]]
    expected = torch_outputs(model, texts, tiny_model_cfg, stats, task)
    np.testing.assert_allclose(Predictor(out / "bundle").predict(texts), expected, atol=1e-4)

