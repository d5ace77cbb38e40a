"""The optimisation phase for every task: each task's distillation loss, ensemble combination, export score and
agreement on hand-checked cases; prune's selection on a task metric; and distill -> prune -> export variants on a
multi-label and a regression tiny BERT through the real stages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from tunepipe.checkpoints import load_model
from tunepipe.io import read_jsonl, write_json, write_jsonl
from tunepipe.modalities import get_modality
from tunepipe.models.ensemble import Ensemble
from tunepipe.optimize.distillation import distillation_loss
from tunepipe.optimize.levels import PruneResult, PruneSettings, Scoring, levels_record
from tunepipe.optimize.pruning import DENSE, PruningLevel, select_candidate
from tunepipe.stages import distill as distill_stage
from tunepipe.stages import prune as prune_stage
from tunepipe.stages.harness import main
from tunepipe.tasks import get_task

SINGLE, MULTI, REGRESSION = get_task("single_label"), get_task("multi_label"), get_task("regression")
STATS = {"mean": 10.0, "std": 2.0}


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def bce(p: float, q: float) -> float:
    """Binary cross-entropy of probability p against target q."""
    return -(q * math.log(p) + (1 - q) * math.log(1 - p))


# ------------------------------------------------------------------------------------ distillation losses


def test_single_label_keeps_todays_loss():
    student, teacher, target = torch.tensor([[1.0, 0.0], [0.3, 0.2]]), torch.tensor([[0.0, 2.0], [1.0, -1.0]]), torch.tensor([0, 1])
    got = SINGLE.distillation_loss(student, teacher, target, temperature=2.0, alpha=0.25, stats={})
    soft = nn.functional.kl_div(torch.log_softmax(student / 2, -1), torch.log_softmax(teacher / 2, -1), reduction="batchmean", log_target=True) * 4
    assert torch.equal(got, 0.25 * soft + 0.75 * nn.functional.cross_entropy(student, target))
    assert torch.equal(distillation_loss(student, teacher, target, temperature=2.0, alpha=0.25), got)  # the default task


def test_multi_label_loss_is_bce_on_the_softened_teacher_plus_bce_on_the_targets():
    student, teacher, target = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    t, alpha = 2.0, 0.3
    soft = (bce(sigmoid(1.0 / t), sigmoid(3.0 / t)) + bce(sigmoid(-2.0 / t), sigmoid(0.0))) / 2 * t**2
    hard = (bce(sigmoid(1.0), 1.0) + bce(sigmoid(-2.0), 0.0)) / 2
    got = MULTI.distillation_loss(student, teacher, target, temperature=t, alpha=alpha, stats={})
    assert float(got) == pytest.approx(alpha * soft + (1 - alpha) * hard, rel=1e-6)
    # the soft term pulls each label's probability towards the teacher's, not towards the 0/1 target
    student = torch.tensor([[0.0, 0.0]], requires_grad=True)
    MULTI.distillation_loss(student, torch.tensor([[-4.0, 4.0]]), torch.tensor([[1.0, 0.0]]), temperature=1.0, alpha=1.0, stats={}).backward()
    assert student.grad[0, 0] > 0 > student.grad[0, 1]


def test_regression_loss_is_mse_to_the_teacher_and_to_the_standardised_target():
    student, teacher, target = torch.tensor([[1.0], [0.0]]), torch.tensor([[3.0], [0.5]]), torch.tensor([12.0, 8.0])
    # standardised targets: (12 - 10) / 2 = 1 and (8 - 10) / 2 = -1
    soft, hard = ((1 - 3) ** 2 + (0 - 0.5) ** 2) / 2, ((1 - 1) ** 2 + (0 + 1) ** 2) / 2
    got = REGRESSION.distillation_loss(student, teacher, target, temperature=5.0, alpha=0.4, stats=STATS)
    assert float(got) == pytest.approx(0.4 * soft + 0.6 * hard, rel=1e-6)  # no temperature for a number
    assert float(distillation_loss(student, teacher, target, temperature=1.0, alpha=0.0, task=REGRESSION, stats=STATS)) == pytest.approx(hard)


# ------------------------------------------------------------------------------------ ensembles


class Fixed(nn.Module):
    """A member that predicts the same logits for every row."""

    input_names = ("x",)

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)
        self.head = nn.Linear(1, len(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


def test_a_multi_label_ensemble_predicts_each_labels_mean_probability():
    logits = [[0.0, 2.0, -60.0], [4.0, -1.0, -80.0]]
    out = Ensemble([Fixed(row) for row in logits], task="multi_label")(torch.zeros(3, 1))
    by_hand = [(sigmoid(a) + sigmoid(b)) / 2 for a, b in zip(*logits)]
    torch.testing.assert_close(MULTI.outputs(out, {}), torch.tensor(by_hand).expand(3, -1))
    assert torch.isfinite(out).all()  # very sure members stay finite in log space
    # the mean probability, not the mean logit: sigmoid(2.0) is not (sigmoid(0) + sigmoid(4)) / 2
    assert float(MULTI.outputs(out, {})[0, 0]) != pytest.approx(sigmoid(2.0), abs=1e-3)


class Scaled(Fixed):
    """A member whose logits are its input times fixed numbers (so an exported graph cannot fold them away)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.logits


def test_a_multi_label_ensemble_exported_to_onnx_stays_finite_for_very_sure_members(tmp_path):
    from tunepipe.optimize.onnx_export import export_onnx, ort_session

    ensemble = Ensemble([Scaled([-120.0, 0.3, 95.0, -30.0]), Scaled([-110.0, 2.0, 120.0, -20.0])], task="multi_label").eval()
    x = torch.ones(2, 1)
    export_onnx(ensemble, tmp_path / "e.onnx", {"x": x}, opset=17, dynamo=False)
    onnx_out = ort_session(tmp_path / "e.onnx", threads=1).run(["logits"], {"x": x.numpy()})[0]
    assert np.isfinite(onnx_out).all()
    np.testing.assert_allclose(onnx_out, ensemble(x).detach().numpy(), rtol=1e-5)


def test_a_regression_ensemble_predicts_the_mean_value():
    out = Ensemble([Fixed([0.5]), Fixed([-1.5]), Fixed([2.5])], task="regression")(torch.zeros(2, 1))
    torch.testing.assert_close(REGRESSION.outputs(out, STATS), torch.full((2,), 10.0 + 0.5 * 2.0))


def test_a_single_label_combination_is_the_log_of_the_mean_probabilities():
    logits = torch.tensor([[[0.0, 10.0]], [[2.0, 0.0]]])
    torch.testing.assert_close(SINGLE.combine_members(logits).softmax(-1), logits.softmax(-1).mean(dim=0))


def test_an_ensemble_file_keeps_its_task_through_load_model(tmp_path, tiny_model_cfg):
    from tunepipe.checkpoints import save_model

    build = get_modality("text").build_classifier
    members = [build(tiny_model_cfg, num_labels=1).eval(), build({**tiny_model_cfg, "dropout": 0.2}, num_labels=1).eval()]
    save_model(tmp_path / "m.pt", Ensemble(members, task="regression"), model_cfg=tiny_model_cfg, label_names=["rating"], modality="text",
               pruning_level={"name": "ensemble-2", "method": "ensemble", "sparsity": 0.0}, members=[tiny_model_cfg, tiny_model_cfg],
               task="regression", target_stats=STATS)
    loaded, payload = load_model(tmp_path / "m.pt")
    assert payload["task"] == "regression" and loaded.task is REGRESSION


# ------------------------------------------------------------------------------------ export scores and agreement


def test_export_scores_and_agreement_follow_the_task():
    single = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.5]], dtype=np.float32)
    assert SINGLE.variant_score(single, np.array([0, 1, 1]), [], {}, {}) == 2 / 3  # unrounded, as export always wrote it
    other = np.array([[2.0, 1.0], [3.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert SINGLE.prediction_agreement(single, other, [], {}, {}) == pytest.approx(1 / 3)

    multi = np.array([[2.0, -2.0], [0.2, 0.2], [-3.0, 3.0]], dtype=np.float32)  # probabilities ~ .88/.12, .55/.55, .05/.95
    truth = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    names = ["a", "b"]
    # at 0.5, row 2 claims two labels it does not have: 2 right, 2 wrong, none missed -> micro F1 4/6
    assert MULTI.variant_score(multi, truth, names, {}, None) == pytest.approx(2 / 3, abs=1e-6)
    assert MULTI.variant_score(multi, truth, names, {}, {"thresholds": [0.6, 0.6]}) == 1.0
    moved = multi + np.array([0.0, -0.4], dtype=np.float32)  # only row 2's label b crosses 0.5
    assert MULTI.prediction_agreement(multi, moved, names, {}, None) == pytest.approx(2 / 3)
    assert MULTI.prediction_agreement(multi, moved, names, {}, {"thresholds": [0.6, 0.6]}) == 1.0

    values = np.array([[0.0], [1.0], [-1.0], [0.5]], dtype=np.float32)
    targets = 10.0 + 2.0 * values[:, 0].astype(np.float64)
    assert REGRESSION.variant_score(values, targets, ["y"], STATS, {}) == 1.0  # r2 of exact predictions
    shifted = values + np.array([[0.01], [0.2], [0.0], [-0.04]], dtype=np.float32)
    assert REGRESSION.prediction_agreement(values, shifted, ["y"], STATS, {}) == 0.75  # within 0.05 std but the 0.2 one


# ------------------------------------------------------------------------------------ prune's selection


def test_prune_selects_on_the_tasks_first_level_metric():
    rows = [
        {"name": "dense", "method": "dense", "val_r2": 0.60, "val_mae": 0.50, "nonzero_params": 1000, "latency_ms": 10.0},
        {"name": "unstructured-0.50", "method": "unstructured", "val_r2": 0.58, "val_mae": 0.40, "nonzero_params": 500, "latency_ms": 10.0},
        {"name": "structured-0.50", "method": "structured", "val_r2": 0.50, "val_mae": 0.30, "nonzero_params": 400, "latency_ms": 6.0},
    ]
    choice = select_candidate(rows, 0.05, "smallest", "val_r2")
    assert choice.level["name"] == "unstructured-0.50" and choice.reference["name"] == "dense"
    assert choice.reason == ("unstructured-0.50: val r2 0.5800, within prune.max_accuracy_drop (0.05) of the best uncompressed candidate "
                             "(dense, val r2 0.6000); the smallest such candidate")
    assert select_candidate(rows, 0.1, "fastest", "val_r2").level["name"] == "structured-0.50"
    with pytest.raises(KeyError):
        select_candidate(rows, 0.05)  # no val_accuracy column: the metric must be named


def test_scoring_keeps_single_label_numbers_and_names_the_columns_per_task():
    from tunepipe.evaluation import classification_metrics

    logits, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 0, 1])
    expected = classification_metrics(logits.softmax(dim=-1), targets)
    assert Scoring(SINGLE, ["neg", "pos"])(logits, targets) == {"accuracy": expected["accuracy"], "f1_macro": expected["f1_macro"]}
    assert Scoring(SINGLE).selection_metric == "val_accuracy" and Scoring(MULTI).selection_metric == "val_f1_micro"
    regression = Scoring(REGRESSION, ["y"], STATS)(torch.tensor([[0.0], [1.0], [-1.0]]), torch.tensor([10.0, 12.0, 8.0]))
    assert regression == {"r2": 1.0, "mae": 0.0}
    settings = PruneSettings("unstructured", (0.5,), 0.01, "smallest", 0, 1e-4, 4, 2, 8)
    result = PruneResult(levels=[], selected=DENSE, model=nn.Linear(1, 1))
    multi = levels_record(result, settings, 1, Scoring(MULTI, ["a", "b"]))
    assert multi["selection_metric"] == "val_f1_micro"
    assert multi["decision"] == {"thresholds": [0.5, 0.5], "thresholds_from": "fixed 0.5 (no results/evaluate/decision.json given)"}
    tuned = levels_record(result, settings, 1, Scoring(MULTI, ["a", "b"], {}, {"thresholds": [0.3, 0.7], "thresholds_from": "tuned"}))
    assert tuned["decision"] == {"thresholds": [0.3, 0.7], "thresholds_from": "tuned"}
    assert "decision" not in levels_record(result, settings, 1) and levels_record(result, settings, 1)["selection_metric"] == "val_accuracy"


# ------------------------------------------------------------------------------------ the stages, per task

GENRES = ["comedy", "drama"]


def genres(i: int, positive: bool) -> list[str]:
    """pos: comedy, some also drama; neg: drama or nothing."""
    return (["comedy"] + (["drama"] if i % 3 == 0 else [])) if positive else (["drama"] if i % 2 else [])


def rating(i: int, positive: bool) -> float:
    return (7.5 if positive else 4.0) + (i % 5) / 10


def task_checkpoint(path, tiny_model_cfg, task: str, names: list[str], stats: dict) -> nn.Module:
    """What the train stage writes for `task`, as far as load_checkpoint reads it."""
    torch.manual_seed(0)
    model = get_modality("text").build_classifier(tiny_model_cfg, num_labels=get_task(task).output_size(names))
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model_cfg": tiny_model_cfg, "label_names": names, "modality": "text", "task": task, "target_stats": stats},
                "state_dict": state}, path)
    return model


@pytest.mark.parametrize(("task", "names", "target", "metrics", "decided"), [
    ("multi_label", GENRES, genres, ("f1_micro", "f1_macro"), {"thresholds": [0.4, 0.6], "thresholds_from": "tuned on validation"}),
    ("regression", ["rating"], rating, ("r2", "mae"), {}),
])
def test_distill_prune_and_export_variants_for_the_task(tmp_path, tiny_model_cfg, labelled_rows, task, names, target, metrics, decided):
    rows = [{**row, "label": target(i, row["label"] == "pos")} for i, row in enumerate(labelled_rows)]
    stats = get_task(task).target_stats(get_task(task).encode(rows[:16], names, "train"))
    ckpt = tmp_path / "best.ckpt"
    teacher = task_checkpoint(ckpt, tiny_model_cfg, task, names, stats)
    splits = {}
    for name, part in zip(("train", "val", "test"), (rows[:16], rows[16:32], rows[32:])):
        splits[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(splits[name], part)
    distill_params = {"enabled": True, "layer_fraction": 0.5, "steps": 4, "lr": 1e-3, "batch_size": 4, "temperature": 2.0, "alpha": 0.5}
    student_file = tmp_path / "distill" / "student.pt"
    assert main(distill_stage.STAGE, ["--params", json.dumps({"seed": 0, "distill": distill_params}), "--in", f"best={ckpt}", "--in", f"train={splits['train']}",
                                      "--out", f"student={student_file}", "--out", f"summary={tmp_path / 'distill' / 'summary.json'}"]) == 0
    student, payload = load_model(student_file)
    assert (payload["task"], payload["target_stats"]) == (task, stats) and student.head.out_features == len(names)
    assert math.isfinite(json.loads((tmp_path / "distill" / "summary.json").read_text())["final_loss"])
    assert not torch.equal(student.head.weight, teacher.head.weight)  # it was trained

    decision = tmp_path / "decision.json"
    write_json(decision, {"task": task, "labels": names, **decided})
    out = tmp_path / "prune"
    prune_params = {"seed": 0, "distill": distill_params, "prune": {
        "method": "both", "sparsities": [0.5], "batch_size": 8, "max_accuracy_drop": 1.0, "select": "smallest", "finetune_steps": 2,
        "finetune_lr": 1e-4, "finetune_batch_size": 4, "latency_runs": 2}}
    assert main(prune_stage.STAGE, ["--params", json.dumps(prune_params), "--in", f"best={ckpt}", *[f"--in={k}={v}" for k, v in splits.items()],
                                    "--in", f"student={student_file}", "--in", f"decision={decision}",
                                    "--out", f"model={out / 'model.pt'}", "--out", f"levels={out / 'levels.json'}"]) == 0
    levels = json.loads((out / "levels.json").read_text())
    columns = [f"{split}_{metric}" for split in ("val", "test") for metric in metrics]
    assert [row["name"] for row in levels["levels"]] == ["dense", "unstructured-0.50", "structured-0.50", "distilled-0.50"]
    for row in levels["levels"]:
        assert all(isinstance(row[column], float) for column in columns) and "val_accuracy" not in row
    assert levels["selection_metric"] == f"val_{metrics[0]}"
    assert levels.get("decision", {}) == decided  # the thresholds the scores applied, where the task has some
    model, payload = load_model(out / "model.pt")
    assert payload["task"] == task and payload["target_stats"] == stats and payload["pruning_level"]["name"] == levels["selected"]

    # export's variants, scored with the task's metric (the export stage passes these keyword arguments)
    from tunepipe.models.backbone import load_tokenizer
    from tunepipe.optimize.quantization import CHOICES
    from tunepipe.optimize.variants import ExportSettings, export_variants

    tokenizer = load_tokenizer(tiny_model_cfg["pretrained"])
    data = {key: get_modality("text").encode(read_jsonl(splits[key]), None, tiny_model_cfg, tokenizer) for key in ("val", "test")}
    truth = {key: np.asarray(get_task(task).encode(read_jsonl(splits[key]), names, key)) for key in ("val", "test")}
    settings = ExportSettings(opset=17, dynamo=False, latency_batch_sizes=(1,), latency_runs=1, max_abs_logit_diff=1e-3, quantize="dynamic",
                              calibration_rows=8, fuse=False, int8_max_size_ratio=0.5, parity_rows=None)
    variants = export_variants(teacher.eval(), model, PruningLevel.from_dict(payload["pruning_level"]),
                               data["test"], truth["test"], onnx_path=tmp_path / "model.onnx", int8_path=tmp_path / "model.int8.onnx",
                               settings=settings, int8_choices=(CHOICES["dynamic"],), val=data["val"], val_targets=truth["val"],
                               task=get_task(task), names=names, decision=json.loads(decision.read_text()), target_stats=stats)
    metric = metrics[0]
    for row in variants.rows:
        assert isinstance(row[f"test_{metric}"], float) and "test_accuracy" not in row and f"{metric}_delta" in row
    assert variants.pruned["prediction_agreement"] == 1.0  # the ONNX graph answers as PyTorch does
    int8 = variants.int8
    assert 0.0 <= int8["prediction_agreement_vs_fp32"] <= 1.0 and f"val_{metric}_delta" in int8["vs_fp32"]
    assert variants.metric == metric


def test_the_ensemble_stage_combines_and_scores_multi_label_members(tmp_path, tiny_model_cfg, labelled_rows):
    from tunepipe.models.inference import predict_logits
    from tunepipe.stages import ensemble as ensemble_stage

    rows = [{**row, "label": genres(i, row["label"] == "pos")} for i, row in enumerate(labelled_rows)]
    sweep, models = tmp_path / "sweep", []
    for seed, name in enumerate("ab"):
        (sweep / name).mkdir(parents=True)
        torch.manual_seed(seed)
        models.append(task_checkpoint(sweep / name / "best.ckpt", {**tiny_model_cfg, "dropout": 0.1 + seed / 10}, "multi_label", GENRES, {}))
    write_json(tmp_path / "selection.json", {"metric": "val_f1_micro", "mode": "max", "winner": "a",
                                             "variants": [{"name": "a", "rank": 1, "mean": 0.6}, {"name": "b", "rank": 2, "mean": 0.5}]})
    splits = {name: tmp_path / f"{name}.jsonl" for name in ("val", "test")}
    write_jsonl(splits["val"], rows[:24])
    write_jsonl(splits["test"], rows[24:])
    out = tmp_path / "ensemble"
    assert main(ensemble_stage.STAGE, ["--params", json.dumps({"ensemble": {"top_k": 2, "batch_size": 8}}), "--in", f"selection={tmp_path / 'selection.json'}",
                                       *[f"--in=trials={sweep / name / 'best.ckpt'}" for name in "ab"], *[f"--in={k}={v}" for k, v in splits.items()],
                                       "--out", f"model={out / 'model.pt'}", "--out", f"summary={out / 'summary.json'}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["ensemble"]) == {"val_f1_micro", "val_f1_macro", "test_f1_micro", "test_f1_macro"}
    assert summary["verdict"].startswith("ensemble of 2: val f1 micro ")
    # the ensemble's score is that of the members' mean label probabilities at 0.5
    data = get_modality("text").encode(rows[24:], None, tiny_model_cfg, get_modality("text").load_processor(tiny_model_cfg))
    mean_probs = torch.stack([predict_logits(model, data, 8).sigmoid() for model in models]).mean(dim=0)
    targets = torch.tensor(MULTI.encode(rows[24:], GENRES, "test"))
    assert summary["ensemble"]["test_f1_micro"] == MULTI.scores(mean_probs, targets, GENRES)["f1_micro"]
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["task"] == "multi_label" and len(payload["ensemble"]) == 2
