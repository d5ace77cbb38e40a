"""prepare: read the raw dataset (bundled or the user's) into rows of id, input (text or image path), label."""

from __future__ import annotations

from tunepipe.io import sha256_file, sha256_files, write_frame_jsonl, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, counts_line, main
from tunepipe.tasks import task_of


def run(ctx: StageContext) -> None:
    from tunepipe.data.readers import resolve_source, write_bundled_images
    from tunepipe.data.splitting import stratified_sample

    data = ctx.params["data"]
    if "raw" in ctx.inputs:  # the user's file or folder, as the rule passes it (data.path)
        data = dict(data, path=str(ctx.inputs["raw"]))
    modality, task = get_modality(data["modality"]), task_of(ctx.params)
    source = resolve_source(data)
    ctx.log.info("reading %s (%s, %s)", source.path, source.format, modality.name)
    image_dir = ctx.outputs["rows"].parent / "images"
    frame = stratified_sample(modality.read(data, image_dir, task), data["max_rows"], ctx.params.get("seed", 0), strata=task.strata)
    if data["max_rows"] is not None:
        ctx.log.info("kept a stratified sample of %d rows (data.max_rows)", len(frame))
    write_bundled_images(frame)
    columns = ["id", modality.input_field, "label"] + [name for name in ("group", "columns") if name in frame]
    write_frame_jsonl(ctx.outputs["rows"], frame[columns])
    counts = task.counts(frame["label"])
    write_json(
        ctx.outputs["summary"],
        {
            "source": source.kind,
            "path": str(source.path),
            "modality": modality.name,
            "sha256": sha256_file(source.path) if source.path.is_file() else sha256_files(sorted(frame["path"]) if "path" in frame else []),
            "rows": int(len(frame)),
            "labels": counts,
        },
    )
    ctx.log.info("%d rows, labels: %s", len(frame), counts_line(counts))


STAGE = Stage(
    name="prepare",
    summary="Read the raw labelled rows into results/prepare/rows.jsonl (columns id, text or path, label[, group]).",
    # The rule passes the user's dataset (data.path), so that editing it reruns prepare.
    inputs={"raw": "optional: your dataset, data.path (a CSV/JSONL/Parquet file or an image folder); bundled datasets have none"},
    outputs={"rows": "JSONL rows: id, text or path, label[, group][, columns: the data file's other columns]", "summary": "JSON: source file, sha256, rows per label"},
    run=run,
    params_help="seed, task.type, data.* (source, path, format, modality, columns, max_rows)",
    optional=frozenset({"raw"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
