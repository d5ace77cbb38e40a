"""ask: one round of a `sweep.method: tpe` search: the next `sweep.parallel` parameter sets, from the earlier rounds' trials.

A Snakemake checkpoint per round (results/sweep/round<k>/asked.json): the trials it names are the round's
`trial` jobs, and round k+1 asks once they have all finished. Only earlier rounds are read, in (round,
index) order, so what is asked depends on `sweep.seed` and their results, never on the order jobs finished.
"""

from __future__ import annotations

from tunepipe.io import read_csv_rows, read_json, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from tunepipe.errors import DataError
    from tunepipe.search import ask_round, parse_space, round_seed, told_trials
    from tunepipe.sweep import variant_name

    cfg, round_index, count = ctx.params["sweep"], int(ctx.params["round"]), int(ctx.params["count"])
    space = parse_space(cfg["parameters"])
    asked_rounds = sorted((read_json(path) for path in ctx.many.get("rounds", [])), key=lambda asked: asked["round"])
    if [asked["round"] for asked in asked_rounds] != list(range(round_index)):
        raise DataError(f"round {round_index} needs the asked.json of rounds 0..{round_index - 1}, got rounds {[a['round'] for a in asked_rounds]}.")
    summaries = {read_json(path)["variant"]: read_json(path) for path in ctx.many.get("summaries", [])}
    histories = {path.parent.name: read_csv_rows(path) for path in ctx.many.get("histories", [])}
    try:
        told = told_trials(asked_rounds, summaries, histories, cfg["metric"])
    except KeyError as missing:
        raise DataError(f"trial {missing.args[0]} of an earlier round has no summary with {cfg['metric']}; rerun it (results/sweep/{missing.args[0]}/).") from None
    trials = ask_round(space, told, seed=cfg["seed"], round_index=round_index, count=count, mode=cfg["mode"], startup=cfg["parallel"],
                       name_of=variant_name)
    if not trials:
        raise DataError(f"round {round_index}: every point of sweep.parameters has been tried; lower sweep.samples or widen the space.")
    write_json(ctx.outputs["asked"], {"round": round_index, "sampler_seed": round_seed(cfg["seed"], round_index), "told": len(told),
                                      "trials": [{"index": index, **trial} for index, trial in enumerate(trials)]})
    ctx.log.info("round %d: %d trial(s) asked from %d earlier trial(s) (%d pruned): %s", round_index, len(trials), len(told),
                 sum(t.pruned for t in told), ", ".join(trial["name"] for trial in trials))


STAGE = Stage(
    name="ask",
    summary="Ask one round of TPE trials (sweep.method tpe) from the earlier rounds' results.",
    inputs={
        "rounds": "repeatable: results/sweep/round<j>/asked.json of every earlier round",
        "summaries": "repeatable: summary.json of every earlier round's trial",
        "histories": "repeatable: history.csv of every earlier round's trial (the intermediate values of pruned trials)",
    },
    outputs={"asked": "JSON: round, sampler seed and the trials asked: index, variant name, sampler params, overrides"},
    run=run,
    params_help="sweep.* (parameters as a checked space), round, count",
    optional=frozenset({"rounds", "summaries", "histories"}),
    repeatable=frozenset({"rounds", "summaries", "histories"}),
)

if __name__ == "__main__":
    raise SystemExit(main(STAGE))
