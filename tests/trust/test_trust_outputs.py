"""The real pipeline's explanations, slices and significance outputs (the shared `tiny_run` and `history` fixtures)."""

from __future__ import annotations

import csv
import json

import pytest
from markupsafe import escape

from tests.pipeline import tunepipe


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_tiny_run_explains_its_most_confident_errors_and_correct_predictions(tiny_run):
    record = read(tiny_run / "results" / "explain" / "attributions.json")
    assert record["steps"] == 16 and record["labels"] == ["fresh", "rotten"]
    kinds = [item["kind"] for item in record["items"]]
    assert kinds.count("correct") == 3 and 1 <= kinds.count("error") <= 3
    with open(tiny_run / "results" / "evaluate" / "predictions.csv", newline="") as handle:
        predictions = {row["id"]: row for row in csv.DictReader(handle)}
    for item in record["items"]:
        row = predictions[item["id"]]
        assert item["predicted"] == row["predicted"] and (item["kind"] == "error") == (row["label"] != row["predicted"])
        assert item["tokens"] and all(item["input"][t["start"]:t["end"]] == t["text"] for t in item["tokens"])
        # completeness: attributions add up to the predicted class's probability minus the baseline's
        assert item["attribution_sum"] == pytest.approx(item["output"] - item["baseline_output"], abs=0.05)
    errors = [item for item in record["items"] if item["kind"] == "error"]
    assert [e["confidence"] for e in errors] == sorted((e["confidence"] for e in errors), reverse=True)
    assert (tiny_run / "results" / "explain" / "heatmaps").is_dir()  # empty for texts


def test_the_tiny_run_reports_slices_and_the_paired_comparison_with_the_baseline(tiny_run):
    results = tiny_run / "results" / "evaluate"
    metrics, slices, comparison = read(results / "metrics.json"), read(results / "slices.json"), read(results / "comparison.json")
    [length] = [c for c in slices["columns"] if c["column"] == "text length"]
    assert length["kind"] == "auto" and 2 <= len(length["slices"]) <= 4
    assert sum(s["rows"] for s in length["slices"]) == metrics["test_rows"] == slices["overall"]["rows"]
    assert slices["overall"]["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-6)
    worst = slices["worst"]
    assert metrics["worst_slice_accuracy"] == worst["accuracy"] == min(s["accuracy"] for s in length["slices"] if s["ranked"])
    assert metrics["worst_slice_gap"] == pytest.approx(metrics["accuracy"] - worst["accuracy"], abs=1e-6)
    assert worst["accuracy_ci_low"] <= worst["accuracy"] <= worst["accuracy_ci_high"]
    with open(results / "slices.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(length["slices"])

    with open(results / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {"id", "label", "predicted", "prob:fresh", "baseline_predicted", "baseline_prob:rotten"} <= set(rows[0])
    baseline_accuracy = sum(r["label"] == r["baseline_predicted"] for r in rows) / len(rows)
    assert baseline_accuracy == pytest.approx(metrics["baseline_accuracy"], abs=1e-6)
    versus = comparison["fine_tuned_vs_baseline"]
    assert versus["paired"] and versus["rows"] == len(rows) and versus["verdict"] in ("better", "worse", "no significant difference")
    only_model = sum(r["label"] == r["predicted"] != r["baseline_predicted"] for r in rows)
    only_baseline = sum(r["label"] == r["baseline_predicted"] != r["predicted"] for r in rows)
    assert (versus["mcnemar"]["b"], versus["mcnemar"]["c"]) == (only_model, only_baseline)
    assert metrics["vs_baseline_p_value"] == pytest.approx(versus["mcnemar"]["p_value"], abs=1e-6)
    assert metrics["vs_baseline_accuracy_diff"] == pytest.approx(metrics["accuracy"] - metrics["baseline_accuracy"], abs=1e-6)


def test_the_tiny_runs_report_shows_slices_explanations_and_verdicts(tiny_run):
    html = (tiny_run / "results" / "report.html").read_text(encoding="utf-8")
    comparison = read(tiny_run / "results" / "evaluate" / "comparison.json")["fine_tuned_vs_baseline"]
    assert str(escape(comparison["sentence"])) in html  # the summary says it in words
    assert 'id="slices"' in html and 'id="explanations"' in html and "Worst slice" in html
    record = read(tiny_run / "results" / "explain" / "attributions.json")
    assert html.count('<span class="attr" style="background:rgba(') == sum(len(i["tokens"]) for i in record["items"]) + 2  # + the legend
    assert "Most confident errors" in html and "not available" not in html.split('id="slices"', 1)[1].split("</section>", 1)[0]


@pytest.mark.e2e
def test_compare_two_committed_runs(history):
    project = history.project
    done = tunepipe(project, "compare", history.rev1, history.rev2, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["paired"] and result["rows"] == history.first["test_rows"] == history.second["test_rows"]
    assert result["accuracy"] == {"a": pytest.approx(history.first["accuracy"]), "b": pytest.approx(history.second["accuracy"])}
    assert result["verdict"] in ("better", "worse", "no significant difference")
    assert (result["mcnemar"]["p_value"] < 0.05) == (result["verdict"] != "no significant difference")
    text = tunepipe(project, "compare", history.rev1, history.rev2)
    assert text.returncode == 0 and f"the same {result['rows']} test rows: paired" in text.stdout and "McNemar's test" in text.stdout
    never = tunepipe(project, "compare", history.never_ran, history.rev2)
    assert never.returncode == 2 and "records no run" in never.stderr and "Traceback" not in never.stderr
    # run 2's report paired it with run 1 (the last recorded run when it ran)
    html = (project / "results" / "report.html").read_text(encoding="utf-8")
    assert "the last recorded run (McNemar&#39;s test" in html


def test_the_image_run_draws_heat_maps_and_slices_by_brightness(tiny_image_run):
    results = tiny_image_run / "results"
    record = read(results / "explain" / "attributions.json")
    assert record["items"] and all((results / "explain" / item["heatmap"]).is_file() for item in record["items"])
    # 16 steps are coarse on a CNN: the completeness gap is recorded (and printed in the report), not hidden
    for item in record["items"]:
        assert item["delta"] == pytest.approx(abs(item["attribution_sum"] - (item["output"] - item["baseline_output"])), abs=1e-5)
    assert record["max_delta"] == max(item["delta"] for item in record["items"])
    slices = read(results / "evaluate" / "slices.json")
    [brightness] = [c for c in slices["columns"] if c["column"] == "brightness"]
    assert brightness["kind"] == "auto" and sum(s["rows"] for s in brightness["slices"]) == slices["overall"]["rows"]
    html = (results / "report.html").read_text(encoding="utf-8")
    assert html.count('<img class="heat" src="data:image/png;base64,') == len(record["items"])
