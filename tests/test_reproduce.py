"""Versioning end to end: a real git repo and a real DVC remote folder, the pipeline run through DVC.

The module builds one project (two committed runs, the first pushed) and then checks what a user does
with it: reproduce an old revision, restore it after losing the cache, run an experiment. The params
are tests/fixtures/micro.yaml with the tiny local model, so each full run takes about a minute.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.pipeline import metrics, sh, tunepipe

e2e = pytest.mark.e2e
BIN = Path(sys.executable).parent
PROFILE: list[str] = []  # profiles/default is found by Snakemake itself, as in a user's checkout
#: What a training param edit reruns: train and every rule that reads its model.
AFTER_TRAIN = {"train", "robustness", "evaluate", "explain", "distill", "prune", "export", "report"}


def planned_rules(done: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", done.stdout + done.stderr, flags=re.M))


@e2e
def test_each_run_is_versioned_and_diffable(history):
    project = history.project
    lock = yaml.safe_load(sh(project, "git", "show", f"{history.rev1}:dvc.lock").stdout)
    outs = {out["path"]: out["md5"] for out in lock["stages"]["pipeline"]["outs"]}
    assert {"results/prepare", "results/split", "results/train", "results/export", "results/prune", "results/evaluate",
            ".snakemake/metadata"} <= set(outs)
    # a folder is versioned whole, the resume checkpoints excepted (.dvcignore)
    from tunepipe.vcs import dir_entries, recorded_md5

    cache = project / ".dvc" / "cache"
    assert {"best.ckpt", "history.csv", "summary.json"} <= set(dir_entries(cache, outs["results/train"]))
    assert not any(path.startswith("checkpoints/") for path in dir_entries(cache, outs["results/train"]))
    assert recorded_md5(lock, "results/evaluate/metrics.json", cache) is not None
    assert list((history.remote / "files" / "md5").iterdir())  # a real remote folder holds the objects

    metrics_diff = json.loads(sh(project, "dvc", "metrics", "diff", history.rev1, history.rev2, "--json").stdout)
    assert "accuracy" in metrics_diff["results/evaluate/metrics.json"]
    params_diff = json.loads(sh(project, "dvc", "params", "diff", history.rev1, history.rev2, "--json").stdout)
    assert {k: params_diff["params.yaml"]["train.encoder_lr"][k] for k in ("old", "new")} == {"old": 5e-05, "new": 0.0002}
    plots = json.loads(sh(project, "dvc", "plots", "diff", history.rev1, history.rev2, "--json").stdout)
    dvclive = {name for name in plots["data"] if name.startswith("results/train/dvclive/plots/metrics/")}
    assert set(plots["data"]) - dvclive == {"training-loss", "validation-metrics", "training-loss-per-step", "learning-rate", "pruning", "roc",
                                            "precision-recall", "calibration", "per-class-f1", "slices", "robustness", "confusion"}
    assert {f"results/train/dvclive/plots/metrics/{name}.tsv" for name in ("train_loss_step", "lr_encoder", "val_accuracy")} <= dvclive
    assert len(plots["data"]["pruning"][0]["revisions"]) == 2

    # the second run's report compares it with the first (read from git and the local cache)
    report = (project / "results" / "report.html").read_text()
    section = re.search(r'<section id="history">(.*?)</section>', report, re.S).group(1)
    assert history.rev1[:7] in section and "run 1" in section and f"{100 * history.first['accuracy']:.1f}%" in section


@e2e
def test_reproduce_a_prior_revision_gets_equal_metrics_and_leaves_the_checkout_alone(history, tmp_path):
    project = history.project
    params = project / "params.yaml"
    edited = params.read_text() + "# an uncommitted edit\n"
    params.write_text(edited)
    try:
        done = tunepipe(project, "reproduce", history.rev1[:8], "--workdir", str(tmp_path / "wt"))
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert "uncommitted change(s) (params.yaml)" in output and "REPRODUCED: the metrics are equal" in output
        assert re.search(r"running the pipeline: .*train", output) and "train done" in output  # re-trained
        assert "results/train/best.ckpt: identical to the recorded one" in output
        # the user's checkout: same commit, same uncommitted edit, same results; no worktree left behind
        assert params.read_text() == edited
        assert sh(project, "git", "rev-parse", "HEAD").stdout.strip() == history.rev2
        assert metrics(project) == history.second
        assert len(sh(project, "git", "worktree", "list").stdout.splitlines()) == 1 and not (tmp_path / "wt").exists()
    finally:
        sh(project, "git", "checkout", "params.yaml")


@e2e
def test_reproduce_refuses_a_revision_that_never_ran(history):
    for rev, message in ((history.never_ran, "has no dvc.lock: the pipeline never ran"), ("no-such-rev", "is not a commit")):
        done = tunepipe(history.project, "reproduce", rev)
        assert done.returncode == 2 and message in done.stderr, done.stdout + done.stderr
    assert len(sh(history.project, "git", "worktree", "list").stdout.splitlines()) == 1


@e2e
def test_lost_cache_restores_from_the_remote_and_snakemake_has_nothing_to_do(history, tmp_path):
    project = history.project
    shutil.rmtree(project / ".dvc" / "cache")
    # the remote unreachable as well: a clear message, no worktree left, nothing in the checkout changed
    sh(project, "dvc", "remote", "modify", "--local", "storage", "url", str(tmp_path / "unreachable"))
    try:
        done = tunepipe(project, "reproduce", history.rev1)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "not in the local DVC cache" in done.stderr and "dvc push" in done.stderr
        assert len(sh(project, "git", "worktree", "list").stdout.splitlines()) == 1
        assert metrics(project) == history.second
    finally:
        sh(project, "dvc", "remote", "modify", "--local", "storage", "url", str(history.remote))

    sh(project, "git", "checkout", "-q", history.rev1)
    try:
        sh(project, "dvc", "pull", "--force")  # --force: the workspace holds run 2's files, no longer cached
        assert metrics(project) == history.first
        dry = sh(project, "snakemake", "-n", "results/report.html", *PROFILE)
        assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]
        # and an edit is still seen: Snakemake's records came back with the outputs
        edit = sh(project, "snakemake", "-n", "results/report.html", *PROFILE, "--config", "train={encoder_lr: 0.0002}")
        assert planned_rules(edit) == AFTER_TRAIN
    finally:
        sh(project, "git", "checkout", "-q", "main")
        sh(project, "dvc", "pull", "--force")
    dry = sh(project, "snakemake", "-n", "results/report.html", *PROFILE)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


@e2e
def test_reproduce_from_checkpoints_reruns_evaluation_only(history):
    done = tunepipe(history.project, "reproduce", history.rev2, "--from-checkpoints")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    plan = re.search(r"running the pipeline: (.*?)  \(log", output).group(1).split(", ")
    assert set(plan) == AFTER_TRAIN - {"train"} | {"baseline"}
    assert "REPRODUCED" in output


@e2e
def test_dvc_exp_run_goes_through_the_same_pipeline(history):
    # Snakemake, run by the DVC stage, reran only what the new encoder_lr affects
    assert planned_rules(history.second_run) == AFTER_TRAIN
    experiments = [exp for row in history.exp_show for exp in (row.get("experiments") or [])]
    data = next(run["data"] for exp in experiments if exp.get("name") == "lr-2e-4" for run in exp["revs"])
    assert data["params"]["params.yaml"]["data"]["train"]["encoder_lr"] == 0.0002
    assert data["metrics"]["results/evaluate/metrics.json"]["data"] == history.second


def test_metrics_compare_exactly_on_cpu_and_within_the_tolerance_on_gpu():
    from tunepipe.reproduce import compare, format_comparison

    recorded = {"accuracy": 0.5, "f1_macro": 0.4, "test_rows": 30}
    assert compare(recorded, dict(recorded), 0.0).equal
    nudged = dict(recorded, accuracy=0.5000001)
    assert not compare(recorded, nudged, 0.0).equal
    assert compare(recorded, nudged, 0.01).equal
    assert not compare(recorded, dict(nudged, test_rows=31), 0.01).equal  # counts are exact even on a GPU
    missing = compare(recorded, {"accuracy": 0.5, "test_rows": 30}, 0.0)
    assert not missing.equal and "missing" in format_comparison(missing) and "DIFFERS" in format_comparison(missing)


def test_reproduce_help_explains_what_it_does(tmp_path):
    done = tunepipe(tmp_path, "reproduce", "--help")
    assert done.returncode == 0
    for text in ("separate git worktree", "--from-checkpoints", "exit status", "--tolerance", "Uncommitted changes"):
        assert text in done.stdout


def test_reproduce_outside_a_git_repo_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    done = tunepipe(tmp_path, "reproduce", "HEAD")
    assert done.returncode == 2 and "not inside a git repository" in done.stderr


def test_reproduce_gives_the_worktree_only_the_remote_it_uses_and_a_kept_one_no_credentials(tmp_path):
    """configure_dvc/forget_credentials on two `dvc init` folders (no run): the user's config.local has two remotes with passwords."""
    from tunepipe.reproduce import configure_dvc, forget_credentials

    repo, worktree = tmp_path / "checkout", tmp_path / "worktree"
    for folder in (repo, worktree):
        folder.mkdir()
        sh(folder, "dvc", "init", "--no-scm", "-q")
    sh(repo, "dvc", "remote", "add", "-d", "storage", "http://127.0.0.1:9/store")
    sh(repo, "dvc", "remote", "add", "other", "http://127.0.0.1:9/other")
    sh(repo, "dvc", "remote", "modify", "--local", "storage", "password", "storage-secret")
    sh(repo, "dvc", "remote", "modify", "--local", "other", "password", "other-secret")
    cache, name, url = configure_dvc(repo, worktree, None)
    written = (worktree / ".dvc" / "config.local").read_text()
    assert (name, url) == ("storage", "http://127.0.0.1:9/store") and str(cache) in written
    assert "storage-secret" in written  # the run may need it to pull
    assert "other" not in written  # a remote it does not use: nothing of it
    forget_credentials(worktree)  # what reproduce does before it keeps a worktree
    kept = (worktree / ".dvc" / "config.local").read_text()
    assert "secret" not in kept and "http://127.0.0.1:9/store" in kept and str(cache) in kept
