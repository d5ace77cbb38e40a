"""Distillation: the loss on a hand-checked case, the student made from the teacher's layers, and the student as a
candidate that prune scores and export ships (through the real stages)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.optimize.test_stages import NAMES, checkpoint, run_export
from tunepipe.checkpoints import load_model, save_model
from tunepipe.io import write_jsonl
from tunepipe.modalities import get_modality
from tunepipe.models.inference import model_inputs
from tunepipe.models.structure import structure
from tunepipe.optimize.distillation import distillation_loss, kept_layers, make_student
from tunepipe.stages import distill as distill_stage
from tunepipe.stages import prune as prune_stage
from tunepipe.stages.harness import main

TOKENS = {"input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 2204, 102, 0, 0, 0]]),
          "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])}


def test_the_loss_matches_a_case_computed_by_hand():
    student, teacher, target = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([0])
    temperature, alpha = 2.0, 0.25
    # by hand: probabilities at T=2 are softmax([0.5, 0]) and softmax([0, 1])
    s = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    t = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl = sum(ti * math.log(ti / si) for ti, si in zip(t, s))
    cross_entropy = -math.log(math.exp(1.0) / (math.exp(1.0) + 1))  # the true class 0 at T=1
    expected = alpha * temperature**2 * kl + (1 - alpha) * cross_entropy
    got = distillation_loss(student, teacher, target, temperature=temperature, alpha=alpha)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # alpha 0 is plain cross-entropy; a student equal to its teacher has no soft loss
    assert float(distillation_loss(student, teacher, target, temperature=3.0, alpha=0.0)) == pytest.approx(cross_entropy, rel=1e-6)
    assert float(distillation_loss(teacher, teacher, target, temperature=3.0, alpha=1.0)) == pytest.approx(0.0, abs=1e-7)


def test_the_soft_loss_pulls_the_student_towards_the_teacher_not_the_labels():
    student = torch.zeros(1, 3, requires_grad=True)
    distillation_loss(student, torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([0]), temperature=1.0, alpha=1.0).backward()
    assert student.grad[0, 2] < 0 < student.grad[0, 0]  # raise the teacher's class, lower the label's


def test_the_kept_layers_are_evenly_spaced_from_the_first():
    assert kept_layers(6, 0.5) == [0, 2, 4]
    assert kept_layers(12, 0.5) == [0, 2, 4, 6, 8, 10]
    assert kept_layers(6, 0.34) == [0, 3]
    assert kept_layers(2, 0.1) == [0]  # at least one


def test_a_student_keeps_the_teachers_weights_of_its_layers_and_reloads_exactly(tmp_path, tiny_model_cfg):
    teacher = get_modality("text").build_classifier(tiny_model_cfg, num_labels=2).eval()
    student, kept = make_student(teacher, 0.5)
    assert kept == [0] and len(student.encoder.encoder.layer) == 1 and len(teacher.encoder.encoder.layer) == 2
    assert torch.equal(student.encoder.encoder.layer[0].attention.self.query.weight, teacher.encoder.encoder.layer[0].attention.self.query.weight)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    path = tmp_path / "student.pt"
    save_model(path, student, model_cfg=tiny_model_cfg, label_names=NAMES, modality="text",
               pruning_level={"name": "distilled-0.50", "method": "distilled", "sparsity": 0.5}, structure=structure(student))
    loaded, payload = load_model(path)
    assert len(loaded.encoder.encoder.layer) == 1 and payload["pruning_level"]["method"] == "distilled"
    with torch.inference_mode():
        assert torch.equal(loaded(**model_inputs(loaded, TOKENS)), student.eval()(**model_inputs(student, TOKENS)))


def test_distill_trains_a_student_that_prune_scores_and_export_ships(tmp_path, tiny_model_cfg, labelled_rows):
    torch.manual_seed(0)
    teacher = get_modality("text").build_classifier(tiny_model_cfg, num_labels=2)
    ckpt = tmp_path / "best.ckpt"
    checkpoint(ckpt, teacher, tiny_model_cfg, "text")
    splits = {}
    for name, part in zip(("train", "val", "test"), (labelled_rows[:16], labelled_rows[16:32], labelled_rows[32:])):
        splits[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(splits[name], part)
    distill_params = {"enabled": True, "layer_fraction": 0.5, "steps": 6, "lr": 1e-3, "batch_size": 4, "temperature": 2.0, "alpha": 0.5}
    student_file, summary_file = tmp_path / "distill" / "student.pt", tmp_path / "distill" / "summary.json"
    assert main(distill_stage.STAGE, ["--params", json.dumps({"seed": 0, "distill": distill_params}), "--in", f"best={ckpt}",
                                      "--in", f"train={splits['train']}", "--out", f"student={student_file}", "--out", f"summary={summary_file}"]) == 0
    summary = json.loads(summary_file.read_text())
    assert summary["steps"] == 6 and summary["student_layers"] == 1 and summary["teacher_layers"] == 2 and summary["level"]["method"] == "distilled"
    student, _ = load_model(student_file)
    assert not torch.equal(student.head.weight, teacher.head.weight)  # it was trained

    out = tmp_path / "out"
    prune_params = {"seed": 0, "distill": distill_params, "prune": {
        "method": "unstructured", "sparsities": [0.2], "batch_size": 8, "max_accuracy_drop": 1.0, "select": "smallest", "finetune_steps": 2,
        "finetune_lr": 1e-4, "finetune_batch_size": 4, "latency_runs": 2}}
    assert main(prune_stage.STAGE, ["--params", json.dumps(prune_params), "--in", f"best={ckpt}", *[f"--in={k}={v}" for k, v in splits.items()],
                                    "--in", f"student={student_file}", "--out", f"model={out / 'model.pt'}", "--out", f"levels={out / 'levels.json'}"]) == 0
    levels = json.loads((out / "levels.json").read_text())
    rows = {row["name"]: row for row in levels["levels"]}
    assert list(rows) == ["dense", "unstructured-0.20", "distilled-0.50"]
    assert {"val_accuracy", "test_accuracy", "latency_ms", "nonzero_params"} <= set(rows["distilled-0.50"])
    # the student has a layer fewer than any pruned copy: the smallest within the (here generous) drop
    assert levels["selected"] == "distilled-0.50" and levels["selected_method"] == "distilled"
    assert run_export(out, ckpt, {name: splits[name] for name in ("val", "test")}) == 0
    variants = {row["variant"]: row for row in json.loads((out / "variants.json").read_text())["variants"]}
    assert variants["pruned-fp32"]["pruning_level"] == "distilled-0.50"
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and parity["pruning_level"] == "distilled-0.50"
