"""ensemble: the sweep's top-k variants (by select's ranking) as one model, their outputs combined by the task (mean
class probabilities, mean label probabilities, mean value); scored on val and test beside the single winner. prune then
scores and times it as a candidate, and it is exported only when the validation split prefers it by more than
prune.max_accuracy_drop over everything smaller."""

from __future__ import annotations

from pathlib import Path

from tunepipe.io import read_json, read_rows, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main
from tunepipe.tasks import get_task


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint, save_model
    from tunepipe.errors import DataError
    from tunepipe.models.ensemble import Ensemble, input_mismatch, verdict
    from tunepipe.models.inference import pick_device, predict_logits
    from tunepipe.optimize.levels import Scoring
    from tunepipe.optimize.pruning import PruningLevel

    runtime.torch_threads(ctx.threads)
    cfg = ctx.params["ensemble"]
    selection = read_json(ctx.inputs["selection"])
    checkpoints = {Path(path).parent.name: Path(path) for path in ctx.many.get("trials", [])}
    ranked = sorted(selection["variants"], key=lambda variant: variant["rank"])
    absent = [variant["name"] for variant in ranked if variant["name"] not in checkpoints]
    if absent:
        raise DataError(f"{ctx.inputs['selection']}: no results/sweep/<variant>/best.ckpt given for {', '.join(absent)}; rerun the sweep.")

    # The top-k in rank order among the variants that take the winner's input (texts: tokenizer and max_length).
    members, skipped, winner_meta = [], [], None
    for variant in ranked:
        if len(members) == cfg["top_k"]:
            break
        model, meta = load_checkpoint(checkpoints[variant["name"]])
        winner_meta = winner_meta or meta
        reason = input_mismatch(winner_meta, meta, get_modality(meta["modality"]).preprocessing)
        if reason:
            ctx.log.info("skipped %s (rank %d): %s", variant["name"], variant["rank"], reason)
            skipped.append({"variant": variant["name"], "rank": variant["rank"], "reason": reason})
            continue
        members.append((variant, model, meta))

    names, model_cfg, modality = winner_meta["label_names"], winner_meta["model_cfg"], get_modality(winner_meta["modality"])
    task, stats = get_task(winner_meta["task"]), winner_meta["target_stats"]
    decision = read_json(ctx.inputs["decision"]) if "decision" in ctx.inputs else None
    scoring = Scoring(task, names, stats, decision)
    metric = scoring.metrics[0]
    processor = modality.load_processor(model_cfg)
    device = pick_device()
    splits = {}
    for key in ("val", "test"):
        rows = read_rows(ctx.inputs[key])
        splits[key] = (modality.encode(rows, None, model_cfg, processor), torch.tensor(task.encode(rows, names, str(ctx.inputs[key]))))

    def scores(logits: dict[str, torch.Tensor]) -> dict[str, float]:
        return {f"{key}_{name}": value for key, (_, targets) in splits.items() for name, value in scoring(logits[key], targets).items()}

    member_logits, rows = [], []
    for variant, model, _ in members:
        logits = {key: predict_logits(model, data, cfg["batch_size"], device) for key, (data, _) in splits.items()}
        member_logits.append(logits)
        rows.append({"variant": variant["name"], "rank": variant["rank"], "score": variant["mean"], **scores(logits)})
        ctx.log.info("member %-28s rank %d  val %s %.4f  test %s %.4f", variant["name"], variant["rank"], metric, rows[-1][f"val_{metric}"],
                     metric, rows[-1][f"test_{metric}"])
    ensemble_scores = scores({key: task.combine_members(torch.stack([logits[key] for logits in member_logits])) for key in splits})
    level = PruningLevel(name=f"ensemble-{len(members)}", method="ensemble", sparsity=0.0)
    text = verdict(len(members), ensemble_scores[f"val_{metric}"], rows[0][f"val_{metric}"], metric)
    ctx.log.info("%s", text)

    ensemble = Ensemble([model.cpu() for _, model, _ in members], task=task.name)
    save_model(ctx.outputs["model"], ensemble, model_cfg=model_cfg, label_names=names, modality=modality.name, pruning_level=level.as_dict(),
               members=[meta["model_cfg"] for _, _, meta in members], task=task.name, target_stats=stats)
    write_json(ctx.outputs["summary"], {
        "level": level.as_dict(), "top_k": cfg["top_k"], "score_metric": selection["metric"], "members": rows, "skipped": skipped,
        "ensemble": ensemble_scores, "winner": rows[0], "val_gain": round(ensemble_scores[f"val_{metric}"] - rows[0][f"val_{metric}"], 6),
        "verdict": text,
    })


STAGE = Stage(
    name="ensemble",
    summary="Combine the sweep's top-k variants (select's ranking) into one model (their mean prediction); score it and the winner on val and test.",
    inputs={
        "selection": "results/select/selection.json (the variants' ranks)",
        "trials": "repeatable: results/sweep/<variant>/best.ckpt of every variant (only the top-k are read)",
        "val": "JSONL validation rows",
        "test": "JSONL test rows (reported)",
        "decision": "optional: results/evaluate/decision.json (multi_label's thresholds for the scores; without it 0.5)",
    },
    outputs={
        "model": "the ensemble (each member's state dict and model_cfg, like prune's model file), a candidate of prune",
        "summary": "JSON: the members and their scores, variants skipped (another input) and why, the ensemble's and the winner's val/test scores "
        "(the task's level metrics), the verdict",
    },
    run=run,
    params_help="ensemble.top_k, ensemble.batch_size",
    repeatable=frozenset({"trials"}),
    optional=frozenset({"decision"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
