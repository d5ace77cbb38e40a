"""ensemble: the sweep's top-k variants (by select's ranking) as one model, their mean class probabilities; scored on
val and test beside the single winner. prune then scores and times it as a candidate, and it is exported only when the
validation split prefers it by more than prune.max_accuracy_drop over everything smaller."""

from __future__ import annotations

from pathlib import Path

from tunepipe.data.labels import encode
from tunepipe.io import read_json, read_jsonl, write_json
from tunepipe.modalities import get_modality
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    import torch

    from tunepipe import runtime
    from tunepipe.checkpoints import load_checkpoint, save_model
    from tunepipe.errors import DataError
    from tunepipe.evaluation import classification_metrics
    from tunepipe.models.ensemble import Ensemble, input_mismatch, mean_probabilities, verdict
    from tunepipe.models.inference import pick_device, predict_logits
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
    processor = modality.load_processor(model_cfg)
    device = pick_device()
    splits = {}
    for key in ("val", "test"):
        rows = read_jsonl(ctx.inputs[key])
        splits[key] = (modality.encode(rows, None, model_cfg, processor), torch.tensor(encode(rows, names, str(ctx.inputs[key]))))

    def scores(probs: dict[str, torch.Tensor]) -> dict[str, float]:
        result = {}
        for key, (_, targets) in splits.items():
            values = classification_metrics(probs[key], targets)
            result[f"{key}_accuracy"], result[f"{key}_f1_macro"] = values["accuracy"], values["f1_macro"]
        return result

    member_probs, rows = [], []
    for variant, model, _ in members:
        probs = {key: predict_logits(model, data, cfg["batch_size"], device).softmax(dim=-1) for key, (data, _) in splits.items()}
        member_probs.append(probs)
        rows.append({"variant": variant["name"], "rank": variant["rank"], "score": variant["mean"], **scores(probs)})
        ctx.log.info("member %-28s rank %d  val acc %.4f  test acc %.4f", variant["name"], variant["rank"], rows[-1]["val_accuracy"], rows[-1]["test_accuracy"])
    ensemble_scores = scores({key: mean_probabilities([probs[key] for probs in member_probs]) for key in splits})
    level = PruningLevel(name=f"ensemble-{len(members)}", method="ensemble", sparsity=0.0)
    text = verdict(len(members), ensemble_scores["val_accuracy"], rows[0]["val_accuracy"])
    ctx.log.info("%s", text)

    ensemble = Ensemble([model.cpu() for _, model, _ in members])
    save_model(ctx.outputs["model"], ensemble, model_cfg=model_cfg, label_names=names, modality=modality.name, pruning_level=level.as_dict(),
               members=[meta["model_cfg"] for _, _, meta in members])
    write_json(ctx.outputs["summary"], {
        "level": level.as_dict(), "top_k": cfg["top_k"], "score_metric": selection["metric"], "members": rows, "skipped": skipped,
        "ensemble": ensemble_scores, "winner": rows[0], "val_gain": round(ensemble_scores["val_accuracy"] - rows[0]["val_accuracy"], 6),
        "verdict": text,
    })


STAGE = Stage(
    name="ensemble",
    summary="Average the class probabilities of the sweep's top-k variants (select's ranking) into one model; score it and the winner on val and test.",
    inputs={
        "selection": "results/select/selection.json (the variants' ranks)",
        "trials": "repeatable: results/sweep/<variant>/best.ckpt of every variant (only the top-k are read)",
        "val": "JSONL validation rows",
        "test": "JSONL test rows (reported)",
    },
    outputs={
        "model": "the ensemble (each member's state dict and model_cfg, like prune's model file), a candidate of prune",
        "summary": "JSON: the members and their scores, variants skipped (another input) and why, the ensemble's and the winner's val/test accuracy and F1, the verdict",
    },
    run=run,
    params_help="ensemble.top_k, ensemble.batch_size",
    repeatable=frozenset({"trials"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
