"""skip: the trace a left-out optional step leaves in its results folder (tunepipe.steps decides which and why).

Writes `results/<step>/skipped.json` (SKIP_MARKER) with the reason, and removes what an earlier run of the step left in that
folder, so the folder (a DVC out) never pairs an old result with this run. A step that runs removes the marker
again (tunepipe.stages.harness).
"""

from __future__ import annotations

from tunepipe.io import remove_path, write_json
from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    step, reason = ctx.params["step"], ctx.params["reason"]
    marker = ctx.outputs["marker"]
    stale = sorted(path for path in ctx.final["marker"].parent.iterdir() if path != marker)
    for path in stale:
        remove_path(path)
    write_json(marker, {"step": step, "skipped": True, "reason": reason})
    ctx.log.info("%s skipped: %s%s", step, reason, f" (removed an earlier run's {', '.join(p.name for p in stale)})" if stale else "")


STAGE = Stage(
    name="skip",
    summary="Record that an optional step does not run in this configuration, and why (results/<step>/skipped.json).",
    inputs={},
    outputs={"marker": "JSON: step, skipped (true), reason"},
    run=run,
    params_help="step    the step left out\nreason  why (tunepipe.steps.skipped_steps)",
)


if __name__ == "__main__":
    raise SystemExit(main(STAGE))
