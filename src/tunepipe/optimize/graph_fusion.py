"""ONNX Runtime's transformer optimizer: fuse attention, LayerNorm + residual and GELU nodes into ORT's kernels.

The fusions match graph patterns. PyTorch's scaled-dot-product attention exports a masking pattern
(IsNaN/Where) that ORT's Attention fusion does not recognise, so a transformer is exported for fusion from a
copy that uses the plain ("eager") attention implementation: the same maths, a pattern the fuser knows.
What a fusion changed is proved by the caller's parity check on the fused graph, like any other export.

Only encoders whose architecture ORT's `bert` fuser covers are fused; for anything else (CNNs, other
transformers) `fusion_target` returns None and the export is left as it is.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

_log = logging.getLogger(__name__)

#: Hugging Face `config.model_type`s whose encoder layers ORT's BERT fuser matches (post-LayerNorm BERT family).
BERT_LIKE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra"})


@dataclass(frozen=True)
class FusionTarget:
    """What ORT's optimizer needs to know about the model: its family, attention heads and width (0 = let it detect)."""

    model_type: str
    num_heads: int
    hidden_size: int


def fusion_target(model: nn.Module) -> FusionTarget | None:
    """The fuser's settings for a classifier with a BERT-like Hugging Face encoder; None when there is nothing to fuse.

    Structured pruning can leave layers with different numbers of heads. ORT's Attention fusion takes one
    head count for the whole graph, so then it is asked to detect them (0), which fuses the other patterns.
    """
    config = getattr(getattr(model, "encoder", None), "config", None)
    if config is None or getattr(config, "model_type", None) not in BERT_LIKE:
        return None
    shapes = {(int(module.num_attention_heads), int(module.all_head_size)) for module in model.modules()
              if hasattr(module, "num_attention_heads") and hasattr(module, "all_head_size")}
    heads, width = shapes.pop() if len(shapes) == 1 else (0, 0)
    return FusionTarget(model_type="bert", num_heads=heads, hidden_size=width)


def exportable_for_fusion(model: nn.Module) -> nn.Module:
    """A copy of `model` whose encoder uses eager attention (the graph pattern ORT fuses); `model` is untouched."""
    clone = copy.deepcopy(model).eval()
    encoder = getattr(clone, "encoder", None)
    if encoder is not None and hasattr(encoder, "set_attn_implementation"):
        encoder.set_attn_implementation("eager")
    return clone


def fuse(source: Path, target: Path, spec: FusionTarget) -> dict[str, Any]:
    """Write the fused graph of `source` to `target`; returns the fused operators (kind -> count, non-zero only)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions(spec.model_type)
    # EmbedLayerNormalization would swallow the embedding Gather, the tensor that dynamic INT8 shrinks most
    # (a third of MiniLM's weights); the embeddings' LayerNorm still fuses as a plain LayerNormalization.
    options.enable_embed_layer_norm = False

    root = logging.getLogger("onnxruntime.transformers")  # the fuser logs each pattern it tries at WARNING
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        # opt_level 0: the Python fusions only, no ORT graph rewrites baked into the file (those stay the
        # session's job at load time, so the file does not depend on this machine's ORT build).
        optimized = optimize_model(str(source), model_type=spec.model_type, num_heads=spec.num_heads,
                                   hidden_size=spec.hidden_size, optimization_options=options,
                                   opt_level=0, use_gpu=False)
        optimized.save_model_to_file(str(target))
        counts = {kind: int(n) for kind, n in optimized.get_fused_operator_statistics().items() if n}
    finally:
        root.setLevel(level)
    _log.debug("fused %s: %s", source.name, counts)
    return counts
