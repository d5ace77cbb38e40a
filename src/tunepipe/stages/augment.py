"""augment: add randomly edited copies of training rows (word edits for texts, flips/affine/jitter for images)."""

from __future__ import annotations

from tunepipe.io import read_jsonl, write_json, write_jsonl
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe import runtime
    from tunepipe.data.cleaning import MAX_EXAMPLES

    cfg, seed = ctx.params["augment"], ctx.params["seed"]
    modality = get_modality(ctx.params["data"]["modality"])
    runtime.torch_threads(ctx.threads)
    rows = read_jsonl(ctx.inputs["train"])
    extra = modality.augment(rows, augment_cfg=cfg, seed=seed, out_dir=ctx.outputs["train"].parent / "images")
    field = modality.input_field
    originals = {row["id"]: row[field] for row in rows}
    write_jsonl(ctx.outputs["train"], [dict(row, augmented=False) for row in rows] + extra)
    write_json(
        ctx.outputs["summary"],
        {
            "original_rows": len(rows),
            "augmented_rows": len(extra),
            "multiplier": cfg["multiplier"],
            "modality": modality.name,
            "examples": [{"original": originals[row["source_id"]], "augmented": row[field]} for row in extra[:MAX_EXAMPLES]],
        },
    )
    ctx.log.info("%d training rows + %d augmented", len(rows), len(extra))


STAGE = Stage(
    name="augment",
    summary="Augment the training split; val and test are never augmented.",
    inputs={"train": "JSONL rows of the train split"},
    outputs={"train": "JSONL: original + augmented training rows", "summary": "JSON: counts and before/after examples"},
    run=run,
    params_help="seed, data.modality, augment.*",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
