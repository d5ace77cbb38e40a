"""Which optional steps a run leaves out, and why: decided once, from the params, for the workflow and the report.

A step left out still leaves its results folder (a DVC out of the `pipeline` stage): the `skip` rule writes
`results/<step>/skipped.json` (tunepipe.stages.harness.SKIP_MARKER) with the reason instead of the step's outputs, so every run that completes the
report can be recorded, and the report says what did not run. Importing this module is cheap (no torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunepipe.modalities import get_modality

#: The steps a param can leave out whose results folder is versioned (dvc.yaml), in pipeline order.
OPTIONAL_STEPS = ("robustness", "explain", "distill")


def skipped_steps(params: Mapping[str, Any]) -> dict[str, str]:
    """{step: why it does not run} for each optional step that these (validated) params leave out."""
    skipped: dict[str, str] = {}
    for step in OPTIONAL_STEPS:
        if not params[step]["enabled"]:
            skipped[step] = f"{step}.enabled is false"
    modality = get_modality(params["data"]["modality"])
    if "distill" not in skipped and (why := modality.no_student(params["model"])):
        skipped["distill"] = why
    return skipped


__all__ = ["OPTIONAL_STEPS", "skipped_steps"]
