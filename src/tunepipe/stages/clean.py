"""clean: normalise white space, drop empty, too-short, undeclared-label, conflicting and duplicate rows."""

from __future__ import annotations

import pandas as pd

from tunepipe.data.cleaning import clean_images, clean_texts
from tunepipe.io import read_jsonl, write_json, write_jsonl
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    params, cfg = ctx.params, ctx.params["clean"]
    frame = pd.DataFrame(read_jsonl(ctx.inputs["rows"]))
    common = dict(
        labels=params["data"]["labels"],
        drop_duplicates=cfg["drop_duplicates"],
        drop_conflicting_labels=cfg["drop_conflicting_labels"],
        max_examples=params["report"]["examples"],
        source=str(ctx.inputs["rows"]),
    )
    if params["data"]["modality"] == "image":
        kept, report = clean_images(frame, min_size=cfg["min_image_size"], **common)
    else:
        kept, report = clean_texts(frame, min_words=cfg["min_words"], max_words=cfg["max_words"], **common)
    write_jsonl(ctx.outputs["rows"], kept.to_dict(orient="records"))
    write_json(ctx.outputs["report"], report.as_dict())
    removed = {k: v for k, v in report.removed.items() if v}
    ctx.log.info("kept %d of %d rows; removed %s", report.kept_rows, report.input_rows, removed or "none")


STAGE = Stage(
    name="clean",
    summary="Clean the raw rows (texts or images) and count every removal by reason, with examples.",
    inputs={"rows": "JSONL rows from prepare"},
    outputs={"rows": "JSONL of kept rows", "report": "JSON: removals per reason with examples, label counts"},
    run=run,
    params_help="data.modality, data.labels, clean.*, report.examples",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
