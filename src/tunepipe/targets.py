"""Which `_target_` callables params may name: optimizers and learning-rate schedules, nothing else.

`train.optimizer._target_` and `train.scheduler._target_` come from params.yaml, `--config`, a sweep or
`dvc exp run -S`, and would otherwise build any importable callable (`os.system`, `subprocess.run`).
A user allows a module of their own with `TUNEPIPE_TARGET_MODULES=my_package.optim` (comma-separated).
`check_target` is string checks only (cheap, at validation time); `resolve_target` imports the object
and checks where it really lives, at instantiation time.
"""

from __future__ import annotations

import os
from typing import Any

from tunepipe.errors import ParamsError

ALLOWED_TARGET_MODULES = ("torch.optim", "torch.optim.lr_scheduler", "tunepipe.models.schedules")
#: Comma-separated extra modules whose public names may be targets.
ENV_VAR = "TUNEPIPE_TARGET_MODULES"
#: The params keys (sections) that hold a `_target_` object.
TARGET_KEYS = ("train.optimizer", "train.scheduler")
_EXAMPLES = {
    "train.optimizer._target_": "use a class from torch.optim (e.g. torch.optim.AdamW)",
    "train.scheduler._target_": "use a schedule from tunepipe.models.schedules or torch.optim.lr_scheduler "
                                "(e.g. tunepipe.models.schedules.linear_warmup_decay)",
}


def allowed_modules() -> tuple[str, ...]:
    """The built-in modules plus those named in TUNEPIPE_TARGET_MODULES (read at each call)."""
    extra = (name.strip() for name in os.environ.get(ENV_VAR, "").split(","))
    return ALLOWED_TARGET_MODULES + tuple(name for name in extra if name)


def _refuse(key: str, target: Any, why: str = "is not allowed") -> ParamsError:
    example = _EXAMPLES.get(key, f"use a name from one of {', '.join(ALLOWED_TARGET_MODULES)}")
    return ParamsError(f"{key}: {target!r} {why}; {example}, or allow your module with {ENV_VAR}=my_package.optim")


def check_target(key: str, target: Any) -> str:
    """`target` unchanged when it is `<allowed module>.<PublicName>` (not a module that is itself allowed); else a
    ParamsError naming `key`. No import: it runs whenever params are validated, at DAG-build time too."""
    if isinstance(target, str):
        allowed = allowed_modules()
        module, _, name = target.rpartition(".")
        if module in allowed and target not in allowed and name.isidentifier() and not name.startswith("_"):
            return target
    raise _refuse(key, target)


def _inside(module: str, allowed: tuple[str, ...]) -> bool:
    return any(module == parent or module.startswith(parent + ".") for parent in allowed)


def resolve_target(key: str, target: Any) -> Any:
    """The object `target` names, checked (by its `__module__`) to be defined in an allowed module.

    A name merely imported into an allowed module (`torch.optim.lr_scheduler.partial` is functools.partial)
    is refused.
    """
    from hydra.utils import get_object

    check_target(key, target)
    try:
        obj = get_object(target)
    except Exception as exc:  # noqa: BLE001 - hydra wraps import errors in several types
        raise _refuse(key, target, f"cannot be imported ({exc})") from None
    if not callable(obj) or not _inside(str(getattr(obj, "__module__", "")), allowed_modules()):
        raise _refuse(key, target, f"is not allowed (it is defined in {getattr(obj, '__module__', None)!r})")
    return obj
