"""explain: Integrated Gradients attributions (Captum) for the most confident errors and correct predictions.

Which rows: evaluate's predictions table (the `explain.examples` most confident errors and as many most
confident correct predictions; regression: the largest and the smallest absolute errors), and which output of
each (the predicted class's probability; one label's; the value) are the task's (`Task.explain_candidates`,
`explain_output`). How a row is explained and drawn is its modality's (token attributions for texts, heat-map
PNGs for images); the library is tunepipe.trust.explain.
"""

from __future__ import annotations


from tunepipe.io import read_csv_rows, read_rows, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import get_task

METHOD = "Integrated Gradients (Captum), of {output}"


def run(ctx: StageContext) -> None:
    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.errors import DataError
    from tunepipe.trust.explain import TaskOutputs, pick_examples

    cfg = ctx.params["explain"]
    heatmaps = ctx.outputs["heatmaps"]
    heatmaps.mkdir(parents=True, exist_ok=True)
    runtime.torch_threads(ctx.threads)
    model, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, modality, task = meta["label_names"], meta["model_cfg"], get_modality(meta["modality"]), get_task(meta["task"])
    record = {"method": METHOD.format(output=task.explain_output), "steps": cfg["steps"], "examples": cfg["examples"], "items": []}
    predictions = read_csv_rows(ctx.inputs["predictions"])
    picked, targets = pick_examples(task.explain_candidates(predictions, names), cfg["examples"])
    wanted = {item["id"] for item in picked}
    rows = {str(row["id"]): row for row in read_rows(ctx.inputs["test"]) if str(row["id"]) in wanted}
    unknown = [item["id"] for item, target in zip(picked, targets) if item["id"] not in rows or target is None]
    if unknown:
        raise DataError(f"{ctx.inputs['predictions']}: rows {', '.join(unknown[:5])} are not the test split's or the model's; rerun evaluate.")
    files = [f"{item['kind']}-{item['rank']}.png" for item in picked]
    results = modality.explain(TaskOutputs(model, task, meta["target_stats"]), [rows[item["id"]] for item in picked], targets, model_cfg,
                               modality.load_processor(model_cfg), steps=cfg["steps"], out_dir=heatmaps, names=files)
    final_dir = ctx.final["heatmaps"].name
    for item, result in zip(picked, results):
        if "heatmap" in result:  # a file in the heatmaps folder, named relative to attributions.json's folder
            result["heatmap"] = f"{final_dir}/{result['heatmap']}"
        record["items"].append({**item, "input": rows[item["id"]][modality.input_field], **result})
    record["labels"] = names
    record["max_delta"] = max((item["delta"] for item in record["items"]), default=None)
    write_json(ctx.outputs["attributions"], record)
    ctx.log.info("explained %d rows (%d steps); largest completeness gap |sum - (f(x) - f(baseline))| = %s",
                 len(record["items"]), cfg["steps"], record["max_delta"])


STAGE = Stage(
    name="explain",
    summary="Explain the most confident test errors and correct predictions with Integrated Gradients (token attributions, image heat maps).",
    inputs={
        "best": "Lightning checkpoint from train",
        "test": "JSONL test rows",
        "predictions": "results/evaluate/predictions.csv (which rows were wrong, and how confident)",
    },
    outputs={
        "attributions": "JSON: method, steps, labels, items (kind error|correct, rank, id, label, predicted, confidence (multi_label: also "
                        "explained, the label; regression: error and explained instead), input, tokens [{text, start, end, space_before, "
                        "score}] or heatmap, output, baseline_output, attribution_sum, delta), max_delta",
        "heatmaps": "folder of PNG heat maps over the images (empty for texts)",
    },
    run=run,
    params_help="explain.examples, explain.steps (explain.enabled: false leaves the rule out)",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
