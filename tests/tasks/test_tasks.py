"""The task axis (tunepipe.tasks): one object per kind of target behind one protocol, and no task branch elsewhere."""

from __future__ import annotations

import inspect
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tunepipe.config import validate_params
from tunepipe.errors import DataError, ParamsError
from tunepipe.tasks import NAMES, Task, get_task

SRC = Path(__file__).resolve().parents[2] / "src" / "tunepipe"
MULTI, REGRESSION, SINGLE = (get_task(name) for name in ("multi_label", "regression", "single_label"))
FILE = {"source": "file", "path": "data.csv"}


def test_the_tasks_are_single_label_multi_label_and_regression():
    assert NAMES == ("multi_label", "regression", "single_label")
    with pytest.raises(ParamsError, match="task.type 'ranking' is not one of: multi_label, regression, single_label"):
        get_task("ranking")


@pytest.mark.parametrize("name", NAMES)
def test_each_task_has_every_attribute_and_method_of_the_protocol(name):
    task = get_task(name)
    for attribute in Task.__annotations__:
        assert hasattr(task, attribute), attribute
    for method, member in vars(Task).items():
        if not inspect.isfunction(member) or method.startswith("_"):
            continue
        expected = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
        implemented = list(inspect.signature(getattr(type(task), method)).parameters.values())
        assert [(p.name, p.kind) for p in implemented][: len(expected)] == expected, method
        assert all(p.default is not inspect.Parameter.empty for p in implemented[len(expected):]), method


def test_importing_the_package_loads_no_heavy_library():
    code = "import sys, tunepipe.tasks as t; [t.get_task(n) for n in t.NAMES]; " \
           "print(sorted(k for k in ('torch', 'pandas', 'numpy', 'sklearn', 'torchmetrics') if k in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_no_code_outside_the_tasks_package_names_a_task():
    """A task's behaviour is its object's: nothing else compares or picks by a task's name (as for modalities)."""
    pattern = re.compile(r"[\"'](single_label|multi_label|regression)[\"']")
    offenders = [f"{path.relative_to(SRC)}:{n}" for path in sorted(SRC.rglob("*.py")) if "tasks" not in path.relative_to(SRC).parts
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if pattern.search(line)]
    assert offenders == []


def test_auto_metrics_follow_the_task_and_the_bundled_data_keeps_its_labels():
    default = validate_params({})
    assert (default["train"]["monitor"], default["sweep"]["metric"], default["sweep"]["mode"]) == ("val_f1_macro", "val_f1_macro", "max")
    assert default["data"]["labels"] == ["fresh", "rotten"]  # the bundled data's plot summaries are not a class
    regression = validate_params({"task": {"type": "regression"}, "data": FILE})
    assert (regression["train"]["monitor"], regression["sweep"]["mode"]) == ("val_rmse", "min") and regression["data"]["labels"] is None
    assert validate_params({"task": {"type": "multi_label"}, "data": FILE})["train"]["monitor"] == "val_f1_micro"


@pytest.mark.parametrize(("raw", "message"), [
    ({"task": {"type": "regression"}, "data": {**FILE, "labels": ["a", "b"]}}, "data.labels: must be null with task.type regression"),
    ({"task": {"type": "regression"}}, "data.source 'rotten_tomatoes' has labels, not numbers"),
    ({"task": {"type": "multi_label"}, "data": {"modality": "image", "source": "folder", "path": "imgs"}},
     "data.source 'folder' gives one label per image"),
    ({"data": {**FILE, "label_separator": ";"}}, "data.label_separator: only for task.type multi_label"),
    ({"task": {"type": "regression"}, "data": FILE, "train": {"monitor": "val_accuracy"}},
     "train.monitor: 'val_accuracy' is not logged for task.type regression; use auto or one of: val_loss, val_mae, val_rmse, val_r2"),
])
def test_a_setting_the_task_cannot_use_is_a_params_error_naming_the_key(raw, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_params(raw)


def test_multi_label_targets_are_lists_delimited_strings_or_0_1_columns():
    table = pd.DataFrame({"tags": [["a", "b"], "[\"c\"]", None, []], "x": [1, 0, 1, 0], "y": ["true", "0", "1", "no"]})
    assert list(MULTI.read_targets(table, {"label_column": "tags"}, "t.jsonl")) == [["a", "b"], ["c"], None, []]
    text = pd.DataFrame({"tags": ["a | b", "", "c"]})
    assert list(MULTI.read_targets(text, {"label_column": "tags", "label_separator": "|"}, "t.csv")) == [["a", "b"], [], ["c"]]
    columns = MULTI.read_targets(table, {"label_column": "tags", "label_columns": ["x", "y"]}, "t.csv")
    assert list(columns) == [["x", "y"], [], ["x", "y"], []]
    with pytest.raises(DataError, match=r"t.csv: column 'tags' holds the text 'a;b', neither a list nor a delimited string; set data.label_separator"):
        MULTI.read_targets(pd.DataFrame({"tags": ["a;b"]}), {"label_column": "tags"}, "t.csv")
    with pytest.raises(DataError, match=r"column 'x' \(data.label_columns\) holds 'maybe'"):
        MULTI.read_targets(pd.DataFrame({"x": ["maybe"]}), {"label_column": "t", "label_columns": ["x"]}, "t.csv")


def test_multi_label_cleaning_drops_undeclared_labels_and_keeps_empty_sets():
    rows = pd.DataFrame({"label": [["a", "z"], [], None, ["b"]], "key": ["1", "2", "3", "4"]})
    cleaned, checks, facts = MULTI.clean_targets(rows, ["a", "b"])
    assert list(cleaned["label"]) == [["a"], [], None, ["b"]] and facts == {"undeclared_labels_dropped": 1}
    assert [(name, list(mask)) for name, mask in checks] == [("missing_label", [False, False, True, False])]
    summary = MULTI.summarise(cleaned.iloc[[0, 1, 3]], ["a", "b"], "rows")
    assert summary["labels"] == {"a": 1, "b": 1} and summary["rows_without_labels"] == 1 and summary["label_cardinality"] == pytest.approx(2 / 3, abs=1e-4)
    assert MULTI.encode([{"id": "1", "label": ["b"]}], ["a", "b"], "rows") == [[0.0, 1.0]]


def test_regression_targets_must_be_numbers_and_invalid_ones_are_counted():
    table = pd.DataFrame({"stars": ["4.5", "", "nan", "inf", "2"]})
    values = REGRESSION.read_targets(table, {"label_column": "stars"}, "r.csv")
    assert values[0] == 4.5 and values[1] is None and values[4] == 2.0
    _, checks, _ = REGRESSION.clean_targets(pd.DataFrame({"label": values}), None)
    assert checks[0][0] == "invalid_target" and list(checks[0][1]) == [False, True, True, True, False]
    with pytest.raises(DataError, match=r"r.csv: column 'stars' \(data.label_column\) holds words such as 'great', not numbers"):
        REGRESSION.read_targets(pd.DataFrame({"stars": ["great", "poor", "1"]}), {"label_column": "stars"}, "r.csv")


def test_regression_near_duplicates_with_different_numbers_take_their_mean():
    rows = pd.DataFrame({"label": [1.0, 3.0, 5.0], "key": ["k", "k", "other"]})
    merged, removed, counts = REGRESSION.resolve_conflicts(rows, pd.Series(True, index=rows.index))
    assert list(merged["label"]) == [2.0, 2.0, 5.0] and not removed.any() and counts == {"conflicting_targets_averaged": 2}


def test_strata_keep_splits_balanced_for_each_task():
    values = pd.Series(np.arange(100, dtype=float))
    bins = REGRESSION.strata(values)
    assert bins.nunique() == 5 and set(bins.value_counts()) == {20}
    sets = pd.Series([["a"]] * 10 + [["a", "rare"]] * 2 + [[]] * 4 + [["b"]] * 5)
    strata = MULTI.strata(sets)
    assert strata.value_counts().min() >= 3 and set(strata) == {"a", "(no labels)", "b"}  # two "rare" rows join the largest


def test_multi_label_metrics_and_thresholds_tuned_on_validation():
    from tunepipe.tasks._label_sets import headline_scores, tune_thresholds

    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
    targets = torch.tensor([[1, 0], [1, 1], [0, 1]])
    scores = headline_scores(probs, targets, [0.5, 0.5])
    assert scores["subset_accuracy"] == pytest.approx(2 / 3, abs=1e-6) and scores["hamming_loss"] == pytest.approx(1 / 6, abs=1e-6)
    assert scores["f1_micro"] == pytest.approx(2 * 3 / (3 + 4), abs=1e-6)
    assert tune_thresholds(probs, targets, [0.3, 0.5, 0.8]) == [0.5, 0.3]  # label 2 needs 0.4 to count
    assert MULTI.decide(probs, targets, ["a", "b"], {"thresholds": "fixed"})["thresholds"] == [0.5, 0.5]


def test_regression_metrics_match_their_definitions():
    from tunepipe.tasks._numbers import evaluate_numbers

    truth = torch.tensor([1.0, 2.0, 3.0, 4.0])
    predicted = torch.tensor([1.5, 2.0, 2.5, 5.0])
    result = evaluate_numbers(predicted, truth, resamples=50, seed=0)
    metrics = result["metrics"]
    assert metrics["mae"] == pytest.approx(0.5) and metrics["rmse"] == pytest.approx(math.sqrt(1.5 / 4), abs=1e-6)
    assert metrics["r2"] == pytest.approx(1 - 1.5 / 5.0, abs=1e-6) and metrics["mae_ci_low"] <= 0.5 <= metrics["mae_ci_high"]
    assert sum(row["rows"] for row in result["by_range"]) == 4


def test_losses_weigh_rare_labels_and_standardise_numbers():
    loss = MULTI.loss({"pos_weight": "auto"}, {}, [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert loss.pos_weight.tolist() == [1.0, 3.0]
    stats = REGRESSION.target_stats([10.0, 20.0, 30.0])
    standardised = REGRESSION.loss({"loss": "mse"}, stats, [])
    assert float(standardised(torch.zeros(3, 1), torch.tensor([10.0, 20.0, 30.0]))) == pytest.approx(1.0)
    assert REGRESSION.outputs(torch.tensor([[1.0]]), stats).tolist() == pytest.approx([20.0 + stats["std"]])


@pytest.mark.parametrize("name", NAMES)
def test_the_linear_probe_gives_a_head_of_the_tasks_size(name):
    task = get_task(name)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6))
    targets = {"single_label": [i % 2 for i in range(40)], "multi_label": [[float(i % 2), float(i % 3 == 0), 0.0] for i in range(40)],
               "regression": list(features[:, 0] * 2 + 1)}[name]
    names = {"single_label": ["a", "b"], "multi_label": ["a", "b", "c"], "regression": ["y"]}[name]
    weight, bias, score = task.probe_head(features, targets, task.target_stats(targets), task.output_size(names))
    assert np.asarray(weight).shape == (task.output_size(names), 6) and np.asarray(bias).shape == (task.output_size(names),)
    assert 0.5 < score <= 1.0


def test_a_probe_whose_rows_lack_some_labels_still_gives_the_whole_head():
    """train.probe_rows samples the rows: with many labels, some may have none in the sample (a 632-label run did)."""
    task = get_task("single_label")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 4))
    targets = [[0, 2, 4][i % 3] for i in range(60)]  # labels 1 and 3 of 5 absent
    weight, bias, _ = task.probe_head(features, targets, {}, 5)
    assert weight.shape == (5, 4) and bias.shape == (5,)
    assert not weight[[1, 3]].any() and bias[[1, 3]].max() < bias[[0, 2, 4]].min()
    logits = features @ weight.T + bias
    assert set(logits.argmax(axis=1)) <= {0, 2, 4}
    # two labels present of five: the binary case is spread over their rows too
    weight, bias, _ = task.probe_head(features, [[1, 3][i % 2] for i in range(60)], {}, 5)
    assert weight.shape == (5, 4) and weight[1].tolist() == (-weight[3]).tolist()


def test_multi_label_splits_are_stratified_iteratively():
    """Every label's rows follow the split fractions, rare labels included; groups stay whole."""
    from collections import Counter

    from tunepipe.data.splitting import iterative_assignment

    rng = np.random.default_rng(1)
    names = ["common", "mid", "rare"]
    groups = [[[name for name, p in zip(names, (0.6, 0.25, 0.05)) if rng.random() < p]] for _ in range(400)]
    split = MULTI.assign_splits(groups, (0.7, 0.1, 0.2), seed=0)
    assert split == iterative_assignment(groups, (0.7, 0.1, 0.2), seed=0) and set(split) == {0, 1, 2}
    for name in names:
        per_split = Counter(s for s, group in zip(split, groups) if name in group[0])
        total = sum(per_split.values())
        for s, fraction in enumerate((0.7, 0.1, 0.2)):
            assert abs(per_split[s] - fraction * total) <= 1.5, (name, per_split)
    assert SINGLE.assign_splits(groups, (0.7, 0.1, 0.2), 0) is None and REGRESSION.assign_splits(groups, (0.7, 0.1, 0.2), 0) is None


def test_the_schema_names_every_task_and_every_metric_a_task_logs():
    """Adding a task is its module plus its name (and any new validation metric) in the schema: this keeps them in step."""
    from tunepipe.config import load_schema

    schema = load_schema()["properties"]
    assert schema["task"]["properties"]["type"]["enum"] == sorted(NAMES)
    logged = {"auto", "val_loss", *(f"val_{name}" for task in NAMES for name in get_task(task).val_metrics)}
    assert set(schema["train"]["properties"]["monitor"]["enum"]) == logged == set(schema["sweep"]["properties"]["metric"]["enum"])


def test_the_single_label_baseline_bounds_its_solver_memory_with_many_labels():
    """L-BFGS keeps 20 coefficient-sized vectors: 632 labels x 50,000 features took 9.8 GB; SAGA instead."""
    task = get_task("single_label")
    assert task.baseline_estimator({"C": 4.0}, 0, 2, 50_000).solver == "lbfgs"  # the bundled data: unchanged
    assert task.baseline_estimator({"C": 4.0}, 0, 632, 50_000).solver == "saga"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5))
    targets = features[:, :3].argmax(axis=1)
    fitted = task.baseline_estimator({"C": 4.0}, 0, 3000, 50_000).fit(features, targets)
    assert fitted.score(features, targets) > 0.9
