"""Render the report: each section's view model (tunepipe.report.sections) through its template.

`build_report` is a pure function of the loaded inputs, the params, the provenance record (collected when
not given) and the earlier-runs record, so the same inputs give the same HTML apart from the one
"generated at" line. A missing input key shows as "not available" instead of failing the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunepipe.report.format import FILTERS, number
from tunepipe.report.sections import as_dict, run_task
from tunepipe.report.sections.augment import augment
from tunepipe.report.sections.data import data
from tunepipe.report.sections.earlier_runs import earlier_runs as earlier_runs_section
from tunepipe.report.sections.earlier_runs import since_last
from tunepipe.report.sections.evaluation import evaluation
from tunepipe.report.sections.explanations import explanations
from tunepipe.report.sections.export import export
from tunepipe.report.sections.provenance import provenance as provenance_section
from tunepipe.report.sections.slices import slices
from tunepipe.report.sections.pruning import pruning
from tunepipe.report.sections.robustness import robustness
from tunepipe.report.sections.summary import summary
from tunepipe.report.sections.sweep import sweep
from tunepipe.report.sections.training import training

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "report.html.j2"
DEFAULT_TITLE = "tunepipe report"
DEFAULT_EXAMPLES = 5


def build_report(
    params: dict[str, Any],
    inputs: dict[str, Any],
    *,
    provenance: dict[str, Any] | None = None,
    earlier_runs: dict[str, Any] | None = None,
) -> str:
    """Render the report. `inputs` maps the report stage's input keys to loaded data (`load_inputs`).

    `provenance` is `tunepipe.report.provenance.collect()`'s record; it is collected when not given.
    `earlier_runs` is `tunepipe.runs.earlier_runs()`'s record; the History section says when it was not collected.
    """
    import jinja2

    from tunepipe.modalities import get_modality

    if provenance is None:
        from tunepipe.report.provenance import collect

        provenance = collect()
    params = params if isinstance(params, dict) else {}
    report_params = as_dict(params.get("report"))
    examples = report_params.get("examples", DEFAULT_EXAMPLES)
    examples = max(0, int(examples)) if number(examples) is not None else DEFAULT_EXAMPLES
    task = run_task(params, inputs)
    view = task.report_view()  # what the task shows: its metrics' names, the cards, the data and evaluation blocks
    context = {
        "title": str(report_params.get("title") or DEFAULT_TITLE),
        "summary": summary(inputs, view),
        "data": data(params, inputs, examples, view),
        "augment": augment(inputs, examples),
        "training": training(inputs, tuple(task.val_metrics), view),
        "sweep": sweep(inputs),
        "evaluation": evaluation(inputs, examples, view),
        "slices": slices(inputs, view),
        "explanations": explanations(params, inputs),
        "robustness": robustness(inputs, examples, view),
        "pruning": pruning(inputs, view, task.level_metrics),
        "export": export(inputs, view, task.level_metrics),
        "earlier_runs": earlier_runs_section(earlier_runs, inputs),
        "since_last": since_last(earlier_runs, inputs),
        "provenance": provenance_section(params, inputs, provenance),
        "examples_limit": examples,
    }
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.filters["example"] = get_modality(params["data"]["modality"]).show_example
    return env.get_template(TEMPLATE_NAME).render(**context)
