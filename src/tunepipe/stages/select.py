"""select: rank the sweep variants on the declared validation metric (CV mean over folds) and name the winner."""

from __future__ import annotations

from tunepipe.io import read_json, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe.errors import DataError
    from tunepipe.search import pruning_summary
    from tunepipe.sweep import select

    cfg = ctx.params["sweep"]
    trials = []
    for path in ctx.many.get("trials", []):
        summary = read_json(path)
        try:
            score = summary["metrics_at_best_epoch"][cfg["metric"]]
        except KeyError as exc:
            raise DataError(f"{path}: no {cfg['metric']} at the best epoch; rerun the trial.") from exc
        facts = {key: summary[key] for key in ("round", "epochs_run", "max_epochs", "pruned_at_epoch") if key in summary}
        trials.append({"variant": summary["variant"], "overrides": summary["overrides"], "fold": summary["fold"], "score": score, **facts})
    selection = select(trials, cfg["metric"], cfg["mode"])
    selection = {"method": cfg["method"], "folds": ctx.params["split"]["folds"] if ctx.params["split"]["folds"] >= 2 else 0, **selection}
    if cfg["method"] == "tpe":  # a pruned trial competes with its best score before it was stopped
        selection["pruning"] = {"rule": cfg["pruning"], "warmup_epochs": cfg["pruning_warmup_epochs"], **pruning_summary(trials)}
        ctx.log.info("pruning (%s): %d of %d trial(s) stopped early; %d of %d epochs not trained (%.0f%%)", cfg["pruning"],
                     selection["pruning"]["pruned_trials"], len(trials), selection["pruning"]["epochs_saved"], selection["pruning"]["epochs_full"],
                     100 * selection["pruning"]["saved_share"])
    write_json(ctx.outputs["selection"], selection)
    ctx.log.info("winner %s: %s %.4f +- %.4f over %d variant(s)", selection["winner"], cfg["metric"], selection["mean"], selection["std"],
                 len(selection["variants"]))


STAGE = Stage(
    name="select",
    summary="Pick the best sweep variant on sweep.metric (mean over cross-validation folds) and record every variant's scores.",
    inputs={"trials": "repeatable: results/sweep/<variant>[/fold<k>]/summary.json of every trial (tpe: of every round)"},
    outputs={"selection": "JSON: metric, mode, winner, its overrides, mean, std and every variant's scores and rank"},
    run=run,
    params_help="sweep.metric, sweep.mode, sweep.method, sweep.pruning*, split.folds",
    repeatable=frozenset({"trials"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
