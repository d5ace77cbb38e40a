"""The report's slices and explanations (inside Evaluation) and the verdict sentences, from hand-made inputs."""

from __future__ import annotations

from PIL import Image

from tunepipe.report import build_report

PROVENANCE = {"git": {"commit": None, "dirty": None}, "packages": {}, "python": "3.11", "python_implementation": "CPython", "platform": "Linux",
              "machine": "x86_64", "cpu_count": 2, "generated_at": "2026-01-01T00:00:00+00:00"}


def params(modality: str) -> dict:
    return {"data": {"modality": modality}, "report": {"title": "t", "examples": 3}}


SLICES = {
    "overall": {"rows": 40, "accuracy": 0.8, "f1_macro": 0.79}, "min_rows": 10, "level": 0.95, "resamples": 100, "seed": 0,
    "columns": [{"column": "source", "kind": "named", "unsliced_rows": 0, "slices": [
        {"column": "source", "value": "<b>web</b>", "rows": 25, "ranked": True, "accuracy": 0.68, "f1_macro": 0.6, "accuracy_gap": 0.12,
         "accuracy_ci_low": 0.5, "accuracy_ci_high": 0.84, "f1_macro_ci_low": 0.4, "f1_macro_ci_high": 0.8},
        {"column": "source", "value": "print", "rows": 15, "ranked": True, "accuracy": 1.0, "f1_macro": 1.0, "accuracy_gap": -0.2,
         "accuracy_ci_low": 1.0, "accuracy_ci_high": 1.0, "f1_macro_ci_low": 1.0, "f1_macro_ci_high": 1.0}]}],
}
SLICES["worst"] = SLICES["columns"][0]["slices"][0]
METRICS = {"accuracy": 0.8, "worst_slice_accuracy": 0.68, "worst_slice_gap": 0.12, "test_rows": 40}
COMPARISON = {"fine_tuned_vs_baseline": {"paired": True, "verdict": "better",
                                         "sentence": "The fine-tuned model is better than the baseline (McNemar's test, exact binomial: p = 0.01 < 0.05; 9 vs 1 discordant rows)."}}


def test_slices_and_the_verdict_are_shown_and_escaped():
    html = build_report(params("text"), {"metrics": METRICS, "slices": SLICES, "comparison": COMPARISON}, provenance=PROVENANCE)
    assert "<b>web</b>" not in html and "&lt;b&gt;web&lt;/b&gt;" in html
    assert "68.0%" in html and "12.0 pts below the whole" in html and "-12.0 pts" in html and "+20.0 pts" in html
    assert "The fine-tuned model is better than the baseline (McNemar&#39;s test, exact binomial: p = 0.01 &lt; 0.05" in html
    # without the inputs, the parts say so instead of breaking the page
    empty = build_report(params("text"), {}, provenance=PROVENANCE)
    assert "Metrics per slice: <span class=\"na\">not available</span>" in empty and "Explanations: <span class=\"na\">not available</span>" in empty


def test_text_explanations_shade_escaped_tokens():
    item = {"kind": "error", "rank": 1, "id": "7", "label": "neg", "predicted": "pos", "confidence": 0.9, "input": "<script>x</script> fine",
            "tokens": [{"text": "<script>x</script>", "score": -0.2, "space_before": False}, {"text": "fine", "score": 0.4, "space_before": True}],
            "output": 0.9, "baseline_output": 0.5, "delta": 0.001, "baseline": "padding tokens"}
    record = {"method": "Integrated Gradients", "steps": 16, "labels": ["neg", "pos"], "items": [item], "max_delta": 0.001}
    html = build_report(params("text"), {"explanations": record}, provenance=PROVENANCE)
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert 'style="background:rgba(37,99,235,0.4)" title="-0.2000"' in html and 'style="background:rgba(220,38,38,0.8)" title="+0.4000"' in html
    assert "No correct predictions to explain." in html


def test_image_explanations_inline_the_heat_maps(tmp_path):
    (tmp_path / "heatmaps").mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "heatmaps" / "error-1.png")
    Image.new("RGB", (8, 8), (0, 0, 0)).save(tmp_path / "img.png")
    item = {"kind": "error", "rank": 1, "id": "1", "label": "bag", "predicted": "shoe", "confidence": 0.7, "input": str(tmp_path / "img.png"),
            "heatmap": "heatmaps/error-1.png", "output": 0.7, "baseline_output": 0.1, "delta": 0.002, "baseline": "a black image"}
    record = {"method": "Integrated Gradients", "steps": 16, "labels": ["bag", "shoe"], "items": [item], "max_delta": 0.002}
    html = build_report(params("image"), {"explanations": record, "explanations_dir": tmp_path}, provenance=PROVENANCE)
    assert html.count('<img class="heat" src="data:image/png;base64,') == 1 and '<img class="thumb"' in html
    assert "from a black image to the input" in html
