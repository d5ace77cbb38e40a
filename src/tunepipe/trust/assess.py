"""The fine-tuned model against its test rows' slices and against the baseline: what evaluate writes beside its metrics.

`assess` gives evaluate's slices.json (metrics per slice, the worst slice), comparison.json (the paired test against
the baseline, in words, and the diagnosis when the fine-tuned model is not better) and the headline numbers of both
for metrics.json. Everything that depends on the task is the task's (`Task.trust_*`: its answers, metrics, the
metric slices are ranked on, its paired test); the flat keys are named by the task's metrics (worst_slice_<metric>,
worst_slice_gap, vs_baseline_p_value, vs_baseline_<metric>_diff with _ci_low/_ci_high), so they stay flat for `dvc
metrics diff`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunepipe.tasks import Task


def assess(task: Task, *, rows: Sequence[Mapping[str, Any]], modality: Any, names: list[str], outputs, baseline_outputs, targets,
           decision: Mapping[str, Any], evaluate_cfg: Mapping[str, Any], seed: int, train_summary: Mapping[str, Any],
           train_history: list[dict[str, Any]], source: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(slices, comparison, flat): slices.json, comparison.json and their headline numbers for metrics.json.

    The baseline's answers are taken as evaluate scores it (without the `decision` fixed on the fine-tuned model's
    validation outputs: multi-label thresholds at 0.5), so the differences match evaluate's two columns.
    """
    from tunepipe.models.baseline import describe
    from tunepipe.trust.diagnosis import diagnose
    from tunepipe.trust.significance import compare_answers, sentence
    from tunepipe.trust.slices import slice_columns_of, slice_table

    cfg = evaluate_cfg
    answers, base_answers = task.trust_answers(outputs, names, decision), task.trust_answers(baseline_outputs, names, None)
    truth = targets.numpy()
    columns = slice_columns_of(rows, modality, cfg["slice_columns"], source)
    slices = slice_table(task, names, truth, answers, columns, resamples=cfg["bootstrap_resamples"], seed=seed, min_rows=cfg["slice_min_rows"])
    versus = compare_answers(task, names, answers, base_answers, truth, resamples=cfg["bootstrap_resamples"], seed=seed, alpha=cfg["alpha"])
    versus["sentence"] = sentence(versus, "the fine-tuned model", "the baseline")
    # Not better than the baseline: say so, with the causes training's own records show (tunepipe.trust.diagnosis).
    diagnosis = diagnose(versus, summary=train_summary, history=train_history, test_labels=task.trust_labels(rows),
                         baseline_name=describe(modality.baseline_features, task.baseline_model), metric=task.trust_metric)
    flat: dict[str, Any] = {}
    worst, metric = slices["worst"], task.trust_metric[0]
    if worst is not None:
        flat[f"worst_slice_{metric}"], flat["worst_slice_gap"] = worst[metric], worst[f"{metric}_gap"]
    boot = versus["bootstrap"]
    flat["vs_baseline_p_value"] = round(versus[task.trust_test]["p_value"], 6)
    for key in (key for key in boot if key.endswith("_diff")):
        flat[f"vs_baseline_{key}"] = boot[key]
        flat[f"vs_baseline_{key}_ci_low"], flat[f"vs_baseline_{key}_ci_high"] = boot[f"{key}_ci"]
    return slices, {"fine_tuned_vs_baseline": versus, "diagnosis": diagnosis}, flat
