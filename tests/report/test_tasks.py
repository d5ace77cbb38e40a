"""The report of a multi-label and of a regression run: the task's cards, tables and figures, from hand-made inputs."""

from __future__ import annotations

import copy
import re

import pytest

from tests.report.test_report import INPUTS, PROVENANCE, section, write_inputs
from tunepipe.report import build_report, load_inputs
from tunepipe.tasks import NAMES, get_task

GENRES = ["Action", "Comedy", "<Drama>"]


def _per_label(f1s: tuple[float, ...]) -> list[dict]:
    return [{"label": label, "threshold": threshold, "precision": 0.7, "recall": 0.6, "f1": f1, "auroc": 0.8 if label != "Action" else None,
             "average_precision": 0.75, "support": 40 + i, "predicted": 35 + i}
            for i, (label, threshold, f1) in enumerate(zip(GENRES, (0.35, 0.5, 0.6), f1s))]


MULTI_PARAMS = {"seed": 1, "task": {"type": "multi_label"}, "data": {"modality": "text", "source": "file", "labels": GENRES},
                "report": {"title": "genres", "examples": 2}}
MULTI = {
    **{key: INPUTS[key] for key in ("prepare", "split", "augment", "train", "baseline", "parity")},
    "clean": {"input_rows": 500, "kept_rows": 480, "removed": {"missing_label": 20}, "examples": {"missing_label": ["no genre"]},
              "labels": {"Action": 120, "Comedy": 200, "<Drama>": 260}, "imbalance_ratio": 2.1667, "label_cardinality": 1.21,
              "rows_without_labels": 30, "undeclared_labels_dropped": 7},
    "metrics": {"f1_micro": 0.6123, "f1_macro": 0.5432, "f1_samples": 0.58, "subset_accuracy": 0.311, "hamming_loss": 0.2222,
                "precision_micro": 0.6, "recall_micro": 0.62, "auroc_macro": 0.77, "average_precision_macro": 0.7,
                "label_cardinality_true": 1.2, "label_cardinality_predicted": 1.45, "f1_micro_ci_low": 0.58, "f1_micro_ci_high": 0.64,
                "f1_macro_ci_low": 0.5, "f1_macro_ci_high": 0.58, "subset_accuracy_ci_low": 0.27, "subset_accuracy_ci_high": 0.35,
                "test_rows": 120, "baseline_f1_micro": 0.5, "baseline_f1_macro": 0.45, "baseline_subset_accuracy": 0.2,
                "baseline_hamming_loss": 0.3, "baseline_label_cardinality_predicted": 0.9,
                "worst_slice_f1_micro": 0.41, "worst_slice_gap": 0.2023},
    "decision": {"task": "multi_label", "labels": GENRES, "thresholds": [0.35, 0.5, 0.6], "thresholds_from": "tuned on validation (best F1 per label)"},
    "details": {"labels": GENRES, "thresholds": [0.35, 0.5, 0.6], "bootstrap": {"resamples": 200, "seed": 1},
                "models": {"fine_tuned": {"per_label": _per_label((0.61, 0.52, 0.47))}, "baseline": {"per_label": _per_label((0.5, 0.4, 0.45))}}},
    "worst_errors": {"labels": GENRES, "rows": [
        {"rank": 1, "id": "4", "label": "Action;<Drama>", "predicted": "Comedy", "wrong_labels": 3, "confidence": 0.97, "input": "<i>Heat</i>"},
        {"rank": 2, "id": "8", "label": "", "predicted": "Comedy", "wrong_labels": 1, "confidence": 0.8, "input": "second"},
        {"rank": 3, "id": "9", "label": "Comedy", "predicted": "", "wrong_labels": 1, "confidence": 0.7, "input": "third"}]},
    "slices": {"metric": "f1_micro", "overall": {"rows": 120, "f1_micro": 0.6123}, "min_rows": 20, "resamples": 200,
               "columns": [{"column": "length", "kind": "auto", "unsliced_rows": 0, "slices": [
                   {"column": "length", "value": "q1", "rows": 40, "ranked": True, "f1_micro": 0.41, "f1_micro_ci_low": 0.3,
                    "f1_micro_ci_high": 0.5, "f1_macro": 0.39, "f1_micro_gap": 0.2023},
                   {"column": "length", "value": "q2", "rows": 80, "ranked": True, "f1_micro": 0.7, "f1_macro": 0.66, "f1_micro_gap": -0.0877}]}],
               "worst": {"column": "length", "value": "q1", "rows": 40, "ranked": True, "f1_micro": 0.41, "f1_micro_gap": 0.2023}},
    "levels": {"max_accuracy_drop": 0.01, "selected": "unstructured-0.20", "levels": [
        {"name": "dense", "method": "dense", "sparsity": 0.0, "nonzero_params": 100, "val_f1_micro": 0.6, "test_f1_micro": 0.61, "test_f1_macro": 0.54},
        {"name": "unstructured-0.20", "method": "unstructured", "sparsity": 0.2, "nonzero_params": 80, "val_f1_micro": 0.595, "test_f1_micro": 0.6, "test_f1_macro": 0.53}]},
    "variants": {"threads": 2, "selected": "dense-fp32", "variants": [
        {"variant": "dense-fp32", "precision": "fp32", "pruning_level": "dense", "onnx_bytes": 9000, "test_f1_micro": 0.611, "f1_micro_delta": 0.0,
         "latency_ms": {"1": {"onnxruntime": 3.0, "eager": 8.0}}, "latency_ratio": {"1": 1.0}}]},
}
MULTI_HISTORY = "epoch,train_loss,val_loss,val_f1_micro,val_f1_macro,seconds\n0,0.7,0.6,0.41,0.33,5\n1,0.5,0.45,0.55,0.48,5\n"

REGRESSION_PARAMS = {"seed": 1, "task": {"type": "regression"}, "data": {"modality": "text", "source": "file", "labels": None, "label_column": "rating"},
                     "report": {"title": "ratings", "examples": 2}}
POINTS = [{"true": 1.0 + 0.1 * i, "predicted": 3.0 + 0.05 * i} for i in range(60)]
REGRESSION = {
    **{key: INPUTS[key] for key in ("prepare", "split", "augment", "train", "baseline", "parity")},
    "clean": {"input_rows": 400, "kept_rows": 398, "removed": {"invalid_target": 2}, "examples": {"invalid_target": ["n/a"]},
              "labels": {}, "imbalance_ratio": 1.0, "conflicting_targets_averaged": 6,
              "target": {"rows": 398, "mean": 5.9, "std": 1.6, "min": 1.2, "q25": 4.9, "median": 6.15, "q75": 7.0, "max": 9.7}},
    "metrics": {"mae": 1.2341, "rmse": 1.5, "r2": 0.1234, "pearson": 0.4, "spearman": 0.38, "mae_ci_low": 1.1, "mae_ci_high": 1.3,
                "rmse_ci_low": 1.4, "rmse_ci_high": 1.6, "r2_ci_low": 0.05, "r2_ci_high": 0.2, "test_rows": 60,
                "baseline_mae": 1.4, "baseline_rmse": 1.7, "baseline_r2": 0.02, "baseline_pearson": 0.2, "baseline_spearman": 0.2},
    "decision": {"task": "regression", "labels": ["rating"]},
    "details": {"target": "rating<>", "bootstrap": {"resamples": 200, "seed": 1},
                "models": {"fine_tuned": {"points": POINTS, "by_range": [
                               {"bin": 0, "low": 1.0, "high": 3.9, "rows": 30, "mae": 1.9, "bias": 1.5},
                               {"bin": 1, "low": 4.0, "high": 6.9, "rows": 30, "mae": 0.6, "bias": -0.2}]},
                           "baseline": {"points": [{"true": p["true"], "predicted": 5.0} for p in POINTS], "by_range": [
                               {"bin": 0, "low": 1.0, "high": 3.9, "rows": 30, "mae": 2.5, "bias": 2.4},
                               {"bin": 1, "low": 4.0, "high": 6.9, "rows": 30, "mae": 0.5, "bias": 0.1}]}}},
    "worst_errors": {"target": "rating", "rows": [
        {"rank": 1, "id": "3", "label": 1.2, "predicted": 6.8123, "error": 5.6123, "input": "<b>Flop</b> & co"},
        {"rank": 2, "id": "5", "label": 9.5, "predicted": 5.1, "error": -4.4, "input": "second"},
        {"rank": 3, "id": "6", "label": 2.0, "predicted": 5.9, "error": 3.9, "input": "third"}]},
    "levels": {"max_accuracy_drop": 0.02, "selected": "dense", "levels": [
        {"name": "dense", "method": "dense", "sparsity": 0.0, "nonzero_params": 100, "val_r2": 0.15, "test_r2": 0.1234, "test_mae": 1.2341}]},
    "variants": {"threads": 2, "selected": "dense-fp32", "variants": [
        {"variant": "dense-fp32", "precision": "fp32", "pruning_level": "dense", "onnx_bytes": 9000, "test_r2": 0.1233, "r2_delta": 0.0,
         "latency_ms": {"1": {"onnxruntime": 3.0, "eager": 8.0}}, "latency_ratio": {"1": 1.0}}]},
}
REGRESSION_HISTORY = "epoch,train_loss,val_loss,val_mae,val_rmse,val_r2,seconds\n0,0.9,0.8,1.4,1.7,0.05,5\n1,0.7,0.75,1.25,1.55,0.11,5\n"


def render_task(tmp_path, params: dict, inputs: dict, history: str) -> str:
    paths = write_inputs(tmp_path, inputs, history)
    return build_report(params, load_inputs(paths), provenance=PROVENANCE)


def cards(html: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r'<div class="label">([^<]+)</div>(.*?)</div>\s*</div>', section(html, "summary"), re.S)}


def table_rows(part: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in re.finditer(r"<tr>\s*<td>([^<]+)</td>(.*?)</tr>", part, re.S)}


def test_multi_label_report_shows_its_headline_metrics_label_sets_and_per_label_scores(tmp_path):
    html = render_task(tmp_path, MULTI_PARAMS, MULTI, MULTI_HISTORY)

    shown = cards(html)
    assert "61.2%" in shown["Test micro F1"] and "95% CI 58.0% – 64.0%" in shown["Test micro F1"] and "+11.2 pts" in shown["Test micro F1"]
    assert "54.3%" in shown["Test macro F1"] and "31.1%" in shown["Test subset accuracy"]
    assert "41.0%" in shown["Worst slice"] and "20.2 pts below the whole" in shown["Worst slice"]
    assert "Test accuracy" not in section(html, "summary")
    data = section(html, "data")
    assert 'aria-label="Rows per label after cleaning"' in data and "1.21</strong> on average" in data and ">30<" not in data
    assert "rows without any label" in data and ": 30;" in data and "dropped from rows: 7." in data
    training = section(html, "training")
    assert "<th class=\"n\">Val micro F1</th><th class=\"n\">Val macro F1</th>" in training and "55.0%" in training
    evaluation = section(html, "evaluation")
    rows = table_rows(evaluation)
    assert "61.2%" in rows["F1 (micro)"] and "[58.0% – 64.0%]" in rows["F1 (micro)"] and "+11.2 pts" in rows["F1 (micro)"]
    # Hamming loss: lower is better, so the fine-tuned model's smaller loss is coloured as a gain
    assert '<td class="n pos">-7.8 pts</td>' in rows["Hamming loss"]
    assert "1.45" in rows["Labels per row (mean)"] and "0.90" in rows["Labels per row (mean)"] and "1.20" in rows["Labels per row (mean)"]
    assert "tuned on validation (best F1 per label)" in evaluation
    per_label = {label: (model, base) for label, model, base in re.findall(r'<tr><td rowspan="2">([^<]+)</td>(.*?)</tr>\s*<tr>(.*?)</tr>', evaluation, re.S)}
    drama = per_label["&lt;Drama&gt;"]  # label names are data: escaped; the fine-tuned row, then the baseline's
    assert "0.60" in drama[0] and "47.0%" in drama[0] and "+2.0 pts" in drama[0] and "45.0%" in drama[1] and "baseline" in drama[1]
    assert "not available" in per_label["Action"][0]  # no AUROC for a label the test split cannot rank
    assert 'aria-label="Test F1 per label, fine-tuned and baseline"' in evaluation
    assert "Confusion matrix" not in evaluation and "Calibration" not in evaluation
    assert "Most wrong label sets" in evaluation and "&lt;i&gt;Heat&lt;/i&gt;" in evaluation and "Action;&lt;Drama&gt;" in evaluation
    assert "third" not in evaluation  # report.examples = 2
    assert "<th class=\"n\">Micro F1</th><th class=\"n\">Macro F1</th><th class=\"n\">Δ micro F1</th>" in evaluation
    assert '<td class="n neg">-20.2 pts</td>' in evaluation
    pruning = section(html, "pruning")
    assert "<th class=\"n\">Val micro F1</th><th class=\"n\">Test micro F1</th><th class=\"n\">Test macro F1</th>" in pruning and "59.5%" in pruning
    assert "Test micro F1" in section(html, "export") and "61.1%" in section(html, "export")


def test_regression_report_shows_errors_in_the_target_s_units_with_scatter_residuals_and_ranges(tmp_path):
    html = render_task(tmp_path, REGRESSION_PARAMS, REGRESSION, REGRESSION_HISTORY)

    shown = cards(html)
    assert "1.234" in shown["Test MAE"] and "95% CI 1.100 – 1.300" in shown["Test MAE"]
    # a smaller error than the baseline's is a gain: coloured positive, printed as the plain difference
    assert '<span class="pos">-0.166</span>' in shown["Test MAE"] and "0.123" in shown["Test R²"] and "+0.103" in shown["Test R²"]
    data = section(html, "data")
    assert 'aria-label="Distribution of the target"' in data and "5.900 ± 1.600" in data and "4.900, 6.150, 7.000" in data
    assert "Near-duplicates averaged</th><td class=\"n\">6<" in data and "invalid target" in data
    assert "Class imbalance" not in data
    training = section(html, "training")
    assert '<th class="n">Val MAE</th><th class="n">Val RMSE</th><th class="n">Val R²</th>' in training and "1.250" in training
    evaluation = section(html, "evaluation")
    rows = table_rows(evaluation)
    assert "1.234" in rows["MAE (mean absolute error)"] and "[1.100 – 1.300]" in rows["MAE (mean absolute error)"]
    assert '<td class="n pos">-0.166</td>' in rows["MAE (mean absolute error)"]
    assert 'aria-label="Predicted against true values on the test split"' in evaluation
    assert 'aria-label="Errors against true values on the test split"' in evaluation
    assert "Range of rating&lt;&gt;" in evaluation
    by_range = re.findall(r'<tr><td class="n">([\d.]+ – [\d.]+)</td>(.*?)</tr>', evaluation, re.S)
    assert [span for span, _ in by_range] == ["1.000 – 3.900", "4.000 – 6.900"]
    assert "+1.500" in by_range[0][1] and '<td class="n pos">-0.600</td>' in by_range[0][1] and '<td class="n neg">+0.100</td>' in by_range[1][1]
    assert "Largest errors" in evaluation and "&lt;b&gt;Flop&lt;/b&gt; &amp; co" in evaluation and "6.812" in evaluation and "5.612" in evaluation
    assert "Confusion matrix" not in evaluation and "Per label" not in evaluation
    assert evaluation.count("<svg") == 2
    pruning = section(html, "pruning")
    assert "<th class=\"n\">Val R²</th><th class=\"n\">Test R²</th><th class=\"n\">Test MAE</th>" in pruning and "0.150" in pruning
    assert "Allowed R² drop: 0.020" in pruning


@pytest.mark.parametrize("name", NAMES)
def test_every_task_renders_with_nothing_but_its_params(tmp_path, name):
    inputs = {key: {} for key in INPUTS}
    html = render_task(tmp_path, {"task": {"type": name}, "data": {"modality": "text"}}, inputs, "epoch,train_loss,val_loss\n")
    for anchor in ("summary", "data", "training", "evaluation", "pruning", "export"):
        assert "not available" in section(html, anchor), anchor


def test_the_task_is_read_from_decision_json_when_the_params_do_not_name_it(tmp_path):
    params = copy.deepcopy(REGRESSION_PARAMS)
    del params["task"]
    html = render_task(tmp_path, params, REGRESSION, REGRESSION_HISTORY)
    assert "Test MAE" in section(html, "summary")


def test_every_task_names_its_cards_and_blocks_among_its_metrics():
    from tunepipe.report.render import TEMPLATE_DIR

    for name in NAMES:
        view = get_task(name).report_view()
        keys = [m.key for m in view.metrics]
        assert set(view.cards) <= set(keys), name
        for folder, blocks in (("evaluation", view.evaluation), ("data", view.data)):
            for block in blocks:
                assert (TEMPLATE_DIR / "sections" / folder / f"{block}.html.j2").is_file(), (name, block)
