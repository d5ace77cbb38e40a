"""augment: add randomly edited copies of training rows (word edits for texts, flips/affine/jitter for images)."""

from __future__ import annotations

from tunepipe.io import read_rows, write_json, write_jsonl
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from itertools import islice

    from tunepipe import runtime
    from tunepipe.data.cleaning import MAX_EXAMPLES

    cfg, seed = ctx.params["augment"], ctx.params["seed"]
    modality = get_modality(ctx.params["data"]["modality"])
    runtime.torch_threads(ctx.threads)
    rows = read_rows(ctx.inputs["train"])
    field = modality.input_field
    extra = iter(modality.augment(rows, augment_cfg=cfg, seed=seed, out_dir=ctx.outputs["train"].parent / "images"))
    # The file streams: every original row, then the augmented ones as they are made. The summary's examples are the
    # first augmented rows beside their sources' inputs, which are picked out while the originals are written.
    examples = list(islice(extra, MAX_EXAMPLES))
    wanted = {row["source_id"] for row in examples}
    originals: dict[str, str] = {}

    def written():
        for row in rows:
            if row["id"] in wanted:
                originals[row["id"]] = row[field]
            yield dict(row, augmented=False)
        yield from examples
        yield from extra

    augmented = write_jsonl(ctx.outputs["train"], written()) - len(rows)
    write_json(
        ctx.outputs["summary"],
        {
            "original_rows": len(rows),
            "augmented_rows": augmented,
            "multiplier": cfg["multiplier"],
            "modality": modality.name,
            "examples": [{"original": originals[row["source_id"]], "augmented": row[field]} for row in examples],
        },
    )
    ctx.log.info("%d training rows + %d augmented", len(rows), augmented)


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
