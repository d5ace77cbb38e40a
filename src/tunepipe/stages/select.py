"""select: rank the sweep variants on the declared validation metric (CV mean over folds) and name the winner."""

from __future__ import annotations

from tunepipe.io import read_json, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe.errors import DataError
    from tunepipe.sweep import select

    cfg = ctx.params["sweep"]
    trials = []
    for path in ctx.many.get("trials", []):
        summary = read_json(path)
        try:
            score = summary["metrics_at_best_epoch"][cfg["metric"]]
        except KeyError as exc:
            raise DataError(f"{path}: no {cfg['metric']} at the best epoch; rerun the trial.") from exc
        trials.append({"variant": summary["variant"], "overrides": summary["overrides"], "fold": summary["fold"], "score": score})
    selection = select(trials, cfg["metric"], cfg["mode"])
    selection = {"method": cfg["method"], "folds": ctx.params["split"]["folds"] if ctx.params["split"]["folds"] >= 2 else 0, **selection}
    write_json(ctx.outputs["selection"], selection)
    ctx.log.info("winner %s: %s %.4f +- %.4f over %d variant(s)", selection["winner"], cfg["metric"], selection["mean"], selection["std"],
                 len(selection["variants"]))


STAGE = Stage(
    name="select",
    summary="Pick the best sweep variant on sweep.metric (mean over cross-validation folds) and record every variant's scores.",
    inputs={"trials": "repeatable: results/sweep/<variant>[/fold<k>]/summary.json of every trial"},
    outputs={"selection": "JSON: metric, mode, winner, its overrides, mean, std and every variant's scores and rank"},
    run=run,
    params_help="sweep.metric, sweep.mode, sweep.method, split.folds",
    repeatable=frozenset({"trials"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
