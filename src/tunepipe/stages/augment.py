"""augment: add randomly edited copies (word deletion, adjacent swaps) of training rows."""

from __future__ import annotations

from tunepipe.data.augment import augment_images, augment_rows
from tunepipe.io import read_jsonl, write_json, write_jsonl
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    cfg, seed = ctx.params["augment"], ctx.params["seed"]
    rows = read_jsonl(ctx.inputs["train"])
    if ctx.params["data"]["modality"] == "image":
        from tunepipe import runtime

        runtime.torch_threads(ctx.threads)
        image_dir = ctx.outputs["train"].parent / "images"
        extra = augment_images(rows, multiplier=cfg["multiplier"], cfg=cfg["image"], seed=seed, out_dir=image_dir)
        field = "path"
    else:
        extra = augment_rows(rows, multiplier=cfg["multiplier"], p_delete=cfg["p_delete"], p_swap=cfg["p_swap"], seed=seed,
                             p_mask=cfg["p_mask"], mask_token=cfg["mask_token"])
        field = "text"
    originals = {row["id"]: row[field] for row in rows}
    write_jsonl(ctx.outputs["train"], [dict(row, augmented=False) for row in rows] + extra)
    write_json(
        ctx.outputs["summary"],
        {
            "original_rows": len(rows),
            "augmented_rows": len(extra),
            "multiplier": cfg["multiplier"],
            "modality": ctx.params["data"]["modality"],
            "examples": [{"original": originals[row["source_id"]], "augmented": row[field]} for row in extra[: ctx.params["report"]["examples"]]],
        },
    )
    ctx.log.info("%d training rows + %d augmented", len(rows), len(extra))


STAGE = Stage(
    name="augment",
    summary="Augment the training split; val and test are never augmented.",
    inputs={"train": "JSONL rows of the train split"},
    outputs={"train": "JSONL: original + augmented training rows", "summary": "JSON: counts and before/after examples"},
    run=run,
    params_help="seed, data.modality, augment.*, report.examples",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
