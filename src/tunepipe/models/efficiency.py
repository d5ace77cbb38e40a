"""Device efficiency settings made concrete: `train.batch_size: auto` and `train.compile`.

`train.batch_size: auto` is a rule, not a search (deterministic: the same data on the same kind of device
give the same batch size, and nothing is trained to find it):

    the largest power of two that is at most `CAP[accelerator]` (32 on a CPU, 256 on a GPU) and at most
    `rows // MIN_STEPS_PER_EPOCH` (so an epoch has at least 8 optimizer steps), and at least 1.

On a CPU that is today's default 32 for anything from 256 training rows up; on a GPU it is 256 (a MiniLM-sized
encoder at up to 256 tokens, the `model.max_length: auto` budget, fits in 16 GiB at 256 in bf16). It does not
probe the device's memory: a model that does not fit at 256 stops with CUDA's out-of-memory error, and an
explicit `train.batch_size` is the fix. The resolved value is logged and saved in results/train/config.yaml.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from torch import nn

from tunepipe.errors import ParamsError

log = logging.getLogger("tunepipe.train")

CAP = {"cpu": 32, "gpu": 256}
MIN_STEPS_PER_EPOCH = 8


def auto_batch_size(rows: int, accelerator: str) -> int:
    """The `auto` batch size for `rows` training rows (per process) on `accelerator` (see the module docstring)."""
    limit = min(CAP.get(accelerator, CAP["cpu"]), max(1, rows // MIN_STEPS_PER_EPOCH))
    return 1 << (limit.bit_length() - 1)


def resolve_batch_size(train_cfg: dict[str, Any], rows: int, accelerator: str, processes: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """`train_cfg` with a concrete `batch_size`, and what was decided (for the summary)."""
    if train_cfg["batch_size"] != "auto":
        return train_cfg, {"value": train_cfg["batch_size"], "auto": False}
    value = auto_batch_size(rows // max(1, processes), accelerator)
    return {**train_cfg, "batch_size": value}, {"value": value, "auto": True, "rows": rows, "cap": CAP.get(accelerator, CAP["cpu"])}


def compile_model(model: nn.Module, accelerator: str) -> None:
    """`train.compile: true`: torch.compile the model in place (`nn.Module.compile`: its state_dict keys, hence
    the checkpoints, stay the same). Inductor builds C++ kernels on a CPU: without a C++ compiler that is a
    clear error here, not a compiler traceback in the middle of the first step."""
    if accelerator == "cpu":
        compiler = os.environ.get("CXX") or next((name for name in ("c++", "g++", "clang++") if shutil.which(name)), None)
        if not compiler or not shutil.which(compiler):
            raise ParamsError("train.compile is true but no C++ compiler was found (torch.compile's CPU backend needs one: "
                              "c++, g++ or clang++ on PATH, or CXX); install one (e.g. apt-get install g++) or set train.compile: false.")
    log.info("compiling the model with torch.compile (the first steps are slower while it compiles)")
    model.compile()
