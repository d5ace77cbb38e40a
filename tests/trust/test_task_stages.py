"""The explain and robustness stages, run as the pipeline runs them (`python -m tunepipe.stages.<name>`), on tiny
checkpoints of each task trained here with `tunepipe.training.fit` on the tiny random BERT."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunepipe.io import read_csv_rows, write_csv, write_json, write_jsonl
from tunepipe.tasks import get_task

WORDS = ["space", "love", "laugh", "night", "war", "city", "ghost", "song", "road", "river", "king", "dream"]
GENRES = ["Comedy", "Drama", "Romance"]


def rows_for(task_name: str) -> list[dict]:
    rows = []
    for i in range(48):
        text = f"the {WORDS[i % 12]} of {WORDS[(i * 5) % 12]} {i}"
        if task_name == "regression":
            label = round(3.0 + (i % 12) * 0.5, 2)
        elif task_name == "single_label":
            label = GENRES[i % 3]
        else:
            label = [g for j, g in enumerate(GENRES) if (i >> j) & 1]
        rows.append({"id": f"r{i}", "text": text, "label": label})
    return rows


def train(task_name: str, folder: Path, model_cfg: dict, default_params: dict) -> tuple[Path, list[dict], list[str]]:
    from tunepipe.training import fit

    task = get_task(task_name)
    rows = rows_for(task_name)
    names = task.names(None, {"label_column": "rating"}, rows)
    cfg = dict(default_params["train"], max_epochs=1, batch_size=16, log_every_n_steps=1, head_init="random", monitor=task.default_monitor,
               loggers=[])
    result = fit(train_rows=rows[:32], train_labels=task.encode(rows[:32], names, "train"), val_rows=rows[32:40],
                 val_labels=task.encode(rows[32:40], names, "val"), label_names=names, model_cfg=model_cfg, train_cfg=cfg, seed=3,
                 work_dir=folder / "train", task=task_name)
    return result.best_checkpoint, rows[32:], names


def stage(name: str, params: dict, inputs: dict, outputs: dict) -> None:
    command = [sys.executable, "-m", f"tunepipe.stages.{name}", "--params", json.dumps(params), "--threads", "1"]
    command += [arg for key, path in inputs.items() for arg in ("--in", f"{key}={path}")]
    command += [arg for key, path in outputs.items() for arg in ("--out", f"{key}={path}")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def predictions(checkpoint: Path, rows: list[dict], folder: Path, decision: dict) -> Path:
    """evaluate's predictions.csv for these rows (the task's `prediction_table`)."""
    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.modalities import get_modality
    from tunepipe.models.inference import predict_logits

    model, meta = load_checkpoint(checkpoint)
    task, modality = get_task(meta["task"]), get_modality(meta["modality"])
    dataset = modality.encode(rows, None, meta["model_cfg"], modality.load_processor(meta["model_cfg"]))
    outputs = task.outputs(predict_logits(model, dataset, 8, "cpu"), meta["target_stats"])
    path = folder / "predictions.csv"
    write_csv(path, *task.prediction_table(rows, meta["label_names"], outputs, "text", None, decision))
    return path


@pytest.mark.parametrize("task_name", ["single_label", "multi_label", "regression"])
def test_explain_and_robustness_stages_on_a_tiny_checkpoint(task_name, tmp_path, tiny_model_cfg, default_params):
    model_cfg = dict(tiny_model_cfg, max_length=16)
    checkpoint, test_rows, names = train(task_name, tmp_path, model_cfg, default_params)
    test = tmp_path / "test.jsonl"
    write_jsonl(test, test_rows)
    decision = {"thresholds": [0.4] * len(names)} if task_name == "multi_label" else {}
    table = predictions(checkpoint, test_rows, tmp_path, decision)

    out = tmp_path / "explain"
    stage("explain", {"explain": {"examples": 2, "steps": 8}}, {"best": checkpoint, "test": test, "predictions": table},
          {"attributions": out / "attributions.json", "heatmaps": out / "heatmaps"})
    record = json.loads((out / "attributions.json").read_text())
    assert record["method"] == f"Integrated Gradients (Captum), of {get_task(task_name).explain_output}"
    assert [item["kind"] for item in record["items"]] == ["error", "error", "correct", "correct"]
    for item in record["items"]:
        assert item["tokens"] and item.get("explained", item["predicted"]) in names
        # completeness: the attributions add up to the change of the explained output (a probability, or the value)
        assert item["attribution_sum"] == pytest.approx(item["output"] - item["baseline_output"], abs=0.05 * max(1.0, abs(item["output"])))
    if task_name == "regression":  # the largest absolute errors first, then the smallest
        errors = [abs(item["error"]) for item in record["items"]]
        assert errors[0] >= errors[1] >= max(errors[2:]) and errors[2] <= errors[3]
        assert all(item["output"] == pytest.approx(item["predicted"], abs=1e-3) for item in record["items"])  # the value itself

    out = tmp_path / "robustness"
    robustness = dict(default_params["robustness"], max_rows=8, severities=[1, 3], batch_size=8, examples=2,
                      attack=dict(default_params["robustness"]["attack"], max_rows=4, steps=2, char_max_edits=1, char_candidates=3))
    inputs = {"best": checkpoint, "test": test}
    if decision:
        write_json(tmp_path / "decision.json", {"task": task_name, "labels": names, **decision})
        inputs["decision"] = tmp_path / "decision.json"
    stage("robustness", {"seed": 1, "robustness": robustness}, inputs,
          {name: out / f"{name}.{ext}" for name, ext in (("metrics", "json"), ("perturbations", "csv"), ("attacks", "csv"), ("examples", "json"))})
    metrics = json.loads((out / "metrics.json").read_text())
    metric = get_task(task_name).trust_metric[0]
    assert metrics["robustness_rows"] == 8 and isinstance(metrics[f"robustness_clean_{metric}"], float)
    assert all(value is None or isinstance(value, (int, float)) for value in metrics.values())  # flat: DVC diffs it (None: no row to count)
    assert {f"attack_{name}_{metric}" for name in ("fgsm", "pgd", "char_greedy")} <= set(metrics)
    perturbations = read_csv_rows(out / "perturbations.csv")
    assert perturbations and {metric, "drop", "flip_rate"} <= set(perturbations[0])
    attacks = read_csv_rows(out / "attacks.csv")
    assert [row["attack"] for row in attacks] == ["fgsm", "pgd", "char_greedy"] and f"clean_{metric}" in attacks[0]
    if task_name == "single_label":  # the default task's files as they were
        assert list(perturbations[0]) == ["perturbation", "severity", "amount", "unit", "rows", "accuracy", "drop", "flip_rate"]
        assert "clean_accuracy" in examples_of(out)
        assert [list(item)[:6] for item in record["items"]] == [["kind", "rank", "id", "label", "predicted", "confidence"]] * 4
        assert not any("explained" in item for item in record["items"])
    if task_name == "regression":
        assert "mean_abs_change" in perturbations[0] and "robustness_mean_abs_change" in metrics
    examples = examples_of(out)
    for example in examples["perturbations"] + examples["attacks"]:
        assert example["clean_prediction"] != example["perturbed_prediction"] or task_name == "regression"


def examples_of(folder: Path) -> dict:
    return json.loads((folder / "examples.json").read_text())
