"""`tunepipe compare`: two revisions' test predictions, read through dvc.lock md5s from the DVC cache, paired or not."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.test_runs import cache_object, git
from tunepipe.cli import main
from tunepipe.compare import CompareError, compare_revisions, describe
from tunepipe.runs import earlier_runs


def predictions_csv(rows: list[tuple[str, str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "label", "predicted", "confidence"])
    writer.writerows([(i, label, predicted, "0.9") for i, label, predicted in rows])
    return out.getvalue().encode()


def record(project: Path, rows: list[tuple[str, str, str]], message: str) -> str:
    """A commit whose dvc.lock versions results/evaluate as a folder holding this predictions.csv (as dvc.yaml does)."""
    md5 = cache_object(project, predictions_csv(rows))
    manifest = json.dumps([{"md5": md5, "relpath": "predictions.csv"}]).encode()
    lock = {"schema": "2.0", "stages": {"pipeline": {"cmd": "snakemake", "params": {"params.yaml": {"seed": 1}},
                                                     "outs": [{"path": "results/evaluate", "md5": cache_object(project, manifest, ".dir")}]}}}
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    git(project, "add", "dvc.lock")
    git(project, "commit", "-qm", message)
    return git(project, "rev-parse", "HEAD").strip()


@pytest.fixture
def project(tmp_path):
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "README").write_text("x")
    git(tmp_path, "add", "README")
    git(tmp_path, "commit", "-qm", "no run")
    return tmp_path


def rows_of(correct: list[bool], prefix: str = "") -> list[tuple[str, str, str]]:
    labels = ["pos", "neg"] * (len(correct) // 2)
    return [(f"{prefix}{i}", label, label if right else ("neg" if label == "pos" else "pos")) for i, (label, right) in enumerate(zip(labels, correct))]


def test_two_revisions_on_the_same_rows_are_paired(project, capsys):
    rev1 = record(project, rows_of([True] * 20 + [False] * 20), "run 1")
    rev2 = record(project, rows_of([True] * 40), "run 2")
    result = compare_revisions(project, rev1, rev2, resamples=200)
    assert result["paired"] and result["rows"] == 40
    assert result["accuracy"] == {"a": 0.5, "b": 1.0}
    # 20 rows only B gets right, none only A: 20 discordant rows (< 25) are tested exactly, p = 2 * (1/2)^20
    assert (result["mcnemar"]["b"], result["mcnemar"]["c"], result["mcnemar"]["method"]) == (20, 0, "exact binomial")
    assert result["mcnemar"]["p_value"] == pytest.approx(2 / 2**20)
    assert result["verdict"] == "better" and result["bootstrap"]["accuracy_diff"] == 0.5
    assert main(["compare", rev1, "HEAD", "--repo", str(project)]) == 0
    out = capsys.readouterr().out
    assert "the same 40 test rows: paired" in out and "verdict at alpha 0.05: B is better than A" in out
    assert "McNemar's test (exact binomial)" in out


def test_different_test_rows_are_not_paired(project, capsys):
    rev1 = record(project, rows_of([True] * 10 + [False] * 10), "run 1")
    record(project, rows_of([True] * 20, prefix="other-"), "run 2 on another split")
    assert main(["compare", rev1, "HEAD", "--repo", str(project)]) == 0
    out = capsys.readouterr().out
    assert "not paired: the test rows differ (20 row(s) only in A, 20 row(s) only in B)" in out
    assert "unpaired accuracy (not a test): A 50.0% on 20 rows, B 100.0% on 20 rows" in out
    assert "verdict" not in out


def test_the_working_tree_is_the_default_second_run_and_bad_revisions_are_one_line(project, capsys):
    rev1 = record(project, rows_of([True] * 10), "run 1")
    with pytest.raises(CompareError, match="run the pipeline first"):
        compare_revisions(project, rev1)
    (project / "results" / "evaluate").mkdir(parents=True)
    (project / "results" / "evaluate" / "predictions.csv").write_bytes(predictions_csv(rows_of([True] * 10)))
    result = compare_revisions(project, rev1)
    assert result["b"] == "working tree" and result["verdict"] == "no significant difference" and result["mcnemar"]["discordant"] == 0
    assert "no significant difference" in describe(result)
    assert main(["compare", "no-such-rev", "--repo", str(project)]) == 2
    assert "'no-such-rev' is not a git revision" in capsys.readouterr().err
    assert main(["compare", "HEAD~1", "--repo", str(project)]) == 2
    assert "has no dvc.lock: it records no run" in capsys.readouterr().err


def test_the_report_pairs_this_run_with_the_last_recorded_one(project):
    record(project, rows_of([False] * 30), "run 1")
    current = [dict(zip(("id", "label", "predicted"), row)) for row in rows_of([True] * 30)]
    record_ = earlier_runs(project, current={}, current_params={"seed": 1}, current_predictions=current, resamples=100)
    comparison = record_["since_last_comparison"]
    assert comparison["paired"] and comparison["verdict"] == "better" and comparison["mcnemar"]["method"] == "chi-square with continuity correction"
    assert comparison["sentence"].startswith("This run is better than the last recorded run (McNemar's test, chi-square")
    other = [dict(row, id=f"x{row['id']}") for row in current]
    comparison = earlier_runs(project, current={}, current_predictions=other)["since_last_comparison"]
    assert not comparison["paired"] and "the test rows differ" in comparison["sentence"]


def record_values(project: Path, errors: list[float], message: str) -> str:
    """A commit recording a regression run's predictions.csv (id, label, predicted, error, input)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "label", "predicted", "error", "input"])
    writer.writerows([(i, float(i), i + e, e, "a title") for i, e in enumerate(errors)])
    md5 = cache_object(project, out.getvalue().encode())
    manifest = json.dumps([{"md5": md5, "relpath": "predictions.csv"}]).encode()
    lock = {"schema": "2.0", "stages": {"pipeline": {"cmd": "snakemake", "params": {"params.yaml": {"seed": 1}},
                                                     "outs": [{"path": "results/evaluate", "md5": cache_object(project, manifest, ".dir")}]}}}
    (project / "dvc.lock").write_text(yaml.safe_dump(lock))
    git(project, "add", "dvc.lock")
    git(project, "commit", "-qm", message)
    return git(project, "rev-parse", "HEAD").strip()


def test_two_regression_runs_are_compared_on_their_absolute_errors(project):
    rev1 = record_values(project, [1.0 + 0.01 * i for i in range(30)], "run 1")
    rev2 = record_values(project, [-0.2] * 30, "run 2")
    result = compare_revisions(project, rev1, rev2, resamples=200)
    assert result["paired"] and result["verdict"] == "better" and result["mae"]["b"] == pytest.approx(0.2)
    assert result["wilcoxon"]["mean_difference"] < 0 and result["bootstrap"]["mae_diff"] < 0  # B - A: B's errors are smaller
    text = describe(result)
    assert "MAE  A 1.145  B 0.2  B - A -0.945" in text and "Wilcoxon's signed-rank test" in text and "B is better than A" in text
