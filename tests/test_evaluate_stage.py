"""The baseline and evaluate stages end to end on tiny data: a random tiny model (text or image) and the real baseline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tunepipe.io import write_jsonl
from tunepipe.stages import baseline, evaluate
from tunepipe.stages.harness import main

IMAGE_CFG = {"pretrained": "efficientnet-lite0", "allow_download": False, "dropout": 0.1, "image_size": 32}


def fake_checkpoint(path: Path, model_cfg: dict, names: list[str], modality: str) -> None:
    """What train's checkpoint holds for load_checkpoint: hyper-parameters and the module's weights under `model.`."""
    from tunepipe.modalities import get_modality

    torch.manual_seed(0)
    model = get_modality(modality).build_classifier(model_cfg, len(names), pretrained_weights=False)
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model_cfg": model_cfg, "label_names": names, "modality": modality}, "state_dict": state}, path)


def image_rows(folder: Path) -> list[dict]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(36):
        label = ("bag", "shoe", "shirt")[i % 3]
        pixels = rng.integers(0, 120, (28, 28), dtype=np.uint8) + 60 * (i % 3)
        path = folder / f"{i}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        rows.append({"id": str(i), "path": str(path), "label": label})
    return rows


@pytest.mark.parametrize("modality", ["text", "image"])
def test_evaluate_scores_model_and_baseline_alike(tmp_path, modality, labelled_rows, tiny_model_cfg):
    if modality == "text":
        rows, names, model_cfg, key = labelled_rows, ["neg", "pos"], tiny_model_cfg, "text"
    else:
        rows, names, model_cfg, key = image_rows(tmp_path), ["bag", "shirt", "shoe"], IMAGE_CFG, "path"
    train, test = [row for i, row in enumerate(rows) if i % 4], rows[::4]
    assert {row["label"] for row in test} == set(names)
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "test.jsonl", test)
    fake_checkpoint(tmp_path / "best.ckpt", model_cfg, names, modality)
    params = {
        "seed": 7,
        "data": {"modality": modality, "labels": names},
        "baseline": {"max_features": 1000, "ngram_max": 2, "C": 1.0},
        "evaluate": {"batch_size": 8, "precision": "32-true", "bootstrap_resamples": 50, "worst_examples": 3, "slice_columns": [], "slice_min_rows": 10, "alpha": 0.05},
    }
    base_dir, out = tmp_path / "baseline", tmp_path / "evaluate"
    assert main(baseline.STAGE, [
        "--params", json.dumps(params), "--in", f"train={tmp_path / 'train.jsonl'}", "--in", f"test={tmp_path / 'test.jsonl'}",
        "--out", f"metrics={base_dir / 'metrics.json'}", "--out", f"predictions={base_dir / 'predictions.csv'}",
    ]) == 0
    files = {k: out / name for k, name in (
        ("metrics", "metrics.json"), ("confusion", "confusion.json"), ("predictions", "predictions.csv"), ("per_class", "per_class.csv"),
        ("roc", "roc.csv"), ("pr", "pr.csv"), ("calibration", "calibration.csv"), ("worst_errors", "worst_errors.json"),
        ("details", "details.json"), ("slices", "slices.json"), ("slices_table", "slices.csv"), ("comparison", "comparison.json"))}
    # what train wrote of this (untrained) model: one epoch, stopped at its best
    (tmp_path / "summary.json").write_text(json.dumps({"epochs_run": 1, "best_epoch": 1, "train_rows": len(train), "data_aware": {}}))
    (tmp_path / "history.csv").write_text("epoch,train_loss,val_loss,val_accuracy,val_f1_macro,seconds\n1,0.7,0.69,0.5,0.5,1.0\n")
    argv = ["--params", json.dumps(params), "--in", f"best={tmp_path / 'best.ckpt'}", "--in", f"test={tmp_path / 'test.jsonl'}",
            "--in", f"baseline_predictions={base_dir / 'predictions.csv'}",
            "--in", f"train_summary={tmp_path / 'summary.json'}", "--in", f"train_history={tmp_path / 'history.csv'}"]
    for name, path in files.items():
        argv += ["--out", f"{name}={path}"]
    assert main(evaluate.STAGE, argv) == 0

    metrics = json.loads(files["metrics"].read_text())
    assert all(isinstance(v, (int, float)) for v in metrics.values())  # flat, so `dvc metrics diff` reads every key
    assert metrics["test_rows"] == len(test)
    # the baseline scored from its probabilities file equals the baseline stage's own metrics (same code, exact values)
    base = json.loads((base_dir / "metrics.json").read_text())
    for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc"):
        assert metrics[f"baseline_{name}"] == base[name], name
    for prefix in ("", "baseline_"):
        for name in ("accuracy", "f1_macro", "auroc"):
            assert metrics[f"{prefix}{name}_ci_low"] <= metrics[f"{prefix}{name}"] <= metrics[f"{prefix}{name}_ci_high"]
        for name in ("f1_weighted", "average_precision", "ece"):
            assert 0.0 <= metrics[f"{prefix}{name}"] <= 1.0

    def table(name: str) -> list[dict]:
        with open(files[name], newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    predictions = table("predictions")
    probs = torch.tensor([[float(row[f"prob:{n}"]) for n in names] for row in predictions])
    assert torch.allclose(probs.sum(dim=1), torch.ones(len(test)), atol=1e-5)
    accuracy = sum(row["label"] == row["predicted"] for row in predictions) / len(test)
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    per_class = table("per_class")
    assert [row["label"] for row in per_class] == names and sum(int(row["support"]) for row in per_class) == len(test)
    assert sum(int(row["count"]) for row in table("calibration")) == len(test)
    curve_classes = {row["class"] for row in table("roc")}
    assert curve_classes == ({"pos"} if len(names) == 2 else set(names)) == {row["class"] for row in table("pr")}
    confusion = json.loads(files["confusion"].read_text())
    assert sum(map(sum, confusion["matrix"])) == len(test) and confusion["labels"] == names

    worst = json.loads(files["worst_errors"].read_text())["rows"]
    wrong = [row for row in predictions if row["label"] != row["predicted"]]
    assert len(worst) == min(3, len(wrong))
    assert [w["confidence"] for w in worst] == sorted((w["confidence"] for w in worst), reverse=True)
    by_id = {row["id"]: row for row in test}
    for w in worst:
        assert w["label"] != w["predicted"] and w["input"] == by_id[w["id"]][key]  # the text, or the image's path
    details = json.loads(files["details"].read_text())
    assert set(details["models"]) == {"fine_tuned", "baseline"} and details["bootstrap"]["resamples"] == 50
    comparison = json.loads(files["comparison"].read_text())
    if comparison["fine_tuned_vs_baseline"]["verdict"] == "better":
        assert comparison["diagnosis"] is None
    else:  # an untrained model: the summary says so in words, and names what it can see (a few rows)
        diagnosis = comparison["diagnosis"]
        assert diagnosis["headline"].startswith("The fine-tuned model is ") and "baseline" in diagnosis["headline"]
        assert "few rows" in {cause["cause"] for cause in diagnosis["causes"]}


def test_baseline_predictions_for_other_labels_are_a_clear_error(tmp_path):
    path = tmp_path / "predictions.csv"
    path.write_text("id,label,predicted,confidence,input,prob:a,prob:b\n1,a,a,0.9,x,0.9,0.1\n", encoding="utf-8")
    from tunepipe.errors import DataError

    with pytest.raises(DataError, match="prob:c"):
        evaluate.read_outputs(path, ["prob:a", "prob:c"], ["1"])
    with pytest.raises(DataError, match="not the test split"):
        evaluate.read_outputs(path, ["prob:a", "prob:b"], ["1", "2"])
    assert evaluate.read_outputs(path, ["prob:b", "prob:a"], ["1"]).tolist() == [[0.1, 0.9]]
