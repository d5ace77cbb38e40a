"""Where a report came from: git commit, package versions, interpreter and machine."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from tunepipe.vcs import git

PACKAGES: tuple[str, ...] = (
    "torch",
    "pytorch-lightning",
    "torchmetrics",
    "transformers",
    "hydra-core",
    "snakemake",
    "dvc",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "numpy",
    "pandas",
)


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    """`{"commit": sha or None, "dirty": bool or None}`; both None outside a git work tree or without git."""
    head = git(["rev-parse", "HEAD"], cwd)
    commit = head.strip() if head and head.strip() else None
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git(["status", "--porcelain"], cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status.strip())}


def package_versions(names: tuple[str, ...] | list[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, None when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def collect(cwd: Path | None = None) -> dict[str, Any]:
    """Everything the provenance section shows. `generated_at` is the only time-dependent value."""
    return {
        "git": git_info(cwd),
        "packages": package_versions(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": _cpu_count(),
        "generated_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
