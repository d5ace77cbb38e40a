"""clean: normalise the inputs, drop empty, too-short, unreadable, undeclared-label (or invalid-target), conflicting and
duplicate rows; the task (tunepipe.tasks) checks the targets."""

from __future__ import annotations

from tunepipe.io import read_frame, write_frame_jsonl, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import task_of


def run(ctx: StageContext) -> None:
    data = ctx.params["data"]
    frame = read_frame(ctx.inputs["rows"])
    kept, report = get_modality(data["modality"]).clean(frame, labels=data["labels"], clean_cfg=ctx.params["clean"], source=str(ctx.inputs["rows"]),
                                                        task=task_of(ctx.params))
    write_frame_jsonl(ctx.outputs["rows"], kept)
    write_json(ctx.outputs["report"], report.as_dict())
    removed = {k: v for k, v in report.removed.items() if v}
    ctx.log.info("kept %d of %d rows; removed %s", report.kept_rows, report.input_rows, removed or "none")


STAGE = Stage(
    name="clean",
    summary="Clean the raw rows (texts or images) and count every removal by reason, with examples.",
    inputs={"rows": "JSONL rows from prepare"},
    outputs={"rows": "JSONL of kept rows", "report": "JSON: removals per reason with examples, label counts"},
    run=run,
    params_help="task.type, data.modality, data.labels, clean.*",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
