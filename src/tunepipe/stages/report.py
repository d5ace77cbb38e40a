"""report: one self-contained HTML file (inline CSS and SVG, no network) that tells the whole run."""

from __future__ import annotations

from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from pathlib import Path

    from tunepipe.report import build_report, load_inputs
    from tunepipe.report.provenance import collect
    from tunepipe.runs import earlier_runs

    inputs = load_inputs({**ctx.inputs, "timings": ctx.many.get("timings", [])})
    # Earlier runs come from git and the local DVC cache, like the provenance's commit: read at run time.
    earlier = earlier_runs(Path.cwd(), current=inputs.get("metrics"), current_params=ctx.params)
    ctx.log.info("earlier runs: %s", f"{len(earlier['entries'])} recorded" if earlier["available"] else earlier["reason"])
    html = build_report(ctx.params, inputs, provenance=collect(), earlier_runs=earlier)
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
        "train_history": "results/train/history.csv (per-epoch losses and validation metrics)",
        "train": "results/train/summary.json (device, precision, epochs, wall time)",
        "baseline": "results/baseline/metrics.json (which baseline was fitted: its `model` name)",
        "metrics": "results/evaluate/metrics.json (test metrics, fine-tuned and baseline)",
        "confusion": "results/evaluate/confusion.json (labels and confusion matrix)",
        "details": "results/evaluate/details.json (per-label scores, curves and calibration of both models)",
        "worst_errors": "results/evaluate/worst_errors.json (the most confident wrong predictions)",
        "levels": "results/prune/levels.json (every pruning level and the selected one's name)",
        "parity": "results/export/parity.json (ONNX parity with export's verdict and tolerance, latency)",
        "variants": "results/export/variants.json (dense fp32, pruned fp32, INT8: size, accuracy, latency)",
        "selection": "optional: results/select/selection.json (sweep/CV variants, scores and winner)",
        "timings": "optional, repeatable: results/benchmarks/<rule>.tsv, once per rule (Snakemake's `benchmark:` files)",
    },
    outputs={"html": "results/report.html"},
    run=run,
    params_help="report.title     page title\n"
    "report.examples  examples shown per cleaning reason, for augmentation and of the most confident errors\n"
    "(every params section is printed in the provenance section)",
    optional=frozenset({"selection", "timings"}),
    repeatable=frozenset({"timings"}),
)


if __name__ == "__main__":
    raise SystemExit(main(STAGE))
