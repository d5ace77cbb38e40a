"""prune: unstructured and/or structured pruning at each level in params; every level evaluated and timed; one selected."""

from __future__ import annotations

from tunepipe.io import read_json, read_rows, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import DEFAULT, get_task


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint, load_model, save_model
    from tunepipe.errors import DataError
    from tunepipe.models.inference import pick_device
    from tunepipe.optimize.levels import LabelledSet, PruneSettings, Scoring, levels_record, prune_and_select
    from tunepipe.optimize.pruning import PruningLevel

    runtime.torch_threads(ctx.threads)
    settings = PruneSettings.from_params(ctx.params["prune"], ctx.params.get("distill"))
    dense, meta = load_checkpoint(ctx.inputs["best"])
    names, model_cfg, task, stats = meta["label_names"], meta["model_cfg"], get_task(meta["task"]), meta["target_stats"]
    modality = get_modality(meta["modality"])
    processor = modality.load_processor(model_cfg)
    device = pick_device()
    decision = read_json(ctx.inputs["decision"]) if "decision" in ctx.inputs else None
    if decision is not None and list(decision.get("labels") or []) != list(names):
        raise DataError(f"{ctx.inputs['decision']}: its labels {decision.get('labels')} are not the model's {names}; rerun evaluate on this model.")
    scoring = Scoring(task, names, stats, decision)

    def labelled(key: str) -> LabelledSet:
        rows = read_rows(ctx.inputs[key])
        targets = torch.tensor(task.encode(rows, names, str(ctx.inputs[key])))
        return LabelledSet(modality.encode(rows, None, model_cfg, processor), targets)

    def same_task(key: str, payload: dict) -> dict:
        if payload.get("task", DEFAULT) != task.name:
            raise DataError(f"{ctx.inputs[key]}: a {payload.get('task', DEFAULT)} model, but {ctx.inputs['best']} is {task.name}; rerun {key}.")
        return payload

    val, test = labelled("val"), labelled("test")
    train = None
    if settings.finetune_steps > 0:
        train_rows = read_rows(ctx.inputs["train"])
        train = modality.encode(train_rows, task.encode(train_rows, names, str(ctx.inputs["train"])), model_cfg, processor)
    candidates = ()
    if "student" in ctx.inputs:  # the distilled student, scored and timed like a level
        student, payload = load_model(ctx.inputs["student"])
        candidates = ((PruningLevel.from_dict(same_task("student", payload)["pruning_level"]), student),)
    members = None  # the ensemble's members' model_cfg, saved with it if it is kept
    if "ensemble" in ctx.inputs:  # the sweep's top-k variants averaged, uncompressed like dense (selection: pruning.select_candidate)
        ensemble, payload = load_model(ctx.inputs["ensemble"])
        if len(same_task("ensemble", payload)["ensemble"]) >= 2:
            candidates += ((PruningLevel.from_dict(payload["pruning_level"]), ensemble),)
            members = payload["ensemble"]
        else:
            ctx.log.info("ensemble: no other variant shares the winner's input (results/ensemble/summary.json); not a candidate")
    result = prune_and_select(dense, settings, val=val, test=test, train=train, scoring=scoring, seed=ctx.params["seed"], device=device,
                              log=ctx.log, candidates=candidates)
    save_model(ctx.outputs["model"], result.model, model_cfg=model_cfg, label_names=names, modality=modality.name,
               pruning_level=result.selected.as_dict(), structure=result.structure, members=members if result.selected.method == "ensemble" else None,
               task=task.name, target_stats=stats)
    write_json(ctx.outputs["levels"], levels_record(result, settings, ctx.threads, scoring))


STAGE = Stage(
    name="prune",
    summary="Prune the fine-tuned model at each level (unstructured and/or structured), evaluate and time every level (and the student and "
    "ensemble when given), keep the smallest or fastest within the allowed drop (of the task's first level metric on val) of the best uncompressed candidate.",
    inputs={
        "best": "Lightning checkpoint from train",
        "train": "JSONL training rows (only read for the recovery fine-tune)",
        "val": "JSONL validation rows (selection)",
        "test": "JSONL test rows (reported)",
        "student": "optional: results/distill/student.pt, the distilled student, a candidate like the levels",
        "ensemble": "optional: results/ensemble/model.pt, the sweep's top-k variants averaged, an uncompressed candidate like dense",
        "decision": "optional: results/evaluate/decision.json (multi_label's thresholds for the scores; without it 0.5)",
    },
    outputs={"model": "the selected model (state dict + shapes + config, task, target_stats) for export",
             "levels": "JSON: every level's params, size, scores (the task's level metrics on val and test), latency"},
    run=run,
    params_help="prune.method, prune.sparsities, prune.max_accuracy_drop, prune.select, prune.finetune_*, prune.latency_runs, prune.batch_size, seed; "
    "distill.temperature and distill.alpha (the recovery fine-tune learns from the dense teacher)",
    optional=frozenset({"student", "ensemble", "decision"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
