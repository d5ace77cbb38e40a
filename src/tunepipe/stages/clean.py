"""clean: normalise white space, drop empty, too-short, undeclared-label, conflicting and duplicate rows."""

from __future__ import annotations

import pandas as pd

from tunepipe.data.cleaning import clean_texts
from tunepipe.io import read_jsonl, write_json, write_jsonl
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    params = ctx.params
    frame = pd.DataFrame(read_jsonl(ctx.inputs["rows"]), columns=["id", "text", "label"])
    kept, report = clean_texts(
        frame,
        labels=params["data"]["labels"],
        min_words=params["clean"]["min_words"],
        drop_duplicates=params["clean"]["drop_duplicates"],
        drop_conflicting_labels=params["clean"]["drop_conflicting_labels"],
        max_examples=params["report"]["examples"],
        source=str(ctx.inputs["rows"]),
    )
    write_jsonl(ctx.outputs["rows"], kept.to_dict(orient="records"))
    write_json(ctx.outputs["report"], report.as_dict())
    removed = {k: v for k, v in report.removed.items() if v}
    ctx.log.info("kept %d of %d rows; removed %s", report.kept_rows, report.input_rows, removed or "none")


STAGE = Stage(
    name="clean",
    summary="Clean the raw rows and count every removal by reason.",
    inputs={"rows": "JSONL rows from prepare"},
    outputs={"rows": "JSONL of kept rows", "report": "JSON: removals per reason with examples, label counts"},
    run=run,
    params_help="data.labels, clean.min_words, clean.drop_duplicates, clean.drop_conflicting_labels, report.examples",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
