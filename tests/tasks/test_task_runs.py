"""Each task end to end on real data, texts and images: the whole pipeline to the report and the bundle, then predict.

Texts: film titles -> genres (multi_label) and -> IMDb rating (regression), the movies presets shrunk
(tests/fixtures/tiny-task-text.yaml). Images: real Fashion-MNIST images whose targets come from the data itself
(tests/pipeline.py fashion_table). The runs are session fixtures (tests/conftest.py).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest

from tests.serving.conftest import serve_env
from tunepipe.tasks import get_task

e2e = pytest.mark.e2e
RUNS = {"genres_run": "multi_label", "rating_run": "regression", "image_tags_run": "multi_label", "image_brightness_run": "regression"}
#: The optional steps a run leaves out: image models have no student, whatever the task.
LEFT_OUT = {"genres_run": set(), "rating_run": set(), "image_tags_run": {"distill"}, "image_brightness_run": {"distill"}}


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


@e2e
@pytest.mark.parametrize("run", RUNS)
def test_every_stage_ran_and_the_metrics_are_the_tasks(run, request):
    project, task = request.getfixturevalue(run), get_task(RUNS[run])
    results = project / "results"
    metrics = read(results / "evaluate" / "metrics.json")
    for name in task.headline_metrics:
        assert math.isfinite(metrics[name]) and math.isfinite(metrics[f"baseline_{name}"]), name
        assert metrics[f"{name}_ci_low"] <= metrics[name] <= metrics[f"{name}_ci_high"], name
    assert metrics["test_rows"] > 0 and not {"accuracy", "auroc"} & set(metrics)  # no single-label numbers where they mean nothing
    for name in task.evaluate_files.values():
        assert (results / "evaluate" / name).stat().st_size > 0, name
    assert read(results / "train" / "summary.json")["task"] == task.name
    history = (results / "train" / "history.csv").read_text().splitlines()[0].split(",")
    assert [f"val_{name}" for name in task.val_metrics] == history[3:-1]
    assert {path.parent.name for path in results.glob("*/skipped.json")} == LEFT_OUT[run]  # the rest runs for every task
    bundle = read(results / "export" / "bundle" / "bundle.json")
    assert bundle["task"]["type"] == task.name
    assert (results / "report.html").stat().st_size > 10_000


@e2e
def test_multi_label_targets_thresholds_and_predictions(genres_run):
    results = genres_run / "results"
    clean = read(results / "clean" / "report.json")
    assert set(clean["labels"]) == {"Action", "Animation", "Comedy", "Documentary", "Drama", "Romance", "Short"}
    assert clean["label_cardinality"] > 1.0  # films with several genres are kept whole
    decision = read(results / "evaluate" / "decision.json")
    assert len(decision["thresholds"]) == 7 and all(0 < t < 1 for t in decision["thresholds"])
    rows = list(csv.DictReader(open(results / "evaluate" / "predictions.csv", encoding="utf-8", newline="")))
    assert {f"prob:{name}" for name in clean["labels"]} <= set(rows[0]) and all(";" not in row["id"] for row in rows)


@e2e
def test_regression_targets_and_errors(rating_run):
    results = rating_run / "results"
    target = read(results / "clean" / "report.json")["target"]
    assert 1.0 <= target["min"] < target["mean"] < target["max"] <= 10.0  # IMDb ratings
    assert read(results / "train" / "summary.json")["target_stats"]["std"] > 0
    worst = read(results / "evaluate" / "worst_errors.json")["rows"]
    assert worst and abs(worst[0]["error"]) >= abs(worst[-1]["error"])


def predict(bundle, rows, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "tunepipe.cli", "predict", str(bundle), str(source), "-o", str(tmp_path / "out.csv"), "--no-progress"],
                          capture_output=True, text=True, env=serve_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8", newline="")))


@e2e
def test_predict_answers_with_label_sets_and_numbers(genres_run, rating_run, tmp_path):
    rows = [{"id": "1", "text": "The Return of the Killer Tomatoes"}, {"id": "2", "text": "A Love Story in Paris"}]
    labels = read(genres_run / "results" / "export" / "bundle" / "bundle.json")["labels"]
    scored = predict(genres_run / "results" / "export" / "bundle", rows, tmp_path / "genres")
    assert list(scored[0])[:2] == ["id", "labels"] and {f"prob_{name}" for name in labels} <= set(scored[0])
    assert all(set(row["labels"].split(";")) <= set(labels) | {""} for row in scored)
    numbers = predict(rating_run / "results" / "export" / "bundle", rows, tmp_path / "rating")
    assert list(numbers[0])[:2] == ["id", "prediction"] and all(0.0 < float(row["prediction"]) < 11.0 for row in numbers)
