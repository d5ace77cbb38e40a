"""One module per report section, each a function from the loaded inputs (and params) to that section's
view model: a plain dict the section's template (templates/sections/<name>.html.j2) prints.

View models only pick and combine what the artefacts say; nothing here re-decides a stage's verdict.
The helpers below keep a missing or malformed input from breaking a section.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tunepipe.report.format import number
from tunepipe.tasks import Task
from tunepipe.tasks._report import ReportView, Shown, lookup

#: Longer examples are clipped so one long review cannot stretch the page.
MAX_EXAMPLE_CHARS = 400


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def difference(a: Any, b: Any) -> float | None:
    x, y = number(a), number(b)
    return None if x is None or y is None else x - y


def example_text(item: Any) -> str:
    """An example (a row's input, or a record holding one) as text, clipped; the modality decides how it shows."""
    if isinstance(item, str):
        text = item
    elif isinstance(item, Mapping) and isinstance(item.get("text"), str):
        text = item["text"]
    else:
        text = json.dumps(item, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[: MAX_EXAMPLE_CHARS - 1] + "…"


def run_task(params: Mapping[str, Any], inputs: Mapping[str, Any]) -> Task:
    """The run's task: the params' task.type, else the one evaluate's decision.json names (single_label when neither)."""
    from tunepipe.tasks import DEFAULT, get_task

    declared = as_dict(params.get("task")).get("type") or as_dict(inputs.get("decision")).get("task") or DEFAULT
    return get_task(str(declared))


def shown(view: ReportView, key: str) -> Shown:
    """How the task names and prints the metric `key` (a file's own name when the task does not list it)."""
    return lookup(view.metrics, key)


def capital(text: str) -> str:
    """`text` with its first letter upper-case and the rest as written ("macro F1" -> "Macro F1")."""
    return text[:1].upper() + text[1:]
