"""report: one self-contained HTML file (inline CSS and SVG, no network) that tells the whole run."""

from __future__ import annotations

from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from pathlib import Path

    from tunepipe.report import history
    from tunepipe.report.build import build_report, load_inputs
    from tunepipe.report.provenance import collect

    inputs = load_inputs({**ctx.inputs, "timings": ctx.many.get("timings", [])})
    # Earlier runs come from git and the local DVC cache, like the provenance's commit: read at run time.
    earlier = history.collect(Path.cwd(), current=inputs.get("metrics"), current_params=ctx.params)
    ctx.log.info("history: %s", f"{len(earlier['entries'])} earlier run(s)" if earlier["available"] else earlier["reason"])
    html = build_report(ctx.params, inputs, provenance=collect(), history=earlier)
    ctx.outputs["html"].write_text(html, encoding="utf-8")
    ctx.log.info("wrote report (%d kB)", len(html.encode("utf-8")) // 1024)


STAGE = Stage(
    name="report",
    summary="Render the run report: one self-contained HTML file with summary, data, training, evaluation, "
    "pruning, export, history (earlier commits' metrics, from git and the DVC cache) and provenance sections.",
    inputs={
        "prepare": "results/prepare/summary.json (source rows and labels)",
        "clean": "results/clean/report.json (removals per reason, examples, label counts)",
        "split": "results/split/summary.json (rows per split and label)",
        "augment": "results/augment/summary.json (augmented rows and examples)",
        "history": "results/train/history.csv (per-epoch losses and validation metrics)",
        "train": "results/train/summary.json (device, precision, epochs, wall time)",
        "metrics": "results/evaluate/metrics.json (test metrics, fine-tuned and baseline)",
        "confusion": "results/evaluate/confusion.json (labels and confusion matrix)",
        "details": "results/evaluate/details.json (per-label scores, curves and calibration of both models)",
        "worst_errors": "results/evaluate/worst_errors.json (the most confident wrong predictions)",
        "prune": "results/prune/levels.json (sparsity levels and the selected one)",
        "export": "results/export/parity.json (ONNX parity and latency)",
        "variants": "results/export/variants.json (dense fp32, pruned fp32, INT8: size, accuracy, latency)",
        "selection": "optional: results/select/selection.json (sweep/CV variants, scores and winner)",
        "timings": "optional, repeatable: results/benchmarks/<rule>.tsv, once per rule (Snakemake's `benchmark:` files)",
    },
    outputs={"html": "results/report.html"},
    run=run,
    params_help="report.title     page title\n"
    "report.examples  examples shown per cleaning reason and for augmentation\n"
    "(all sections are shown in the provenance section; export.max_abs_logit_diff sets the parity verdict)",
    optional=frozenset({"selection", "timings"}),
    repeatable=frozenset({"timings"}),
)


if __name__ == "__main__":
    raise SystemExit(main(STAGE))
