"""prepare: read the raw dataset (bundled or the user's file) into rows of id, text, label."""

from __future__ import annotations

from tunepipe.data.readers import read_labelled_texts, resolve_source
from tunepipe.io import sha256_file, write_json, write_jsonl
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    source = resolve_source(ctx.params["data"])
    ctx.log.info("reading %s (%s)", source.path, source.format)
    frame = read_labelled_texts(source)
    write_jsonl(ctx.outputs["rows"], frame.to_dict(orient="records"))
    counts = frame["label"].value_counts()
    write_json(
        ctx.outputs["summary"],
        {
            "source": source.kind,
            "path": str(source.path),
            "sha256": sha256_file(source.path),
            "rows": int(len(frame)),
            "labels": {str(k): int(v) for k, v in counts.items()},
        },
    )
    ctx.log.info("%d rows, labels: %s", len(frame), dict(counts))


STAGE = Stage(
    name="prepare",
    summary="Read the raw labelled texts into results/prepare/rows.jsonl (columns id, text, label).",
    inputs={},
    outputs={"rows": "JSONL rows: id, text, label", "summary": "JSON: source file, sha256, rows per label"},
    run=run,
    params_help="data.source, data.path, data.format, data.text_column, data.label_column",
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
