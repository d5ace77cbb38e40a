"""The sweep's top-k ensemble: its forward, its file, prune's selection rule with it, and the stages ensemble -> prune -> export."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch import nn

from tests.optimize.test_pruning import LEVELS
from tests.optimize.test_stages import NAMES, checkpoint, run_export
from tunepipe.checkpoints import load_model, save_model
from tunepipe.io import write_json, write_jsonl
from tunepipe.modalities import get_modality
from tunepipe.models.ensemble import Ensemble, input_mismatch, verdict
from tunepipe.models.inference import model_inputs
from tunepipe.optimize.pruning import select_candidate, select_level
from tunepipe.stages import ensemble as ensemble_stage
from tunepipe.stages import prune as prune_stage
from tunepipe.stages.harness import main


class Fixed(nn.Module):
    """A member that predicts the same logits for every row."""

    input_names = ("x",)

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.head = nn.Linear(1, len(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_the_forward_is_the_log_of_the_members_mean_probabilities():
    logits = [[0.0, 10.0], [2.0, 0.0], [2.0, 0.0]]
    ensemble = Ensemble([Fixed(row) for row in logits]).eval()
    out = ensemble(torch.zeros(4, 1))
    by_hand = [sum(math.exp(row[c]) / sum(math.exp(v) for v in row) for row in logits) / 3 for c in range(2)]
    torch.testing.assert_close(out, torch.log(torch.tensor(by_hand)).expand(4, -1))
    torch.testing.assert_close(out.softmax(dim=-1).sum(dim=-1), torch.ones(4))
    # averaged probabilities, not logits: the mean logit would pick class 1 (10/3 > 4/3), two members' 0.88 pick class 0
    assert out.argmax(dim=-1).tolist() == [0, 0, 0, 0]
    assert ensemble(x=torch.zeros(1, 1)).shape == (1, 2) and ensemble.input_names == ("x",) and ensemble.head.out_features == 2
    member_probs = torch.stack([torch.tensor(row).softmax(dim=-1) for row in logits])
    torch.testing.assert_close(member_probs.mean(dim=0), out[0].softmax(dim=-1))


def test_members_that_predict_other_classes_are_refused():
    with pytest.raises(ValueError, match="same classes"):
        Ensemble([Fixed([0.0, 1.0]), Fixed([0.0, 1.0, 2.0])])


def test_a_member_with_another_max_length_cannot_share_the_winners_input(tiny_model_cfg):
    text = get_modality("text")
    winner = {"model_cfg": tiny_model_cfg, "label_names": NAMES, "modality": "text"}
    assert input_mismatch(winner, {**winner, "model_cfg": {**tiny_model_cfg, "dropout": 0.3}}, text.preprocessing) is None
    reason = input_mismatch(winner, {**winner, "model_cfg": {**tiny_model_cfg, "max_length": 32}}, text.preprocessing)
    assert reason == "its input differs from the winner's (max_length 32 vs 24)"
    assert "labels" in input_mismatch(winner, {**winner, "label_names": ["a", "b"]}, text.preprocessing)


def test_an_ensemble_file_round_trips_through_load_model(tmp_path, tiny_model_cfg):
    build = get_modality("text").build_classifier
    torch.manual_seed(0)
    members = [build(tiny_model_cfg, num_labels=2).eval(), build({**tiny_model_cfg, "dropout": 0.2}, num_labels=2).eval()]
    ensemble = Ensemble(members).eval()
    level = {"name": "ensemble-2", "method": "ensemble", "sparsity": 0.0}
    save_model(tmp_path / "m.pt", ensemble, model_cfg=tiny_model_cfg, label_names=NAMES, modality="text", pruning_level=level,
               members=[tiny_model_cfg, {**tiny_model_cfg, "dropout": 0.2}])
    loaded, payload = load_model(tmp_path / "m.pt")
    assert isinstance(loaded, Ensemble) and not loaded.training and len(loaded.members) == 2
    assert payload["pruning_level"] == level and payload["ensemble"][1]["dropout"] == 0.2
    tokens = {"input_ids": torch.tensor([[101, 2204, 102]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with torch.inference_mode():
        torch.testing.assert_close(loaded(**model_inputs(loaded, tokens)), ensemble(**tokens))
        assert not torch.allclose(loaded(**tokens), members[0](**tokens).log_softmax(dim=-1))  # both members count


# ------------------------------------------------------------------------------------ prune's selection rule

ENSEMBLE_ROW = {"name": "ensemble-3", "method": "ensemble", "nonzero_params": 3000, "latency_ms": 30.0}


@pytest.mark.parametrize(("drop", "select"), [(0.01, "smallest"), (0.01, "fastest"), (0.0, "smallest"), (0.0, "fastest"), (0.2, "smallest")])
def test_without_an_ensemble_the_rule_is_todays(drop, select):
    choice = select_candidate(LEVELS, drop, select)
    assert choice.level is select_level(LEVELS, drop, select) and choice.reference["name"] == "dense"
    # or an ensemble the validation split does not prefer: dense stays the reference, the same level is kept
    assert select_candidate([*LEVELS, {**ENSEMBLE_ROW, "val_accuracy": 0.79}], drop, select).level is choice.level


def test_the_ensemble_is_kept_only_when_better_by_more_than_the_drop_over_every_smaller_candidate():
    better = select_candidate([*LEVELS, {**ENSEMBLE_ROW, "val_accuracy": 0.83}], 0.01)
    assert better.level["name"] == "ensemble-3" and better.reference["name"] == "ensemble-3"
    assert better.reason == ("ensemble-3: val acc 0.8300 vs dense 0.8000, more than prune.max_accuracy_drop (0.01) above every smaller candidate")
    # 0.005 above dense: within the drop of dense, so a smaller model is kept, but held to the ensemble's 0.805:
    # unstructured-0.40 (0.792, kept against dense alone) no longer qualifies; structured-0.20 (0.795) does.
    close = select_candidate([*LEVELS, {**ENSEMBLE_ROW, "val_accuracy": 0.805}], 0.01)
    assert close.level["name"] == "structured-0.20" and close.reference["name"] == "ensemble-3"
    assert "within prune.max_accuracy_drop (0.01) of the best uncompressed candidate (ensemble-3, val acc 0.8050)" in close.reason
    # exactly the drop above dense: dense still qualifies, and is smaller
    assert select_candidate([LEVELS[0], {**ENSEMBLE_ROW, "val_accuracy": 0.81}], 0.01).level["name"] == "dense"


# ------------------------------------------------------------------------------------ the stages


def test_ensemble_stage_then_prune_scores_it_and_export_ships_it(tmp_path, tiny_model_cfg, labelled_rows):
    """Three sweep variants, one with another max_length (skipped): an ensemble of the other two, a candidate of prune
    beside dense; its file exported to ONNX passes parity (an ensemble has no `.encoder`: exported unfused)."""
    build = get_modality("text").build_classifier
    sweep = tmp_path / "sweep"
    cfgs = {"a": tiny_model_cfg, "b": {**tiny_model_cfg, "max_length": 16}, "c": tiny_model_cfg}
    for seed, (name, cfg) in enumerate(cfgs.items()):
        torch.manual_seed(seed)
        (sweep / name).mkdir(parents=True)
        checkpoint(sweep / name / "best.ckpt", build(cfg, num_labels=2), cfg, "text")
    write_json(tmp_path / "selection.json", {"metric": "val_f1_macro", "mode": "max", "winner": "a", "variants": [
        {"name": name, "rank": rank, "mean": 0.9 - rank / 10} for rank, name in enumerate(("a", "b", "c"), start=1)]})
    splits = {}
    for name, part in zip(("train", "val", "test"), (labelled_rows[:16], labelled_rows[16:32], labelled_rows[32:])):
        splits[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(splits[name], part)
    out = tmp_path / "ensemble"
    assert main(ensemble_stage.STAGE, ["--params", json.dumps({"ensemble": {"top_k": 3, "batch_size": 8}}), "--in", f"selection={tmp_path / 'selection.json'}",
                                       *[f"--in=trials={sweep / name / 'best.ckpt'}" for name in "cba"], "--in", f"val={splits['val']}",
                                       "--in", f"test={splits['test']}", "--out", f"model={out / 'model.pt'}", "--out", f"summary={out / 'summary.json'}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [m["variant"] for m in summary["members"]] == ["a", "c"] and summary["winner"]["variant"] == "a"
    assert summary["skipped"] == [{"variant": "b", "rank": 2, "reason": "its input differs from the winner's (max_length 16 vs 24)"}]
    assert summary["level"] == {"name": "ensemble-2", "method": "ensemble", "sparsity": 0.0}
    assert set(summary["ensemble"]) == {"val_accuracy", "val_f1_macro", "test_accuracy", "test_f1_macro"}
    assert summary["val_gain"] == pytest.approx(summary["ensemble"]["val_accuracy"] - summary["winner"]["val_accuracy"])
    model, payload = load_model(out / "model.pt")
    assert isinstance(model, Ensemble) and len(payload["ensemble"]) == 2

    pruned = tmp_path / "prune"
    prune_params = {"seed": 0, "prune": {"method": "unstructured", "sparsities": [0.5], "batch_size": 8, "max_accuracy_drop": 0.0, "select": "smallest",
                                         "finetune_steps": 0, "finetune_lr": 1e-4, "finetune_batch_size": 4, "latency_runs": 2}}
    assert main(prune_stage.STAGE, ["--params", json.dumps(prune_params), "--in", f"best={sweep / 'a' / 'best.ckpt'}", *[f"--in={k}={v}" for k, v in splits.items()],
                                    "--in", f"ensemble={out / 'model.pt'}", "--out", f"model={pruned / 'model.pt'}", "--out", f"levels={pruned / 'levels.json'}"]) == 0
    levels = json.loads((pruned / "levels.json").read_text())
    rows = {row["name"]: row for row in levels["levels"]}
    assert list(rows) == ["dense", "unstructured-0.50", "ensemble-2"]
    assert rows["ensemble-2"]["val_accuracy"] == summary["ensemble"]["val_accuracy"]  # the same model, scored the same way
    assert rows["ensemble-2"]["total_params"] == 2 * rows["dense"]["total_params"] and rows["ensemble-2"]["latency_ms"] > 0
    assert levels["selected"] == select_level(levels["levels"], 0.0)["name"] and levels["selected_reason"].startswith(levels["selected"])

    # export takes the ensemble as prune's model file (whatever prune kept here): ONNX, parity, INT8
    assert run_export(out, sweep / "a" / "best.ckpt", {name: splits[name] for name in ("val", "test")}) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["pruning_level"] == "ensemble-2" and parity["graph_fusion"] is None


# ------------------------------------------------------------------------------------ the report


def test_the_report_shows_the_ensemble_beside_the_winner_and_as_a_pruning_candidate(tmp_path):
    from tests.report.test_report import INPUTS, SELECTION, render, section
    from tunepipe.report.sections.sweep import ensemble as ensemble_view

    summary = {
        "level": {"name": "ensemble-2", "method": "ensemble", "sparsity": 0.0}, "top_k": 3, "score_metric": "val_f1_macro",
        "members": [{"variant": "head_lr-0.01", "rank": 1}, {"variant": "head_lr-0.001", "rank": 2}],
        "skipped": [{"variant": "max_length-32", "rank": 2, "reason": "its input differs from the winner's (max_length 32 vs 24)"}],
        "ensemble": {"val_accuracy": 0.83, "val_f1_macro": 0.82, "test_accuracy": 0.81, "test_f1_macro": 0.8},
        "winner": {"variant": "head_lr-0.01", "val_accuracy": 0.8, "val_f1_macro": 0.79, "test_accuracy": 0.78, "test_f1_macro": 0.77},
        "verdict": "ensemble of 2: val acc 0.8300 vs the winner's 0.8000 (+0.0300, above) <b>",
    }
    levels = {**INPUTS["levels"], "selected": "ensemble-2", "selected_reason": "ensemble-2: val acc 0.8300 vs dense 0.8000, more than the drop",
              "levels": [*INPUTS["levels"]["levels"], {"name": "ensemble-2", "method": "ensemble", "sparsity": 0.0, "total_params": 2000,
                                                       "nonzero_params": 2000, "val_accuracy": 0.83, "test_accuracy": 0.81, "latency_ms": 20.0}]}
    html = render(tmp_path, dict(INPUTS, selection=SELECTION, ensemble=summary, levels=levels))
    training = section(html, "training")
    assert "<code>head_lr-0.01</code>, <code>head_lr-0.001</code>" in training and "(+0.0300, above) &lt;b&gt;" in training
    assert re.search(r"<td>ensemble of 2</td><td class=\"n\">83.0%</td>.*?<td>winner head_lr-0.01</td><td class=\"n\">80.0%</td>", training, re.S)
    assert "Skipped <code>max_length-32</code> (rank 2): its input differs from the winner&#39;s (max_length 32 vs 24)." in training
    pruning = section(html, "pruning")
    assert re.search(r'<tr class="selected">\s*<td>ensemble</td>', pruning) and "Why: ensemble-2: val acc 0.8300 vs dense 0.8000" in pruning
    assert ensemble_view({"selection": SELECTION}) is None  # no ensemble rule ran: no paragraph
