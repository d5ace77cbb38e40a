"""Multi-label and regression bundles: what the bundle carries, `tunepipe predict`'s CSV and `tunepipe serve`'s answers and
drift, against the PyTorch model's own outputs (tiny random BERT bundles written by the bundle writer; see conftest)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.serving.conftest import TASK_SETUP, TASK_TEXTS, running_server, serve_env
from tunepipe.serving.runtime import Predictor, load_bundle

def label_sets(info: dict) -> list[list[str]]:
    """The expected answers of a multi-label bundle: the pipeline's own torch decision at the bundle's thresholds."""
    import torch

    from tunepipe.tasks._label_sets import decisions

    chosen = decisions(torch.tensor(info["expected"]), info["decision"]["thresholds"])
    return [[name for name, on in zip(info["names"], row) if on] for row in chosen.tolist()]


def psi(live: dict[str, float], reference: dict[str, float]) -> float:
    """PSI by hand, with the 1e-4 floor the server uses."""
    total = sum(live.values())
    shares = {key: max(live.get(key, 0.0) / total, 1e-4) for key in reference}
    return sum((shares[key] - max(ref, 1e-4)) * math.log(shares[key] / max(ref, 1e-4)) for key, ref in reference.items())


def check_task_bundle(name: str, bundle, info: dict, title: str, level: str) -> dict:
    """What every task's bundle carries; returns its monitoring.json."""
    loaded = load_bundle(bundle, verify=True)
    spec, card, monitoring = loaded.manifest["task"], loaded.card, loaded.monitoring
    assert loaded.task.name == spec["type"] == name and spec["decision"] == info["decision"] and spec["target_stats"] == info["stats"]
    assert card["model"]["task"] == title and loaded.task.level_metrics[0] == level
    assert card["metrics"][level] == 0.625 and card["metrics"][f"dense_{level}"] == 0.75 and card["metrics"][f"int8_{level}"] == 0.5
    assert "accuracy" not in card["metrics"] and monitoring["metrics"] == {level: 0.625, f"int8_{level}": 0.5, "rows": len(TASK_TEXTS)}
    assert card["outputs"][0]["shape"] == ["batch", loaded.task.output_size(loaded.labels)]
    return monitoring


def test_a_multi_label_bundle_carries_its_thresholds_and_each_labels_test_frequency(multi_label_bundle):
    bundle, info = multi_label_bundle
    monitoring = check_task_bundle("multi_label", bundle, info, "text multi-label classification", "f1_micro")
    assert len(info["decision"]["thresholds"]) == 3
    assert monitoring["label_frequency"] == {"action": 2 / 8, "comedy": 3 / 8, "drama": 4 / 8}


def test_a_regression_bundle_carries_its_target_stats_and_a_histogram_of_test_targets(regression_bundle):
    bundle, info = regression_bundle
    monitoring = check_task_bundle("regression", bundle, info, "text regression", "r2")
    targets = TASK_SETUP["regression"]["targets"]
    histogram = monitoring["target_histogram"]
    assert len(histogram["edges"]) == 11 and histogram["edges"][0] == min(targets) and histogram["edges"][-1] == pytest.approx(max(targets))
    assert sum(histogram["shares"].values()) == pytest.approx(1.0) and len(histogram["shares"]) == 10
    assert histogram["shares"][">=7.54"] == 2 / 8  # 7.9 and 8.1 (the last bin holds the largest target)


def test_an_older_bundle_without_a_task_loads_as_single_label(multi_label_bundle, tmp_path):
    bundle, _ = multi_label_bundle
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    manifest = json.loads((old / "bundle.json").read_text())
    del manifest["task"]
    (old / "bundle.json").write_text(json.dumps(manifest))
    assert load_bundle(old).task.name == "single_label"
    probabilities = Predictor(old).predict(TASK_TEXTS[:3])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)  # softmax over the outputs, as before tasks


def test_an_unknown_task_in_a_bundle_is_a_one_line_error(regression_bundle, tmp_path):
    bundle, _ = regression_bundle
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    manifest = json.loads((other / "bundle.json").read_text())
    manifest["task"]["type"] = "ranking"
    (other / "bundle.json").write_text(json.dumps(manifest))
    done = subprocess.run([sys.executable, "-m", "tunepipe.cli", "predict", str(other), str(other / "x.csv"), "-o", str(tmp_path / "o.csv")],
                          capture_output=True, text=True, env=serve_env(), timeout=120)
    assert done.returncode == 2 and "task 'ranking' in bundle.json" in done.stderr and "Traceback" not in done.stderr, done.stderr


def run_predict(bundle, tmp_path) -> list[dict]:
    source = tmp_path / "films.csv"
    with open(source, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows([f"film-{i}", text] for i, text in enumerate(TASK_TEXTS))
    done = subprocess.run([sys.executable, "-m", "tunepipe.cli", "predict", str(bundle), str(source), "-o", str(tmp_path / "scored.csv"), "--no-progress",
                           "--batch-size", "3"], capture_output=True, text=True, env=serve_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "scored.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return [{"_columns": reader.fieldnames, **row} for row in reader]


def test_predict_writes_label_sets_and_per_label_probabilities(multi_label_bundle, tmp_path):
    bundle, info = multi_label_bundle
    scored = run_predict(bundle, tmp_path)
    assert scored[0]["_columns"] == ["id", "labels", "prob_action", "prob_comedy", "prob_drama"]
    assert [row["id"] for row in scored] == [f"film-{i}" for i in range(len(TASK_TEXTS))]
    expected = label_sets(info)
    assert [row["labels"].split(";") if row["labels"] else [] for row in scored] == expected
    assert len({row["labels"] for row in scored}) > 1  # the thresholds split the rows: not one answer for all
    got = np.array([[float(row[f"prob_{name}"]) for name in info["names"]] for row in scored])
    np.testing.assert_allclose(got, info["expected"], atol=2e-5)


def test_predict_writes_values(regression_bundle, tmp_path):
    bundle, info = regression_bundle
    scored = run_predict(bundle, tmp_path)
    assert scored[0]["_columns"] == ["id", "prediction"]
    np.testing.assert_allclose([float(row["prediction"]) for row in scored], info["expected"], atol=1e-4)
    assert np.ptp(info["expected"]) > 0.5  # the values differ between rows


@pytest.fixture(scope="module")
def multi_server(multi_label_bundle, tmp_path_factory):
    with running_server(str(multi_label_bundle[0]), log_dir=tmp_path_factory.mktemp("serve-multi")) as running:
        yield running


@pytest.fixture(scope="module")
def regression_server(regression_bundle, tmp_path_factory):
    with running_server(str(regression_bundle[0]), log_dir=tmp_path_factory.mktemp("serve-regression")) as running:
        yield running


def test_serve_answers_label_sets_with_probabilities(multi_server, multi_label_bundle):
    bundle, info = multi_label_bundle
    version = load_bundle(bundle).version
    body = multi_server.predict(TASK_TEXTS)
    assert body["model_version"] == version and body["labels"] == label_sets(info) and set(body) == {"model_name", "model_version", "labels", "probabilities"}
    got = np.array([[row[name] for name in info["names"]] for row in body["probabilities"]])
    np.testing.assert_allclose(got, info["expected"], atol=2e-5)

    status, meta, _ = multi_server.request("GET", "/v2/models/tunepipe-model")
    assert status == 200 and [out["name"] for out in meta["outputs"]] == ["labels", "predicted", "probabilities"] and meta["parameters"]["task"] == "multi_label"
    status, answer, _ = multi_server.request("POST", "/v2/models/tunepipe-model/infer",
                                             {"inputs": [{"name": "input", "shape": [len(TASK_TEXTS)], "datatype": "BYTES", "data": TASK_TEXTS}]})
    assert status == 200, answer
    outputs = {out["name"]: out for out in answer["outputs"]}
    assert outputs["labels"]["data"] == [";".join(labels) for labels in label_sets(info)]
    chosen = [[int(name in labels) for name in info["names"]] for labels in label_sets(info)]
    assert outputs["predicted"]["shape"] == [len(TASK_TEXTS), 3] and outputs["predicted"]["data"] == [v for row in chosen for v in row]
    assert outputs["probabilities"]["data"] == pytest.approx(info["expected"].ravel().tolist(), abs=2e-5)


def test_serve_metrics_count_each_predicted_label_and_their_drift(multi_server, multi_label_bundle):
    bundle, info = multi_label_bundle
    loaded = load_bundle(bundle)
    before = {name: multi_server.metric("tunepipe_predictions_total", version=loaded.version, label=name) for name in info["names"]}
    rows_before = multi_server.metric("tunepipe_batch_size_sum", version=loaded.version)
    answers = [multi_server.predict(TASK_TEXTS)["labels"] for _ in range(2)]
    counts = {name: multi_server.metric("tunepipe_predictions_total", version=loaded.version, label=name) for name in info["names"]}
    assert {name: counts[name] - before[name] for name in info["names"]} == {name: sum(name in labels for a in answers for labels in a) for name in info["names"]}
    rows = multi_server.metric("tunepipe_batch_size_sum", version=loaded.version)
    assert rows == rows_before + 2 * len(TASK_TEXTS)
    assert multi_server.metric("tunepipe_label_drift_psi", version=loaded.version) == pytest.approx(frequency_psi(counts, rows, loaded), rel=1e-6)
    # one text over and over: each label's frequency goes to 0 or 1, far from the test split's (PSI over 0.2 reads as drift)
    for _ in range(2):
        multi_server.predict([TASK_TEXTS[0]] * 250)
    counts = {name: multi_server.metric("tunepipe_predictions_total", version=loaded.version, label=name) for name in info["names"]}
    rows = multi_server.metric("tunepipe_batch_size_sum", version=loaded.version)
    drift = multi_server.metric("tunepipe_label_drift_psi", version=loaded.version)
    assert drift == pytest.approx(frequency_psi(counts, rows, loaded), rel=1e-6) and drift > 0.2


def frequency_psi(counts: dict[str, float], rows: float, loaded) -> float:
    """The mean over labels of each label's PSI (present vs absent), by hand."""
    reference = loaded.monitoring["label_frequency"]
    return float(np.mean([psi({"yes": counts[n] / rows, "no": 1 - counts[n] / rows}, {"yes": ref, "no": 1 - ref}) for n, ref in reference.items()]))


def test_serve_answers_values_and_tracks_their_histogram(regression_server, regression_bundle):
    bundle, info = regression_bundle
    loaded = load_bundle(bundle)
    body = regression_server.predict(TASK_TEXTS)
    assert set(body) == {"model_name", "model_version", "predictions"}
    assert body["predictions"] == pytest.approx(info["expected"].tolist(), abs=1e-4)
    status, answer, _ = regression_server.request("POST", "/v2/models/tunepipe-model/infer",
                                                  {"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": TASK_TEXTS[:2]}]})
    assert status == 200 and answer["outputs"][0]["name"] == "prediction" and answer["outputs"][0]["shape"] == [2]
    assert answer["outputs"][0]["data"] == pytest.approx(info["expected"][:2].tolist(), abs=1e-4)

    histogram = loaded.monitoring["target_histogram"]
    edges, shares = histogram["edges"], histogram["shares"]
    bins = list(shares)
    counts = {name: regression_server.metric("tunepipe_predictions_total", version=loaded.version, label=name) for name in bins}
    expected_bins = [bins[min(sum(value >= edge for edge in edges[1:-1]), len(bins) - 1)] for value in info["expected"]]
    expected_bins += expected_bins[:2]  # the OIP request's two rows
    assert counts == {name: float(expected_bins.count(name)) for name in bins}
    assert regression_server.metric("tunepipe_label_drift_psi", version=loaded.version) == pytest.approx(psi(counts, shares), rel=1e-6)


def test_a_single_label_bundle_answers_as_before_tasks(single_label_bundle, tmp_path):
    """The CSV columns and the JSON keys single-label clients read, with today's numbers (argmax label, its probability)."""
    bundle, info = single_label_bundle
    loaded = load_bundle(bundle)
    assert loaded.card["model"]["task"] == "text classification" and list(loaded.monitoring["metrics"]) == ["accuracy", "int8_accuracy", "rows"]
    assert loaded.monitoring["label_distribution"] == {"bad": 2 / 8, "fine": 3 / 8, "good": 3 / 8}
    scored = run_predict(bundle, tmp_path)
    assert scored[0]["_columns"] == ["id", "label", "confidence", "prob_bad", "prob_fine", "prob_good"]
    best = info["expected"].argmax(1)
    assert [row["label"] for row in scored] == [info["names"][i] for i in best]
    np.testing.assert_allclose([float(row["confidence"]) for row in scored], info["expected"].max(1), atol=2e-5)
    with running_server(str(bundle), log_dir=tmp_path) as server:
        body = server.predict(TASK_TEXTS)
        assert list(body) == ["model_name", "model_version", "labels", "confidences", "probabilities"]
        assert body["labels"] == [row["label"] for row in scored]
        status, answer, _ = server.request("POST", "/v2/models/tunepipe-model/infer",
                                           {"inputs": [{"name": "input", "shape": [2], "datatype": "BYTES", "data": TASK_TEXTS[:2]}]})
        assert status == 200 and [out["name"] for out in answer["outputs"]] == ["label", "confidence", "probabilities"]
        assert answer["outputs"][0]["data"] == body["labels"][:2]
        live = {name: server.metric("tunepipe_predictions_total", version=loaded.version, label=name) for name in info["names"]}
        assert sum(live.values()) == len(TASK_TEXTS) + 2
        assert server.metric("tunepipe_label_drift_psi", version=loaded.version) == pytest.approx(psi(live, loaded.monitoring["label_distribution"]), rel=1e-6)


LIGHT_SCRIPT = """
import importlib.abc, json, sys, threading, time, urllib.request

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {heavy!r}:
            raise ImportError(f"blocked: the serving path imported {{name}}")

sys.meta_path.insert(0, Blocker())
from tunepipe.cli import main
assert main(["predict", {bundle!r}, {source!r}, "-o", {out!r}, "--no-progress"]) == 0

import uvicorn
from tunepipe.serving.server import ServeConfig, create_app

server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(bundle={bundle!r})), host="127.0.0.1", port={port}, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
request = urllib.request.Request("http://127.0.0.1:{port}/v1/predict", data=json.dumps({{"inputs": ["light"]}}).encode(),
                                 headers={{"Content-Type": "application/json"}})
print(sorted(json.load(urllib.request.urlopen(request, timeout=30))))
urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=30).read()
server.should_exit = True
print("heavy modules:", sorted(name for name in sys.modules if name.split(".")[0] in {heavy!r}))
"""


@pytest.mark.parametrize("fixture", ["multi_label_bundle", "regression_bundle"])
def test_label_sets_and_values_are_served_without_torch(fixture, request, tmp_path):
    from tests.serving.conftest import free_port
    from tests.serving.test_light import HEAVY

    bundle, _ = request.getfixturevalue(fixture)
    source = tmp_path / "films.jsonl"
    source.write_text("".join(json.dumps({"id": str(i), "text": text}) + "\n" for i, text in enumerate(TASK_TEXTS)))
    script = LIGHT_SCRIPT.format(heavy=HEAVY, bundle=str(bundle), source=str(source), out=str(tmp_path / "out.csv"), port=free_port())
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=serve_env(), timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "heavy modules: []" in done.stdout and (tmp_path / "out.csv").read_text().count("\n") == len(TASK_TEXTS) + 1
