"""End to end: Snakemake runs the real workflow on tiny configs, offline, in a scratch copy of the project."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import NEGATIVE, POSITIVE, REPO
from tests.pipeline import default_rules, planned_outputs, planned_rules, scratch_project, snakemake
from tunepipe.optimize.quantization import AUTO_CHOICES

pytestmark = pytest.mark.e2e
#: The rules that only a sweep or cross-validation adds to the DAG.
SWEEP_RULES = {"trial", "cv_fold", "select"}


def test_the_whole_chain_produces_a_report_with_real_numbers(tiny_run):
    results = tiny_run / "results"
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    for name in ("accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc"):
        assert 0.0 <= metrics[name] <= 1.0 and 0.0 <= metrics[f"baseline_{name}"] <= 1.0
    assert metrics["test_rows"] == 60  # 240 sampled rows x 0.25
    assert metrics["accuracy"] > 0.55  # real pretrained MiniLM: well above chance even after one tiny epoch
    for name in ("accuracy", "f1_macro", "auroc"):
        assert metrics[f"{name}_ci_low"] <= metrics[name] <= metrics[f"{name}_ci_high"]
    assert {"f1_weighted", "average_precision", "ece", "baseline_ece"} <= set(metrics)
    worst = json.loads((results / "evaluate" / "worst_errors.json").read_text())["rows"]
    assert all(row["label"] != row["predicted"] and row["input"] for row in worst)
    for name in ("roc.csv", "pr.csv", "calibration.csv", "per_class.csv", "details.json"):
        assert (results / "evaluate" / name).stat().st_size > 0, name
    split = json.loads((results / "split" / "summary.json").read_text())
    assert {k: v["rows"] for k, v in split["splits"].items()} == {"train": 132, "val": 48, "test": 60}
    levels = json.loads((results / "prune" / "levels.json").read_text())
    assert [level["name"] for level in levels["levels"]] == ["dense", "unstructured-0.50", "structured-0.50", "distilled-0.50"]
    assert levels["levels"][2]["total_params"] < levels["levels"][0]["total_params"]  # structured really removes weights
    # the distilled student (3 of 6 layers) is scored like a level: fewer parameters, its own accuracy and latency
    distill = json.loads((results / "distill" / "summary.json").read_text())
    assert distill["student_layers"] == 3 and distill["teacher_layers"] == 6 and distill["steps"] == 8
    assert levels["levels"][3]["total_params"] == distill["student_params"] < levels["levels"][0]["total_params"]
    variants = json.loads((results / "export" / "variants.json").read_text())
    int8_names = [f"pruned-int8-{name}" for name in AUTO_CHOICES["dynamic"]]  # export.quantize auto: one row per INT8 choice
    assert [row["variant"] for row in variants["variants"]] == ["dense-fp32", "pruned-fp32", *int8_names]
    assert [row["variant"] for row in variants["variants"] if row.get("selected")] == [variants["int8_selected"]]
    assert variants["variants"][2]["quantization"]["mode"] == "dynamic" and variants["variants"][2]["size_ratio"] < 0.5
    card = json.loads((results / "export" / "model_card.json").read_text())
    assert card["labels"] == ["fresh", "rotten"] and card["model"]["pruning_level"] == levels["selected"]
    parity = json.loads((results / "export" / "parity.json").read_text())
    assert parity["prediction_agreement"] == 1.0 and parity["max_abs_logit_diff"] < 1e-3
    assert set(parity["latency_ms"]) == {"1", "8"}
    train_config = yaml.safe_load((results / "train" / "config.yaml").read_text())
    assert train_config["train"]["max_epochs"] == 1 and train_config["label_names"] == ["fresh", "rotten"]
    html = (results / "report.html").read_text()
    assert f"{metrics['accuracy']:.3f}" in html or f"{100 * metrics['accuracy']:.1f}" in html
    assert json.loads((results / "export" / "bundle" / "bundle.json").read_text())["labels"] == card["labels"] and "tunepipe serve results/export/bundle" in html
    for rule in default_rules():
        assert (results / "logs" / f"{rule}.log").stat().st_size > 0
    assert not list(results.rglob("*.partial"))


@pytest.mark.browser
def test_the_text_runs_report_renders_in_chromium(tiny_run):
    from tests.report.browser import assert_renders_cleanly, open_report

    view = open_report(tiny_run / "results" / "report.html")
    assert_renders_cleanly(view, min_figures=3)
    assert "Rotten" in view.text or "rotten" in view.text


def test_a_second_run_has_nothing_to_do(tiny_run):
    result = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_param_edit_reruns_exactly_the_rules_that_read_it(tiny_run):
    export_only = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml", "--config", "export={latency_runs: 4, latency_batch_sizes: [1, 8]}")
    assert planned_rules(export_only) == {"export", "report"}
    train_change = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml", "--config", "seed=7")
    assert planned_rules(train_change) == {"split", "augment", "train", "baseline", "evaluate", "robustness", "explain", "distill", "prune", "export",
                                           "report"}
    # Presentation-only params are read by the report alone: a new title re-renders, it does not retrain.
    title_only = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml", "--config", "report={title: Another title, examples: 3}")
    assert planned_rules(title_only) == {"report"}
    # prune scores its levels with its own batch size, not evaluate's.
    evaluate_only = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml", "--config", "evaluate={batch_size: 16}")
    assert planned_rules(evaluate_only) == {"evaluate", "explain", "report"}  # explain picks its rows from evaluate's predictions
    robustness_only = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml", "--config", "robustness={max_rows: 20}")
    assert planned_rules(robustness_only) == {"robustness", "report"}
    explain_only = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml", "--config", "explain={steps: 8}")
    assert planned_rules(explain_only) == {"explain", "report"}


def _edited_copy_of_the_source(project: Path, tmp_path: Path, module: str):
    """Point the project's src at a copy of the package with one line appended to `module`; returns an undo."""
    target = project / "src"
    real = target.resolve()
    copy = tmp_path / "src"
    shutil.copytree(real, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open(copy / "tunepipe" / module, "a") as handle:
        handle.write("\n# an edit\n")
    target.unlink()
    target.symlink_to(copy)

    def undo():
        target.unlink()
        target.symlink_to(real)

    return undo


@pytest.mark.parametrize(("module", "first", "planned"), [
    # Only export's library imports the quantizer: export reruns, and the report that reads its files.
    ("optimize/quantization.py", {"export"}, {"export", "report"}),
    # Imported by prepare (sampling) and split, through no hand-kept list: prepare reruns, and all after it.
    ("data/splitting.py", {"prepare"}, None),
    # A modality imports it inside `perturbations`, which only the robustness stage calls: nothing else reruns.
    ("robustness/text_perturbations.py", {"robustness"}, {"robustness", "report"}),
])
def test_a_code_edit_reruns_exactly_the_rules_that_import_it(tiny_run, tmp_path, module, first, planned):
    """A rule's code inputs are its stage module and everything it imports (tunepipe.sources), judged by content."""
    from tunepipe.sources import stage_code

    importers = {rule for rule in default_rules() if f"src/tunepipe/{module}" in stage_code(rule)}
    assert first <= importers
    undo = _edited_copy_of_the_source(tiny_run, tmp_path, module)
    try:
        result = snakemake(tiny_run, "results/report.html", "-n", "--configfile", "tiny.yaml")
    finally:
        undo()
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_rules(result) == (planned or default_rules()), result.stdout[-2000:]
    assert importers <= planned_rules(result)
    for rule in first:  # the first rules to rerun do so because that very file changed (the rest: their inputs did)
        job = result.stdout.split(f"rule {rule}:\n", 1)[1].split("\n\n", 1)[0]
        assert f"src/tunepipe/{module}" in re.search(r"reason: (.*)", job).group(1), job


def test_every_rule_output_is_versioned_by_dvc(tmp_path, tiny_model_dir):
    """dvc.yaml's outs cover every file a rule writes (with and without a sweep), and each names a real output."""
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    outs = [next(iter(out)) if isinstance(out, dict) else out for out in dvc_yaml["stages"]["pipeline"]["outs"]]
    # Sweep jobs exist only when a sweep is configured: a default run would leave these paths missing, which a
    # DVC out may not be. The selected model itself is results/train (versioned), a kept ensemble results/prune.
    unversioned = ("results/sweep/", "results/select/", "results/ensemble/")
    project = scratch_project(tmp_path / "project")
    (project / "sweep.yaml").write_text(yaml.safe_dump({"sweep": {"method": "grid", "parameters": {"train.head_lr": [1.0e-3, 1.0e-2]}}}))
    written = set()
    for extra in ([], ["--configfile", "sweep.yaml"], ["--config", "split={folds: 2}"]):
        result = snakemake(project, "results/report.html", "-n", "--forceall", *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        written |= planned_outputs(result)
        assert ("ensemble" in planned_rules(result)) == (extra == ["--configfile", "sweep.yaml"])  # only after a sweep without folds
    assert written
    uncovered = sorted(path for path in written if not path.startswith(unversioned) and not any(path == out or path.startswith(out + "/") for out in outs))
    assert not uncovered, f"rule outputs that dvc.yaml does not version: {uncovered}"
    stale = [out for out in outs if out != ".snakemake/metadata" and not any(path == out or path.startswith(out + "/") for path in written)]
    assert not stale, f"dvc.yaml versions paths no rule writes: {stale}"
    assert {"results/benchmarks/train.tsv", "results/logs/train.log"} <= written  # logs and benchmarks are rule outputs too


def test_invalid_params_stop_before_any_job_with_the_key_named(tiny_run):
    result = snakemake(tiny_run, "results/report.html", "-n", "--config", "train={max_epoch: 3}")
    assert result.returncode != 0
    assert "train.max_epoch: unknown key; did you mean 'max_epochs'?" in result.stdout + result.stderr


def test_lint_has_no_findings():
    result = snakemake(REPO, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_users_own_csv_and_local_model_run_end_to_end(tmp_path, tiny_model_dir):
    """The path a user takes with their own data: point data.* at a CSV and model.pretrained at a folder."""
    project = scratch_project(tmp_path / "project")
    rng = random.Random(0)
    rows = ["opinion,verdict"]
    for i in range(40):
        for verdict, pool in (("up", POSITIVE), ("down", NEGATIVE)):
            words = rng.choice(pool).split()
            rng.shuffle(words)
            rows.append(f'"{" ".join(words)} number {i}",{verdict}')
    (project / "reviews.csv").write_text("\n".join(rows) + "\n")
    (project / "mine.yaml").write_text(yaml.safe_dump({
        "data": {"source": "file", "path": "reviews.csv", "text_column": "opinion", "label_column": "verdict", "labels": None},
        "model": {"pretrained": str(tiny_model_dir), "max_length": 24},
        "train": {"max_epochs": 1, "batch_size": 8, "head_init": "random"},
        "prune": {"sparsities": [0.3]},
        "export": {"latency_batch_sizes": [1], "latency_runs": 2},
    }))
    result = snakemake(project, "results/report.html", "--cores", "2", "--configfile", "mine.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    confusion = json.loads((project / "results" / "evaluate" / "confusion.json").read_text())
    assert confusion["labels"] == ["down", "up"]
    assert sum(map(sum, confusion["matrix"])) == 16  # 80 rows x 0.2 test


def test_bad_user_data_fails_with_the_file_and_leaves_no_output(tmp_path):
    project = scratch_project(tmp_path / "project")
    (project / "reviews.csv").write_text("text,label\n" + "".join(f"a good film number {i},pos\n" for i in range(20)))
    (project / "mine.yaml").write_text(yaml.safe_dump({"data": {"source": "file", "path": "reviews.csv", "label_column": "label", "labels": None}}))
    result = snakemake(project, "results/split/summary.json", "--cores", "1", "--configfile", "mine.yaml")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "only one class ('pos', 20 rows)" in output
    assert not (project / "results" / "clean" / "rows.jsonl").exists()
    assert (project / "results" / "prepare" / "rows.jsonl").exists()  # earlier, successful steps are kept


def test_dvc_pipeline_is_valid_and_tracks_every_params_section():
    from tunepipe.config import load_schema

    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert set(dvc_yaml["stages"]["pipeline"]["params"]) == set(load_schema()["properties"])
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    result = subprocess.run([str(Path(sys.executable).with_name("dvc")), "stage", "list"], cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0 and result.stdout.startswith("pipeline"), result.stderr


def test_conda_envs_pin_the_same_versions_as_the_lock():
    lock = {}
    for line in (REPO / "requirements" / "lock.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version
    data_packages = dict(line.split("==") for line in (REPO / "requirements" / "data-packages.txt").read_text().splitlines() if "==" in line and not line.startswith("#"))
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(env_file.read_text())
        pip = next(item for item in env["dependencies"] if isinstance(item, dict))["pip"]
        for spec in pip:
            if spec.startswith("-e"):
                continue
            name, version = spec.split("==")
            expected = lock.get(name.lower()) or data_packages.get(name)
            assert version == expected, f"{env_file.name}: {name}=={version}, lock says {expected}"


def test_the_image_preset_runs_end_to_end(tiny_image_run):
    """Fashion-MNIST + EfficientNet-Lite0 through the same rules, selected by a preset file."""
    project = tiny_image_run
    results = project / "results"
    confusion = json.loads((results / "evaluate" / "confusion.json").read_text())
    assert len(confusion["labels"]) == 10 and "Ankle boot" in confusion["labels"]
    metrics = json.loads((results / "evaluate" / "metrics.json").read_text())
    assert metrics["accuracy"] > 0.2  # ten classes: chance is 0.1
    worst = json.loads((results / "evaluate" / "worst_errors.json").read_text())["rows"]
    assert worst and all(Path(row["input"]).exists() for row in worst)  # image runs name the image file
    assert '<img class="thumb"' in re.search(r'<section id="evaluation">(.*?)</section>', (results / "report.html").read_text(), re.S).group(1)
    augment = json.loads((results / "augment" / "summary.json").read_text())
    assert augment["modality"] == "image" and augment["augmented_rows"] > 0
    assert all(Path(example["augmented"]).exists() for example in augment["examples"])
    parity = json.loads((results / "export" / "parity.json").read_text())
    assert parity["inputs"] == ["pixels"] and parity["prediction_agreement"] == 1.0
    from tests.report.browser import assert_renders_cleanly, open_report

    view = open_report(results / "report.html")
    assert_renders_cleanly(view, min_figures=5)
    assert len([figure for figure in view.figures if figure.tag == "img"]) >= 2  # the augmentation thumbnails
    assert "Ankle boot" in view.text
    variants = json.loads((results / "export" / "variants.json").read_text())
    assert variants["variants"][2]["quantization"]["mode"] == "static"
    assert "<svg" in (results / "report.html").read_text()


def test_editing_the_users_dataset_reruns_the_pipeline(tmp_path):
    project = scratch_project(tmp_path / "project")
    (project / "reviews.csv").write_text("text,label\n" + "".join(f"good film number {i},pos\nbad film number {i},neg\n" for i in range(10)))
    (project / "mine.yaml").write_text(yaml.safe_dump({"data": {"source": "file", "path": "reviews.csv", "label_column": "label", "labels": None}}))
    first = snakemake(project, "results/split/summary.json", "--cores", "1", "--configfile", "mine.yaml")
    assert first.returncode == 0, first.stderr[-3000:]
    with open(project / "reviews.csv", "a") as handle:
        handle.write("a brand new review,pos\n")
    again = snakemake(project, "results/split/summary.json", "-n", "--configfile", "mine.yaml")
    assert {"prepare", "clean", "split"} <= planned_rules(again)


def planned_memory(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Each planned job's mem_mb as the dry run prints it (a number, or <TBD> while its inputs are still to be made)."""
    return dict(re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: .*?\bmem_mb=([^,\s]+)", result.stdout + result.stderr, flags=re.M))


def test_each_jobs_memory_request_grows_with_the_rows_it_reads(tmp_path):
    """Without SLURM: a dry run shows what each job would ask a scheduler for (sbatch --mem), from its inputs' size."""
    requests = {}
    for rows in (200, 50_000):
        project = scratch_project(tmp_path / f"rows{rows}")
        (project / "reviews.csv").write_text("text,label\n" + "".join(f"{'good' if i % 2 else 'bad'} film number {i} of many,{'pos' if i % 2 else 'neg'}\n"
                                                                      for i in range(rows)))
        (project / "mine.yaml").write_text(yaml.safe_dump({"data": {"source": "file", "path": "reviews.csv", "label_column": "label", "labels": None}}))
        plan = snakemake(project, "results/augment/train.jsonl", "-n", "--configfile", "mine.yaml")
        assert plan.returncode == 0, plan.stderr[-3000:]
        before = planned_memory(plan)
        assert before["clean"] == before["split"] == before["augment"] == "<TBD>"  # decided once their inputs exist
        made = snakemake(project, "results/split/train.jsonl", "--cores", "1", "--configfile", "mine.yaml")
        assert made.returncode == 0, made.stderr[-3000:]
        plan = snakemake(project, "results/augment/train.jsonl", "-n", "--forcerun", "clean", "split", "augment", "--configfile", "mine.yaml")
        assert plan.returncode == 0, plan.stderr[-3000:]
        after = planned_memory(plan)
        requests[rows] = {rule: int(after[rule]) for rule in ("clean", "split", "augment")} | {"prepare": int(before["prepare"])}
    small, large = requests[200], requests[50_000]
    assert all(large[rule] > small[rule] for rule in small), requests
    # 250x the rows: the requests of the 200-row run are close to their base, the large run's add megabytes per MiB read
    assert all(small[rule] < 1000 for rule in small) and large["split"] - small["split"] > 20, requests


def test_a_2x2_sweep_with_2_fold_cv_trains_the_selected_variant(tmp_path, tiny_model_dir):
    """Each variant and fold is its own job; `select` ranks the CV means; the final model carries the winner's overrides."""
    project = scratch_project(tmp_path / "project")
    (project / "sweep.yaml").write_text(yaml.safe_dump({
        "split": {"max_rows": 80, "val_fraction": 0.2, "test_fraction": 0.25, "folds": 2},
        "augment": {"multiplier": 0.0},
        "model": {"pretrained": str(tiny_model_dir), "max_length": 16},
        "train": {"max_epochs": 1, "batch_size": 16, "head_init": "random"},
        "sweep": {"method": "grid", "parameters": {"train.head_lr": [1.0e-3, 1.0e-2], "model.dropout": [0.0, 0.2]}},
    }))
    default_plan = snakemake(project, "results/report.html", "-n")
    assert not planned_rules(default_plan) & SWEEP_RULES  # no sweep, no folds: the DAG has no sweep jobs
    plan = snakemake(project, "results/report.html", "-n", "--configfile", "sweep.yaml")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert re.search(r"^cv_fold\s+8$", plan.stdout, flags=re.M) and re.search(r"^select\s+1$", plan.stdout, flags=re.M)
    assert "trial" not in planned_rules(plan)  # with CV, no whole-split run per variant

    result = snakemake(project, "results/train/summary.json", "--cores", "2", "--set-threads", "cv_fold=1", "--configfile", "sweep.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    results = project / "results"
    selection = json.loads((results / "select" / "selection.json").read_text())
    variants = {v["name"]: v for v in selection["variants"]}
    assert set(variants) == {f"dropout-{d}__head_lr-{lr}" for d in ("0.0", "0.2") for lr in ("0.001", "0.01")}
    for name, variant in variants.items():
        scores = []
        for fold in (0, 1):
            trial = json.loads((results / "sweep" / name / f"fold{fold}" / "summary.json").read_text())
            assert trial["fold"] == fold and trial["variant"] == name
            scores.append(trial["metrics_at_best_epoch"]["val_f1_macro"])
        assert variant["scores"] == scores and variant["mean"] == pytest.approx(sum(scores) / 2)
    best = max(selection["variants"], key=lambda v: v["mean"])["mean"]
    assert variants[selection["winner"]]["mean"] == best and variants[selection["winner"]]["rank"] == 1
    assert not list((results / "sweep").rglob("*.ckpt"))  # CV runs keep no checkpoints
    final = json.loads((results / "train" / "summary.json").read_text())
    assert final["variant"] == selection["winner"] and final["train_rows"] == 44  # the whole training split, not a fold
    config = yaml.safe_load((results / "train" / "config.yaml").read_text())
    assert config["model"]["dropout"] == selection["overrides"]["model.dropout"]
    assert config["train"]["head_lr"] == selection["overrides"]["train.head_lr"]
    report_plan = snakemake(project, "results/report.html", "-n", "--configfile", "sweep.yaml")
    assert "results/select/selection.json" in report_plan.stdout.split("rule report:")[1]  # the report's sweep section reads it


def test_the_slurm_profile_names_only_rules_of_the_workflow():
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    listed = snakemake(REPO, "--list-rules")
    assert listed.returncode == 0, listed.stderr
    rules = set(listed.stdout.split())
    named = set(profile["set-threads"]) | set(profile["set-resources"])
    assert named <= rules, f"the slurm profile names rules the workflow does not have: {sorted(named - rules)}"
    assert default_rules() <= rules | {"all"}
