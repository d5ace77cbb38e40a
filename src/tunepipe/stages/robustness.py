"""robustness: how the fine-tuned model holds up on corrupted and adversarial test inputs.

Scores a seeded sample of the test split (`robustness.max_rows`) clean and under each of the modality's
perturbations at each severity (the task's metric, drop from clean, flip rate: tunepipe.robustness.metrics), then
attacks `robustness.attack.max_rows` of those rows (FGSM and PGD on the task's loss in the modality's input space;
for texts also a greedy character attack). Multi-label answers use evaluate's thresholds (`decision`). With
`robustness.enabled: false` the rule does not run (the `skip` rule leaves results/robustness/skipped.json).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tunepipe.io import read_json, read_rows, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import get_task

#: Folder (beside the outputs) of the image examples' thumbnails, clean and perturbed.
THUMBNAILS = "examples"


def _shown(value: Any, folder: Path, stem: str) -> str | None:
    """An example input as the report shows it: a text as is; pixels saved as a PNG file, given by its path."""
    if value is None or isinstance(value, str):
        return value
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.png"
    Image.fromarray(value.permute(1, 2, 0).numpy()).save(path)
    return str(path)


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.models.inference import pick_device, predict_logits
    from tunepipe.robustness import RowSubset, same_item
    from tunepipe.robustness.attacks import attack_predictions
    from tunepipe.robustness.metrics import Judge, attack_row, flat_metrics, flipped, perturbation_row, sample_rows

    cfg, seed = ctx.params["robustness"], ctx.params["seed"]
    thumbnails = ctx.final["examples"].parent / THUMBNAILS
    shutil.rmtree(thumbnails, ignore_errors=True)  # an earlier run's images
    runtime.torch_threads(ctx.threads)
    model, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality, task = meta["label_names"], meta["model_cfg"], get_modality(meta["modality"]), get_task(meta["task"])
    decision = read_json(ctx.inputs["decision"]) if "decision" in ctx.inputs else None
    judge = Judge(task, names, meta["target_stats"], decision)
    metric = judge.metric
    device = pick_device()
    rows = sample_rows(read_rows(ctx.inputs["test"]), cfg["max_rows"], seed)
    targets = torch.tensor(task.encode(rows, names, str(ctx.inputs["test"])))
    truth = targets.numpy()
    processor = modality.load_processor(model_cfg)
    dataset = modality.encode(rows, None, model_cfg, processor)
    batch = cfg["batch_size"]
    clean_inputs = getattr(dataset, "pixels", None)  # images: the resized pixels, for side-by-side thumbnails
    clean = judge.answers(predict_logits(model, dataset, batch, device))  # (logits come back on the CPU)
    clean_score = judge.score(clean, truth)
    ctx.log.info("%d test rows, clean %s %.4f", len(rows), metric, clean_score or 0.0)

    limit = cfg["examples"]

    def example(i: int, what: dict[str, Any], tag: str, perturbed_value: Any, prediction: Any) -> dict[str, Any]:
        row = rows[i]
        original = row[modality.input_field] if clean_inputs is None else _shown(clean_inputs[i], thumbnails, f"clean-{i}")
        return {**what, "id": row["id"], "label": task.trust_shown(truth[i], names), "clean_prediction": task.trust_shown(clean[i], names),
                "perturbed_prediction": task.trust_shown(prediction, names), "original": original,
                "perturbed": _shown(perturbed_value, thumbnails, f"{tag}-{i}")}

    table, shown_perturbations = [], []
    for perturbation in modality.perturbations(cfg["severities"], model_cfg, processor):
        perturbed = perturbation.apply(rows, dataset, seed)
        # Rows the perturbation left as they were (an uncased tokenizer ignores case, a text without punctuation...) keep
        # their clean prediction: only the changed ones are run through the model.
        predicted = clean.copy()
        changed = [i for i in range(len(rows)) if not same_item(dataset[i], perturbed.dataset[i])]
        if changed:
            predicted[changed] = judge.answers(predict_logits(model, RowSubset(perturbed.dataset, changed), batch, device))
        row = perturbation_row(perturbation.name, perturbation.severity, perturbation.amount, perturbation.unit, predicted, clean, truth, judge)
        table.append(row)
        ctx.log.info("%-18s severity %d: %s %.4f  drop %+.4f  flip rate %.4f", perturbation.name, perturbation.severity, metric,
                     row[metric] or 0.0, row["drop"] or 0.0, row["flip_rate"] or 0.0)
        if perturbation.severity == max(cfg["severities"]):  # examples at the strongest severity run
            what = {"perturbation": perturbation.name, "severity": perturbation.severity}
            shown_perturbations += [example(i, what, f"{perturbation.name}-s{perturbation.severity}", perturbed.inputs[i], predicted[i])
                                    for i in flipped(judge.differ(predicted, clean), limit)]

    attack_rows, shown_attacks = [], []
    count = min(cfg["attack"]["max_rows"], len(rows))
    if count:
        subset = rows[:count]
        outcomes = attack_predictions(modality.attacks(cfg["attack"], model_cfg, processor), model, subset,
                                      modality.encode(subset, None, model_cfg, processor), targets[:count], clean[:count],
                                      batch_size=batch, seed=seed, device=device, judge=judge)
        eligible = task.robust_eligible(clean[:count], truth[:count])
        for outcome in outcomes:
            row = attack_row(outcome, clean[:count], truth[:count], judge)
            attack_rows.append(row)
            ctx.log.info("attack %-12s %s %.4f  success rate %s", outcome.name, metric, row[metric] or 0.0, row["success_rate"])
            shown_attacks += [example(i, {"attack": outcome.name}, outcome.name, outcome.inputs[i] if outcome.inputs else None, outcome.predictions[i])
                              for i in flipped(judge.differ(outcome.predictions, clean[:count]), limit, eligible)]

    perturbation_columns, attack_columns = judge.columns()
    write_json(ctx.outputs["metrics"], flat_metrics(clean_score, len(rows), table, attack_rows, judge))
    write_csv(ctx.outputs["perturbations"], table, perturbation_columns)
    write_csv(ctx.outputs["attacks"], attack_rows, attack_columns)
    write_json(ctx.outputs["examples"], {"skipped": False, "modality": modality.name, "labels": names, "rows": len(rows),
                                          f"clean_{metric}": clean_score, "severities": cfg["severities"],
                                          "perturbations": shown_perturbations, "attacks": shown_attacks})


STAGE = Stage(
    name="robustness",
    summary="Score the best checkpoint on perturbed test inputs (per perturbation and severity) and under adversarial attacks.",
    inputs={"best": "Lightning checkpoint from train", "test": "JSONL test rows",
            "decision": "optional: results/evaluate/decision.json (multi_label: each label's threshold; 0.5 without it)"},
    outputs={
        "metrics": "flat JSON (a DVC metric), in the task's metric <m> (accuracy, f1_micro, mae): robustness_* (clean_<m>, worst_<m>, "
                   "mean_<m>, worst drop, mean flip rate; regression: mean_abs_change) and attack_<name>_<m>, attack_<name>_success_rate",
        "perturbations": "CSV: perturbation, severity, amount, unit, rows, <m>, drop (positive = worse), flip_rate (regression: and mean_abs_change)",
        "attacks": "CSV: attack, space, epsilon, steps, max_edits, rows, clean_<m>, <m>, success_rate, queries",
        "examples": "JSON: flipped predictions (original and perturbed input, labels); images as PNG files in examples/ beside it",
    },
    run=run,
    params_help="seed, robustness.* (max_rows, severities, batch_size, examples, attack.*)",
    optional=frozenset({"decision"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
