"""The robustness rule in the real pipeline: the tiny text and image runs' results/robustness and report section."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from tunepipe.robustness.image_perturbations import FUNCTIONS as IMAGE_PERTURBATIONS
from tunepipe.robustness.text_perturbations import FUNCTIONS as TEXT_PERTURBATIONS

pytestmark = pytest.mark.e2e


def read(project: Path):
    folder = project / "results" / "robustness"
    metrics = json.loads((folder / "metrics.json").read_text())
    with open(folder / "perturbations.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    with open(folder / "attacks.csv", newline="") as handle:
        attacks = {row["attack"]: row for row in csv.DictReader(handle)}
    return metrics, table, attacks, json.loads((folder / "examples.json").read_text())


def check_common(metrics, table, attacks, examples, perturbations, severities, rows, attack_rows):
    assert [(r["perturbation"], int(r["severity"])) for r in table] == [(name, s) for name in perturbations for s in severities]
    clean = metrics["robustness_clean_accuracy"]
    assert metrics["robustness_rows"] == rows and 0 < clean <= 1
    for r in table:
        accuracy, drop, flips = float(r["accuracy"]), float(r["drop"]), float(r["flip_rate"])
        assert 0 <= accuracy <= 1 and 0 <= flips <= 1 and int(r["rows"]) == rows
        assert drop == pytest.approx(clean - accuracy, abs=1e-5)
        assert flips >= abs(drop) - 1e-6  # accuracy can only change on rows whose prediction flipped
    assert metrics["robustness_worst_accuracy"] == min(float(r["accuracy"]) for r in table)
    assert set(attacks) >= {"fgsm", "pgd"} and metrics["attack_rows"] == attack_rows
    for name, row in attacks.items():
        assert float(row["accuracy"]) <= float(row["clean_accuracy"]) + 1e-9, name  # an attack never helps
        assert metrics[f"attack_{name}_accuracy"] == float(row["accuracy"])
    for item in examples["perturbations"] + examples["attacks"]:
        assert item["perturbed_prediction"] != item["clean_prediction"]
    assert examples["perturbations"]  # a one-epoch tiny model flips somewhere


def test_the_text_run_scores_every_perturbation_and_attack(tiny_run):
    metrics, table, attacks, examples = read(tiny_run)
    check_common(metrics, table, attacks, examples, TEXT_PERTURBATIONS, [1, 3], rows=30, attack_rows=10)
    assert set(attacks) == {"fgsm", "pgd", "char_greedy"}
    assert int(attacks["char_greedy"]["queries"]) <= 10 * 3 * 4  # rows x char_max_edits x char_candidates (tiny.yaml)
    # MiniLM's tokenizer is uncased: upper-casing never changes a prediction
    assert all(float(r["flip_rate"]) == 0.0 for r in table if r["perturbation"] == "case_upper")
    for item in examples["perturbations"]:
        assert item["original"] != item["perturbed"] and isinstance(item["perturbed"], str)
    html = (tiny_run / "results" / "report.html").read_text()
    section = re.search(r'<section id="robustness">(.*?)</section>', html, re.S).group(1)
    assert "<svg" in section and "typo_keyboard" in section and "char_greedy" in section
    assert "<script" not in section
    assert (tiny_run / "results" / "benchmarks" / "robustness.tsv").exists()


def test_the_image_run_perturbs_pixels_and_shows_thumbnails(tiny_image_run):
    metrics, table, attacks, examples = read(tiny_image_run)
    check_common(metrics, table, attacks, examples, IMAGE_PERTURBATIONS, [1, 3], rows=30, attack_rows=10)
    assert set(attacks) == {"fgsm", "pgd"} and float(attacks["pgd"]["epsilon"]) == pytest.approx(0.0157)  # the preset's 4/255
    for item in examples["perturbations"] + examples["attacks"]:
        for key in ("original", "perturbed"):
            assert (tiny_image_run / item[key]).is_file() and item[key].endswith(".png")
    html = (tiny_image_run / "results" / "report.html").read_text()
    section = re.search(r'<section id="robustness">(.*?)</section>', html, re.S).group(1)
    assert '<img class="thumb" src="data:image/png;base64,' in section and "gaussian_noise" in section
