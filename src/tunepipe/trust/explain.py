"""Why did the model predict that? Integrated Gradients (Captum) for the rows the explain stage picks.

Integrated Gradients attributes the difference f(x) - f(baseline) of one output (what the task predicts, through
`TaskOutputs`: the predicted class's probability, one label's probability, the predicted value) to the input's features, by integrating the gradient along the straight path from a baseline
to the input. Its completeness property, sum of attributions = f(x) - f(baseline), is checked and
recorded per example (`delta`, which shrinks as `steps` grows).

- Texts: the path runs in the word-embedding space (Captum's LayerIntegratedGradients on the encoder's input
  embeddings), from the text with every non-special token replaced by the padding token to the text itself;
  one attribution per token, the embedding dimensions summed.
- Images: the path runs in pixel space, from a black image (zeros) to the image; the heat map is the
  attribution summed over colour channels, drawn over the image as a small PNG.

Which rows get explained is `pick_examples` over the task's `explain_candidates` of evaluate's predictions table:
the most confident errors and the most confident correct predictions (regression: the largest and the smallest
absolute errors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: Captum's internal batch: the `steps` points of one example's path are run in batches of this size.
INTERNAL_BATCH = 32


def pick_examples(candidates: Sequence[tuple[str, float, Mapping[str, Any], int | None]], count: int) -> tuple[list[dict[str, Any]], list[int | None]]:
    """The `count` surest candidates of each kind (`Task.explain_candidates`: kind "error"|"correct", how sure, fields,
    the output to explain), ties broken by row order: ([{kind, rank, **fields}], each one's output index), errors first."""
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i][1], i))
    picked: dict[str, list[tuple[dict[str, Any], int | None]]] = {"error": [], "correct": []}
    for i in order:
        kind, _, fields, target = candidates[i]
        if len(picked[kind]) < count:
            picked[kind].append(({"kind": kind, "rank": len(picked[kind]) + 1, **fields}, target))
    chosen = picked["error"] + picked["correct"]
    return [item for item, _ in chosen], [target for _, target in chosen]


class TaskOutputs(nn.Module):
    """A model whose forward gives what its task predicts (`Task.outputs`: probabilities, per-label probabilities, a
    value), always as (rows, outputs), so Integrated Gradients explains one of them by its index."""

    def __init__(self, model: nn.Module, task: Any, stats: Mapping[str, float]) -> None:
        super().__init__()
        self.model, self.task, self.stats = model, task, dict(stats)
        self.input_names = model.input_names

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        outputs = self.task.outputs(self.model(**inputs).float(), self.stats)
        return outputs if outputs.dim() == 2 else outputs.unsqueeze(-1)


def _probability(model: nn.Module):
    """The explained function: a `TaskOutputs` model's own outputs, else (a bare classifier) its class probabilities."""
    if isinstance(model, TaskOutputs):
        return lambda *inputs: model(**dict(zip(model.input_names, inputs)))

    def forward(*inputs: torch.Tensor) -> torch.Tensor:
        return model(**dict(zip(model.input_names, inputs))).float().softmax(dim=-1)

    return forward


def _check(attributions: torch.Tensor, delta: torch.Tensor, f_x: float, f_base: float) -> dict[str, float]:
    return {"attribution_sum": round(float(attributions.sum()), 6), "output": round(f_x, 6), "baseline_output": round(f_base, 6),
            "delta": round(float(delta.abs().max()), 6)}


def text_attributions(model: nn.Module, text: str, target: int, tokenizer: Any, *, max_length: int, steps: int,
                      device: torch.device | str = "cpu") -> dict[str, Any]:
    """Token attributions for output `target` of one text (the predicted class; with a `TaskOutputs` model, any output).

    Returns {tokens: [{text, start, end, space_before, score}], output, baseline_output, attribution_sum, delta}:
    each token is a span of the original text (so its casing is kept), special tokens ([CLS], [SEP]) left out
    (they are the same in the baseline, so their attribution is zero).
    """
    from captum.attr import LayerIntegratedGradients

    if not getattr(tokenizer, "is_fast", False):
        from tunepipe.errors import TunepipeError

        raise TunepipeError(f"explain needs a fast tokenizer (with offsets) and {type(tokenizer).__name__} is not one; "
                            "set explain.enabled: false, or save the model with its tokenizer.json.")
    model = model.to(device).eval()
    encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt", return_offsets_mapping=True,
                        return_special_tokens_mask=True)
    ids, mask = encoded["input_ids"].to(device), encoded["attention_mask"].to(device)
    special = encoded["special_tokens_mask"][0].bool()
    baseline = ids.clone()
    baseline[0, ~special.to(device)] = tokenizer.pad_token_id or 0
    forward = _probability(model)
    explainer = LayerIntegratedGradients(forward, model.encoder.get_input_embeddings())
    attributions, delta = explainer.attribute(ids, baselines=baseline, additional_forward_args=(mask,), target=target, n_steps=steps,
                                              internal_batch_size=INTERNAL_BATCH, return_convergence_delta=True)
    scores = attributions.sum(dim=-1)[0].detach().cpu()
    with torch.no_grad():
        f_x, f_base = float(forward(ids, mask)[0, target]), float(forward(baseline, mask)[0, target])
    tokens, previous_end = [], None
    for position, (start, end) in enumerate(encoded["offset_mapping"][0].tolist()):
        if special[position] or end <= start:
            continue
        tokens.append({"text": text[start:end], "start": start, "end": end, "space_before": previous_end is not None and start > previous_end,
                       "score": round(float(scores[position]), 6)})
        previous_end = end
    return {"tokens": tokens, "baseline": "every non-special token replaced by the padding token", **_check(scores, delta, f_x, f_base)}


def image_attributions(model: nn.Module, pixels: torch.Tensor, target: int, *, steps: int, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Pixel attributions for output `target` of one image (uint8, channels x height x width), as `text_attributions`.

    Returns {heat: height x width array (attribution summed over channels), output, baseline_output,
    attribution_sum, delta}.
    """
    from captum.attr import IntegratedGradients

    model = model.to(device).eval()
    x = pixels.float().unsqueeze(0).to(device)
    baseline = torch.zeros_like(x)
    forward = _probability(model)
    attributions, delta = IntegratedGradients(forward).attribute(x, baselines=baseline, target=target, n_steps=steps,
                                                                 internal_batch_size=INTERNAL_BATCH, return_convergence_delta=True)
    attributions = attributions[0].detach().cpu()
    with torch.no_grad():
        f_x, f_base = float(forward(x)[0, target]), float(forward(baseline)[0, target])
    return {"heat": attributions.sum(dim=0).numpy(), "baseline": "a black image", **_check(attributions, delta, f_x, f_base)}


def overlay_png(pixels: torch.Tensor | np.ndarray, heat: np.ndarray, path: Path, *, min_size: int = 128) -> None:
    """The image in grey with the attributions over it: red where they raise the predicted class, blue where
    they lower it, opacity by magnitude (scaled to the 99th percentile). Enlarged without blurring to `min_size`."""
    from PIL import Image

    image = np.asarray(pixels, dtype=np.float32)
    grey = image.mean(axis=0) if image.ndim == 3 else image
    base = np.repeat(grey[..., None], 3, axis=2) / 255.0
    scale = float(np.quantile(np.abs(heat), 0.99)) or float(np.abs(heat).max()) or 1.0
    strength = np.clip(heat / scale, -1.0, 1.0)
    alpha = 0.75 * np.abs(strength)[..., None]
    colour = np.where(strength[..., None] >= 0, np.array([0.85, 0.1, 0.1]), np.array([0.1, 0.3, 0.9]))
    blended = (base * (1 - alpha) + colour * alpha) * 255
    picture = Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), mode="RGB")
    factor = max(1, -(-min_size // max(picture.size)))
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG", optimize=True)


def largest(tokens: Sequence[Mapping[str, Any]], count: int = 3) -> list[str]:
    """The texts of the `count` tokens with the largest attribution (most in favour of the prediction)."""
    return [str(t["text"]) for t in sorted(tokens, key=lambda t: -float(t["score"]))[:count]]


def shaded_tokens(tokens: Sequence[Mapping[str, Any]]) -> Any:
    """The tokens as HTML, each shaded by its attribution (red for the prediction, blue against it, opacity by
    magnitude relative to the example's largest); every token's text is escaped."""
    from markupsafe import Markup, escape

    scale = max((abs(float(t.get("score") or 0.0)) for t in tokens), default=0.0) or 1.0
    parts = []
    for token in tokens:
        score = float(token.get("score") or 0.0)
        alpha = round(min(1.0, abs(score) / scale) * 0.8, 3)
        colour = "220,38,38" if score >= 0 else "37,99,235"
        space = " " if token.get("space_before") else ""
        parts.append(f'{space}<span class="attr" style="background:rgba({colour},{alpha})" title="{score:+.4f}">{escape(str(token.get("text", "")))}</span>')
    return Markup(f'<span class="tokens">{"".join(parts)}</span>')


def inline_png(path: Path | None) -> Any:
    """A PNG file as an inline <img> (the report stays one file); a missing file says so."""
    import base64

    from markupsafe import Markup, escape

    if path is None or not Path(path).is_file():
        return Markup(f'<span class="na">heat map not available{": " + str(escape(str(path))) if path else ""}</span>')
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return Markup(f'<img class="heat" src="data:image/png;base64,{data}" alt="attribution heat map" title="{escape(Path(path).name)}">')


__all__ = ["TaskOutputs", "image_attributions", "inline_png", "largest", "overlay_png", "pick_examples", "shaded_tokens", "text_attributions"]
