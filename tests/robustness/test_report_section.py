"""The report's robustness section from hand-made results: curves, tables, escaped examples, and a skipped run."""

from __future__ import annotations

import json
import re

from tests.report.test_report import INPUTS, PARAMS, PROVENANCE, write_inputs
from tunepipe.report import build_report, load_inputs
from tunepipe.report.sections.robustness import robustness, severity_curves
from tunepipe.tasks import get_task

SINGLE_VIEW = get_task("single_label").report_view()

TABLE = ("perturbation,severity,amount,unit,rows,accuracy,drop,flip_rate\n"
         "typo_drop,1,0.02,share of letters deleted,4,0.75,0.0,0.0\n"
         "typo_drop,3,0.1,share of letters deleted,4,0.25,0.5,0.5\n"
         "word_drop,1,0.1,share of words deleted,4,0.5,0.25,0.25\n")
ATTACKS = ("attack,space,epsilon,steps,max_edits,rows,clean_accuracy,accuracy,success_rate,queries\n"
           "pgd,token embeddings,0.05,5,,4,0.75,0.25,0.666667,\nchar_greedy,characters,,,3,4,0.75,0.5,0.333333,40\n")
EXAMPLES = {"perturbations": [
    {"perturbation": "typo_drop", "severity": 3, "id": "1", "label": "fresh", "clean_prediction": "fresh", "perturbed_prediction": "rotten",
     "original": "<script>alert(1)</script> great", "perturbed": "<script>alert(1)</script> grat"}],
    "attacks": [{"attack": "pgd", "id": "2", "label": "rotten", "clean_prediction": "rotten", "perturbed_prediction": "fresh",
                 "original": "dull", "perturbed": None}]}
METRICS = {"robustness_rows": 4, "robustness_clean_accuracy": 0.75, "robustness_worst_accuracy": 0.25, "robustness_mean_flip_rate": 0.25,
           "attack_rows": 4}


def render(tmp_path, examples=EXAMPLES, metrics=METRICS):
    paths = write_inputs(tmp_path, {**INPUTS, "robustness_metrics": metrics, "robustness_examples": examples})
    for key, text in (("robustness_perturbations", TABLE), ("robustness_attacks", ATTACKS)):
        paths[key] = tmp_path / f"{key}.csv"
        paths[key].write_text(text)
    html = build_report(PARAMS, load_inputs(paths), provenance=PROVENANCE)
    return re.search(r'<section id="robustness">(.*?)</section>', html, re.S).group(1)


def test_the_section_draws_curves_tables_and_escaped_flips(tmp_path):
    section = render(tmp_path)
    assert "<svg" in section and "typo_drop</strong> at severity 3, 25.0%" in section
    assert "-50.0 pts" in section and "66.7%" in section and "≤ 3 edits" in section
    assert "<script>" not in section and "&lt;script&gt;alert(1)&lt;/script&gt; grat" in section
    assert "no text to show" in section  # an embedding-space attack has no perturbed text


def test_a_skipped_run_says_so_and_missing_inputs_say_not_available(tmp_path):
    inputs = load_inputs({**write_inputs(tmp_path, INPUTS), "skipped": [write_inputs(tmp_path, {"marker": {
        "step": "robustness", "skipped": True, "reason": "robustness.enabled is false"}})["marker"]]})
    html = build_report(PARAMS, inputs, provenance=PROVENANCE)
    section = re.search(r'<section id="robustness">(.*?)</section>', html, re.S).group(1)
    assert "Not run: robustness.enabled is false." in section and "not available" not in section
    assert re.search(r'id="skipped-steps">Steps left out of this run: <code>robustness</code> \(robustness.enabled is false\)\.', html)
    view = robustness({}, 5, SINGLE_VIEW)
    assert not view["available"] and view["figure"] is None
    html = build_report(PARAMS, load_inputs(write_inputs(tmp_path, INPUTS)), provenance=PROVENANCE)
    assert "Robustness: <span class=\"na\">not available</span>" in html


def test_examples_are_taken_in_turn_from_each_perturbation():
    items = [{"perturbation": name, "original": f"{name}{i}", "perturbed": "x"} for name in ("a", "b") for i in range(3)]
    view = robustness({"robustness_metrics": METRICS, "robustness_examples": {"perturbations": items}}, 3, SINGLE_VIEW)
    assert [e["original"] for e in view["perturbation_examples"]] == ["a0", "b0", "a1"]
    assert severity_curves([{"perturbation": "a", "severity": 1, "accuracy": 0.5}], 0.9).startswith("<svg")
    assert json.dumps(view)  # a plain view model
