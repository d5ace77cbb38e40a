"""robustness: how the fine-tuned model holds up on corrupted and adversarial test inputs.

Scores a seeded sample of the test split (`robustness.max_rows`) clean and under each of the modality's
perturbations at each severity (accuracy, drop from clean, flip rate), then attacks `robustness.attack.max_rows`
of those rows (FGSM and PGD in the modality's input space; for texts also a greedy character attack). With
`robustness.enabled: false` the rule does not run (the `skip` rule leaves results/robustness/skipped.json).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tunepipe.data.labels import encode
from tunepipe.io import read_jsonl, write_csv, write_json
from tunepipe.modalities import get_modality
from tunepipe.robustness.metrics import ATTACK_COLUMNS, PERTURBATION_COLUMNS
from tunepipe.stages.harness import Stage, StageContext, main

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
    from tunepipe.robustness.metrics import accuracy, attack_row, flat_metrics, flipped, perturbation_row, sample_rows

    cfg, seed = ctx.params["robustness"], ctx.params["seed"]
    thumbnails = ctx.final["examples"].parent / THUMBNAILS
    shutil.rmtree(thumbnails, ignore_errors=True)  # an earlier run's images
    runtime.torch_threads(ctx.threads)
    model, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality = meta["label_names"], meta["model_cfg"], get_modality(meta["modality"])
    device = pick_device()
    rows = sample_rows(read_jsonl(ctx.inputs["test"]), cfg["max_rows"], seed)
    targets = torch.tensor(encode(rows, names, str(ctx.inputs["test"])))
    processor = modality.load_processor(model_cfg)
    dataset = modality.encode(rows, None, model_cfg, processor)
    batch = cfg["batch_size"]
    clean_inputs = getattr(dataset, "pixels", None)  # images: the resized pixels, for side-by-side thumbnails
    clean = predict_logits(model, dataset, batch, device).argmax(dim=-1)  # (logits come back on the CPU)
    clean_accuracy = accuracy(clean, targets)
    ctx.log.info("%d test rows, clean accuracy %.4f", len(rows), clean_accuracy or 0.0)

    limit = cfg["examples"]

    def example(i: int, what: dict[str, Any], tag: str, perturbed_value: Any, prediction: int) -> dict[str, Any]:
        row = rows[i]
        original = row[modality.input_field] if clean_inputs is None else _shown(clean_inputs[i], thumbnails, f"clean-{i}")
        return {**what, "id": row["id"], "label": names[int(targets[i])], "clean_prediction": names[int(clean[i])],
                "perturbed_prediction": names[prediction], "original": original, "perturbed": _shown(perturbed_value, thumbnails, f"{tag}-{i}")}

    table, shown_perturbations = [], []
    for perturbation in modality.perturbations(cfg["severities"], model_cfg, processor):
        perturbed = perturbation.apply(rows, dataset, seed)
        # Rows the perturbation left as they were (an uncased tokenizer ignores case, a text without punctuation...) keep
        # their clean prediction: only the changed ones are run through the model.
        predicted = clean.clone()
        changed = [i for i in range(len(rows)) if not same_item(dataset[i], perturbed.dataset[i])]
        if changed:
            predicted[changed] = predict_logits(model, RowSubset(perturbed.dataset, changed), batch, device).argmax(dim=-1)
        row = perturbation_row(perturbation.name, perturbation.severity, perturbation.amount, perturbation.unit, predicted, clean, targets)
        table.append(row)
        ctx.log.info("%-18s severity %d: accuracy %.4f  drop %+.4f  flip rate %.4f", perturbation.name, perturbation.severity,
                     row["accuracy"] or 0.0, row["drop"] or 0.0, row["flip_rate"] or 0.0)
        if perturbation.severity == max(cfg["severities"]):  # examples at the strongest severity run
            what = {"perturbation": perturbation.name, "severity": perturbation.severity}
            shown_perturbations += [example(i, what, f"{perturbation.name}-s{perturbation.severity}", perturbed.inputs[i], int(predicted[i]))
                                    for i in flipped(predicted, clean, targets, limit)]

    attack_rows, shown_attacks = [], []
    count = min(cfg["attack"]["max_rows"], len(rows))
    if count:
        subset = rows[:count]
        outcomes = attack_predictions(modality.attacks(cfg["attack"], model_cfg, processor), model, subset,
                                      modality.encode(subset, None, model_cfg, processor), targets[:count], clean[:count],
                                      batch_size=batch, seed=seed, device=device)
        for outcome in outcomes:
            row = attack_row(outcome, clean[:count], targets[:count])
            attack_rows.append(row)
            ctx.log.info("attack %-12s accuracy %.4f  success rate %s", outcome.name, row["accuracy"] or 0.0, row["success_rate"])
            shown_attacks += [example(i, {"attack": outcome.name}, outcome.name, outcome.inputs[i] if outcome.inputs else None, int(outcome.predictions[i]))
                              for i in flipped(outcome.predictions, clean[:count], targets[:count], limit, only_correct=True)]

    write_json(ctx.outputs["metrics"], flat_metrics(clean_accuracy, len(rows), table, attack_rows))
    write_csv(ctx.outputs["perturbations"], table, PERTURBATION_COLUMNS)
    write_csv(ctx.outputs["attacks"], attack_rows, ATTACK_COLUMNS)
    write_json(ctx.outputs["examples"], {"skipped": False, "modality": modality.name, "labels": names, "rows": len(rows),
                                          "clean_accuracy": clean_accuracy, "severities": cfg["severities"],
                                          "perturbations": shown_perturbations, "attacks": shown_attacks})


STAGE = Stage(
    name="robustness",
    summary="Score the best checkpoint on perturbed test inputs (per perturbation and severity) and under adversarial attacks.",
    inputs={"best": "Lightning checkpoint from train", "test": "JSONL test rows"},
    outputs={
        "metrics": "flat JSON (a DVC metric): robustness_* (clean, worst, mean accuracy, worst drop, flip rate) and attack_<name>_*",
        "perturbations": "CSV: perturbation, severity, amount, unit, rows, accuracy, drop, flip_rate",
        "attacks": "CSV: attack, space, epsilon, steps, max_edits, rows, clean_accuracy, accuracy, success_rate, queries",
        "examples": "JSON: flipped predictions (original and perturbed input, labels); images as PNG files in examples/ beside it",
    },
    run=run,
    params_help="seed, robustness.* (max_rows, severities, batch_size, examples, attack.*)",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
