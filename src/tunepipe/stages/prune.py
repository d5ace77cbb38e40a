"""prune: unstructured and/or structured pruning at each level in params; every level evaluated and timed; one selected."""

from __future__ import annotations

from tunepipe.data.labels import encode
from tunepipe.io import read_jsonl, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint, load_model, save_model
    from tunepipe.evaluation import classification_metrics
    from tunepipe.models.inference import pick_device
    from tunepipe.optimize.levels import LabelledSet, PruneSettings, levels_record, prune_and_select
    from tunepipe.optimize.pruning import PruningLevel

    runtime.torch_threads(ctx.threads)
    settings = PruneSettings.from_params(ctx.params["prune"], ctx.params.get("distill"))
    dense, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg = meta["label_names"], meta["model_cfg"]
    modality = get_modality(meta["modality"])
    processor = modality.load_processor(model_cfg)
    device = pick_device()

    def labelled(key: str) -> LabelledSet:
        rows = read_jsonl(ctx.inputs[key])
        targets = torch.tensor(encode(rows, names, str(ctx.inputs[key])))
        return LabelledSet(modality.encode(rows, None, model_cfg, processor), targets)

    val, test = labelled("val"), labelled("test")
    train = None
    if settings.finetune_steps > 0:
        train_rows = read_jsonl(ctx.inputs["train"])
        train = modality.encode(train_rows, encode(train_rows, names, str(ctx.inputs["train"])), model_cfg, processor)
    candidates = ()
    if "student" in ctx.inputs:  # the distilled student, scored and timed like a level
        student, payload = load_model(ctx.inputs["student"])
        candidates = ((PruningLevel.from_dict(payload["pruning_level"]), student),)
    members = None  # the ensemble's members' model_cfg, saved with it if it is kept
    if "ensemble" in ctx.inputs:  # the sweep's top-k variants averaged, uncompressed like dense (selection: pruning.select_candidate)
        ensemble, payload = load_model(ctx.inputs["ensemble"])
        if len(payload["ensemble"]) >= 2:
            candidates += ((PruningLevel.from_dict(payload["pruning_level"]), ensemble),)
            members = payload["ensemble"]
        else:
            ctx.log.info("ensemble: no other variant shares the winner's input (results/ensemble/summary.json); not a candidate")
    result = prune_and_select(dense, settings, val=val, test=test, train=train, metrics=classification_metrics, seed=ctx.params["seed"], device=device,
                              log=ctx.log, candidates=candidates)
    save_model(ctx.outputs["model"], result.model, model_cfg=model_cfg, label_names=names, modality=modality.name,
               pruning_level=result.selected.as_dict(), structure=result.structure, members=members if result.selected.method == "ensemble" else None)
    write_json(ctx.outputs["levels"], levels_record(result, settings, ctx.threads))


STAGE = Stage(
    name="prune",
    summary="Prune the fine-tuned model at each level (unstructured and/or structured), evaluate and time every level (and the student and "
    "ensemble when given), keep the smallest or fastest within the allowed accuracy drop of the best uncompressed candidate.",
    inputs={
        "best": "Lightning checkpoint from train",
        "train": "JSONL training rows (only read for the recovery fine-tune)",
        "val": "JSONL validation rows (selection)",
        "test": "JSONL test rows (reported)",
        "student": "optional: results/distill/student.pt, the distilled student, a candidate like the levels",
        "ensemble": "optional: results/ensemble/model.pt, the sweep's top-k variants averaged, an uncompressed candidate like dense",
    },
    outputs={"model": "the selected model (state dict + shapes + config) for export", "levels": "JSON: every level's params, size, accuracy, latency"},
    run=run,
    params_help="prune.method, prune.sparsities, prune.max_accuracy_drop, prune.select, prune.finetune_*, prune.latency_runs, prune.batch_size, seed; "
    "distill.temperature and distill.alpha (the recovery fine-tune learns from the dense teacher)",
    optional=frozenset({"student", "ensemble"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
