"""TPE in rounds (sweep.method tpe), search spaces with ranges, the median pruning rule, and a tiny tpe sweep end to end."""

from __future__ import annotations

import json
import random
import re
import shutil

import pytest
import yaml

from tunepipe.config import validate_params
from tunepipe.errors import ParamsError
from tunepipe.search import (Range, Told, ask_round, median_by_epoch, metric_by_epoch, parse_space, pruning_summary, round_sizes,
                             space_json, worse_than_median)
from tunepipe.sweep import expand_variants, search_space, select, validate_run_params, variant_name

SPACE = {"train.head_lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "model.dropout": [0.0, 0.1, 0.2],
         "train.batch_size": {"low": 8, "high": 32, "step": 8}}


def params(**sweep):
    return validate_params({"sweep": sweep})


def told(round_index, trials, scores, pruned=()):
    return [Told(round_index, i, t["name"], t["params"], score, i in pruned, {1: score, 2: score + 0.01}) for i, (t, score) in enumerate(zip(trials, scores))]


def test_rounds_are_asked_deterministically_from_earlier_rounds_whatever_order_they_finished_in():
    space = parse_space(SPACE)
    ask = dict(seed=7, count=3, mode="max", startup=3, name_of=variant_name)
    first = ask_round(space, [], round_index=0, **ask)
    assert first == ask_round(space, [], round_index=0, **ask) and len({t["name"] for t in first}) == 3
    history = told(0, first, [0.61, 0.72, 0.55], pruned={2})
    second = ask_round(space, history, round_index=1, **ask)
    # The study is replayed in (round, index) order: the order the summaries are read in does not matter.
    assert second == ask_round(space, list(reversed(history)), round_index=1, **ask)
    assert not {t["name"] for t in second} & {t["name"] for t in first}  # never a variant an earlier round has
    assert second != ask_round(space, history, round_index=1, **{**ask, "seed": 8})
    assert second != ask_round(space, told(0, first, [0.9, 0.1, 0.5]), round_index=1, **ask)  # it does read the results
    for trial in first + second:
        overrides = trial["overrides"]
        assert 1.0e-4 <= overrides["train.head_lr"] <= 1.0e-2 and overrides["model.dropout"] in (0.0, 0.1, 0.2)
        assert overrides["train.batch_size"] in (8, 16, 24, 32)
        assert trial["name"] == variant_name(overrides)


def test_a_small_categorical_space_runs_out_instead_of_repeating_a_trial():
    space = parse_space({"model.dropout": [0.0, 0.1]})
    first = ask_round(space, [], seed=0, round_index=0, count=2, mode="max", startup=2, name_of=variant_name)
    assert sorted(t["overrides"]["model.dropout"] for t in first) == [0.0, 0.1]
    assert ask_round(space, told(0, first, [0.5, 0.6]), seed=0, round_index=1, count=2, mode="max", startup=2, name_of=variant_name) == []


def test_rounds_split_the_samples_by_parallel():
    assert round_sizes(4, 2) == [2, 2] and round_sizes(5, 2) == [2, 2, 1] and round_sizes(3, 8) == [3]


def test_ranges_are_read_checked_and_written_back():
    space = search_space(params(method="tpe", parameters={**SPACE, "train.batch_size": {"low": "8", "high": 32, "step": 8}}))
    assert space["train.head_lr"] == Range(1.0e-4, 1.0e-2, log=True)
    assert space["train.batch_size"] == Range(8, 32, step=8, integer=True)
    assert space["model.dropout"] == [0.0, 0.1, 0.2]
    assert parse_space(space_json(space)) == space
    # A float key with integer-looking bounds still draws floats.
    assert search_space(params(method="random", parameters={"model.dropout": {"low": 0, "high": 0.5}}))["model.dropout"].integer is False


@pytest.mark.parametrize(("method", "grid", "message"), [
    ("grid", {"train.head_lr": {"low": 1e-4, "high": 1e-2}}, "train.head_lr is a range; grid needs a list of values"),
    ("tpe", {"train.head_lr": {"low": 0.0, "high": 1e-2, "log": True}}, "train.head_lr: a log range needs low > 0"),
    ("tpe", {"train.head_lr": {"low": 1e-2, "high": 1e-4}}, "train.head_lr: low (0.01) must be less than high (0.0001)"),
    ("random", {"train.head_lr": {"lo": 1e-4, "high": 1e-2}}, "train.head_lr must be a list of values or a range {low, high, log}"),
    ("random", {"train.batch_size": {"low": 8.5, "high": 32}}, "train.batch_size takes integers"),
    ("tpe", {"train.batch_size": {"low": 0, "high": 32}}, "train.batch_size: expected an integer >= 1"),
    ("tpe", {"train.head_lr": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-4}}, "give either log or step"),
    ("tpe", {"train.head_lrr": [1e-3]}, "unknown key 'train.head_lrr'"),
])
def test_bad_ranges_name_the_key_and_what_is_allowed(method, grid, message):
    with pytest.raises(ParamsError, match=re.escape(message)):
        validate_run_params({"sweep": {"method": method, "parameters": grid}})


def test_tpe_with_folds_is_refused_and_tpe_variants_are_asked_not_expanded():
    with pytest.raises(ParamsError, match="tpe does not cross-validate"):
        validate_run_params({"sweep": {"method": "tpe", "parameters": SPACE}, "split": {"folds": 2}})
    assert expand_variants(params(method="tpe", parameters=SPACE)) == []


def test_random_draws_from_ranges_with_the_seed():
    a = expand_variants(params(method="random", parameters=SPACE, samples=4, seed=1))
    assert a == expand_variants(params(method="random", parameters=SPACE, samples=4, seed=1)) and len({v.name for v in a}) == 4
    assert a != expand_variants(params(method="random", parameters=SPACE, samples=4, seed=2))
    assert all(1.0e-4 <= v.overrides["train.head_lr"] <= 1.0e-2 and v.overrides["train.batch_size"] % 8 == 0 for v in a)


def test_float_variant_names_are_rounded_but_the_overrides_are_exact():
    assert variant_name({"train.head_lr": 0.0012345678901}) == "head_lr-0.001235"
    assert variant_name({"train.encoder_lr": 3.14159e-05, "model.dropout": 0.0}) == "encoder_lr-3.142e-05__dropout-0.0"
    assert variant_name({"train.batch_size": 16}) == "batch_size-16"
    assert re.fullmatch(r"[A-Za-z0-9_.+-]+", variant_name({"train.head_lr": random.Random(0).uniform(1e-5, 1e-2)}))


def test_the_median_rule_on_hand_built_histories():
    earlier = [metric_by_epoch(rows, "val_f1_macro") for rows in (
        [{"epoch": "1", "val_f1_macro": "0.50"}, {"epoch": "2", "val_f1_macro": "0.60"}, {"epoch": "3", "val_f1_macro": "0.70"}],
        [{"epoch": "1", "val_f1_macro": "0.40"}, {"epoch": "2", "val_f1_macro": "0.70"}],  # pruned after epoch 2
        [{"epoch": "1", "val_f1_macro": "0.30"}, {"epoch": "2", "val_f1_macro": "0.80"}, {"epoch": "3", "val_f1_macro": "0.90"}],
    )]
    medians = median_by_epoch(earlier)
    assert medians == {1: 0.40, 2: 0.70, 3: pytest.approx(0.80)}
    assert not worse_than_median(0.10, 1, medians, "max", warmup_epochs=1)  # still warming up
    assert worse_than_median(0.65, 2, medians, "max", warmup_epochs=1)
    assert not worse_than_median(0.70, 2, medians, "max", warmup_epochs=1)  # equal to the median is not worse
    assert not worse_than_median(0.65, 2, medians, "max", warmup_epochs=2)
    assert not worse_than_median(0.10, 4, medians, "max", warmup_epochs=1)  # no earlier trial reached epoch 4
    assert worse_than_median(0.75, 2, medians, "min", warmup_epochs=0)  # val_loss: higher is worse
    assert metric_by_epoch([{"epoch": 1, "val_loss": ""}], "val_loss") == {}


def test_pruned_trials_compete_with_their_best_score_and_the_saving_is_counted():
    trials = [
        {"variant": "a", "overrides": {}, "fold": None, "score": 0.7, "round": 0, "epochs_run": 4, "max_epochs": 4, "pruned_at_epoch": None},
        {"variant": "b", "overrides": {}, "fold": None, "score": 0.8, "round": 1, "epochs_run": 2, "max_epochs": 4, "pruned_at_epoch": 2},
        {"variant": "c", "overrides": {}, "fold": None, "score": 0.5, "round": 1, "epochs_run": 3, "max_epochs": 4, "pruned_at_epoch": None},
    ]
    chosen = select(trials, "val_f1_macro", "max")
    assert chosen["winner"] == "b" and chosen["variants"][0]["pruned_at_epoch"] == 2 and chosen["variants"][0]["round"] == 1
    # c stopped early by early stopping: not pruning's saving.
    assert pruning_summary(trials) == {"pruned_trials": 1, "epochs_trained": 9, "epochs_full": 11, "epochs_saved": 2, "saved_share": 0.1818}


def test_the_report_shows_where_each_tpe_trial_stopped_and_the_compute_saved(tmp_path):
    from tests.report.test_report import INPUTS, render, section

    variants = [
        {"name": "head_lr-0.01", "overrides": {"train.head_lr": 0.01}, "folds": [None], "scores": [0.8], "mean": 0.8, "std": 0.0, "rank": 1,
         "winner": True, "round": 0, "epochs_run": 3, "max_epochs": 4, "pruned_at_epoch": None},
        {"name": "head_lr-2.0", "overrides": {"train.head_lr": 2.0}, "folds": [None], "scores": [0.4], "mean": 0.4, "std": 0.0, "rank": 2,
         "winner": False, "round": 1, "epochs_run": 1, "max_epochs": 4, "pruned_at_epoch": 1},
    ]
    selection = {"method": "tpe", "folds": 0, "metric": "val_f1_macro", "mode": "max", "winner": "head_lr-0.01", "overrides": {"train.head_lr": 0.01},
                 "mean": 0.8, "std": 0.0, "variants": variants,
                 "pruning": {"rule": "median", "warmup_epochs": 1, **pruning_summary([{**v, "score": v["mean"]} for v in variants])}}
    training = section(render(tmp_path, dict(INPUTS, selection=selection)), "training")
    assert "pruned at epoch 1 of 4" in training and "3 of 4 epochs" in training
    assert "Compute saved: <strong>3 of 7 epochs</strong> (42.9%) not trained" in training
    assert "<th class=\"n\">Round</th>" in training


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.e2e
def test_a_tiny_tpe_sweep_with_pruning_is_deterministic_and_resumes(tmp_path, tiny_model_dir):
    """2 rounds x 2 trials as Snakemake jobs: round 1 is pruned against round 0; a removed trial alone reruns; -j 1 asks as -j 2 did;
    then on to prune, where the top 3 trials' ensemble is a candidate."""
    from tests.pipeline import scratch_project, snakemake

    project = scratch_project(tmp_path / "project")
    # Four head_lr values and four trials: sweep.seed 0 asks the two small ones first (a pure function of the seed, see
    # test_rounds_are_asked_deterministically...), so round 1 gets 0.5 and 2.0, whose val_loss after one epoch is
    # worse than round 0's median: both are pruned there. 1.23456e-3 checks a rounded float name through the DAG.
    (project / "tpe.yaml").write_text(yaml.safe_dump({
        "split": {"max_rows": 60, "val_fraction": 0.3, "test_fraction": 0.2},
        "augment": {"multiplier": 0.0},
        "model": {"pretrained": str(tiny_model_dir), "max_length": 16},
        "train": {"max_epochs": 2, "batch_size": 16, "head_init": "random"},
        "sweep": {"method": "tpe", "samples": 4, "parallel": 2, "seed": 0, "pruning": "median", "pruning_warmup_epochs": 0,
                  "metric": "val_loss", "mode": "min", "parameters": {"train.head_lr": [1.0e-5, 1.23456e-3, 0.5, 2.0]}},
        "distill": {"enabled": False}, "prune": {"method": "unstructured", "sparsities": [0.5], "latency_runs": 2},  # read after the sweep only
    }))
    target = ("results/select/selection.json", "--configfile", "tpe.yaml", "--set-threads", "trial=1")
    results = project / "results"

    def sweep(jobs):
        done = snakemake(project, *target, "--cores", str(jobs))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
        asked = [json.loads((results / "sweep" / f"round{k}" / "asked.json").read_text()) for k in (0, 1)]
        return done.stdout + done.stderr, asked, json.loads((results / "select" / "selection.json").read_text())

    def jobs(log, rule):  # jobs that ran, also those added once a checkpoint was done (the first job table lacks them)
        return len(re.findall(rf"^(?:local)?(?:rule|checkpoint) {rule}:$", log, flags=re.M))

    log, asked, selection = sweep(2)
    assert [[t["name"] for t in round_["trials"]] for round_ in asked] == [["head_lr-1e-05", "head_lr-0.001235"], ["head_lr-0.5", "head_lr-2.0"]]
    assert asked[0]["trials"][1]["overrides"] == {"train.head_lr": 1.23456e-3}  # the exact value; the name rounds it
    summaries = {t["name"]: json.loads((results / "sweep" / t["name"] / "summary.json").read_text()) for r in asked for t in r["trials"]}
    assert [summaries[t["name"]]["pruned_at_epoch"] for r in asked for t in r["trials"]] == [None, None, 1, 1]
    for trial in asked[1]["trials"]:  # a pruned trial keeps its outputs: history up to where it stopped
        assert summaries[trial["name"]]["epochs_run"] == 1 and (results / "sweep" / trial["name"] / "best.ckpt").exists()
        assert len((results / "sweep" / trial["name"] / "history.csv").read_text().splitlines()) == 2
    rows = {row["name"]: row for row in selection["variants"]}
    assert rows["head_lr-2.0"]["pruned_at_epoch"] == 1 and rows["head_lr-1e-05"]["pruned_at_epoch"] is None
    assert selection["pruning"] == {"rule": "median", "warmup_epochs": 0, "pruned_trials": 2, "epochs_trained": 6, "epochs_full": 8,
                                    "epochs_saved": 2, "saved_share": 0.25}

    # Killed during round 1: its finished trial is a file, the other is not, select never ran. Only the missing one reruns.
    shutil.rmtree(results / "sweep" / "head_lr-2.0")
    (results / "select" / "selection.json").unlink()
    log, asked_again, selection_again = sweep(1)
    assert (jobs(log, "trial"), jobs(log, "ask"), jobs(log, "select")) == (1, 0, 1), log[-3000:]
    assert asked_again == asked and selection_again == selection

    # Round 1 asked again with one job at a time (round 0's trials finished in whatever order -j 2 gave): the same.
    for path in ("sweep/round1", "sweep/head_lr-0.5", "sweep/head_lr-2.0", "select"):
        shutil.rmtree(results / path)
    log, asked_serial, selection_serial = sweep(1)
    assert (jobs(log, "trial"), jobs(log, "ask")) == (2, 1), log[-3000:]
    assert asked_serial == asked and selection_serial == selection

    # On to prune: rule ensemble averages the 3 best trials (a pruned one too: its best.ckpt is kept), prune scores it.
    done = snakemake(project, "results/prune/levels.json", "--configfile", "tpe.yaml", "--cores", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (jobs(done.stdout + done.stderr, "trial"), jobs(done.stdout + done.stderr, "ensemble")) == (0, 1)
    ensemble = json.loads((results / "ensemble" / "summary.json").read_text())
    assert [member["variant"] for member in ensemble["members"]] == [row["name"] for row in selection["variants"][:3]]
    assert ensemble["winner"]["variant"] == selection["winner"] and not ensemble["skipped"]
    levels = json.loads((results / "prune" / "levels.json").read_text())
    assert [row["name"] for row in levels["levels"]] == ["dense", "unstructured-0.50", "ensemble-3"]
    assert levels["levels"][2]["val_accuracy"] == ensemble["ensemble"]["val_accuracy"]
    assert levels["selected_reason"].startswith(f"{levels['selected']}:")
