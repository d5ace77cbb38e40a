"""report: one self-contained HTML file (inline CSS and SVG, no network) that tells the whole run."""

from __future__ import annotations

from tunepipe.stages.harness import Stage, StageContext, main


def run(ctx: StageContext) -> None:
    from pathlib import Path

    from tunepipe.report import build_report, load_inputs
    from tunepipe.report.provenance import collect
    from tunepipe.runs import earlier_runs, read_predictions

    # predictions.csv is read as text (its ids must not become numbers): only for the paired test against the last run.
    inputs = load_inputs({**{k: v for k, v in ctx.inputs.items() if k != "predictions"},
                          **{key: ctx.many.get(key, []) for key in ("timings", "skipped")}})
    if "explanations" in ctx.inputs:  # its heat maps are files beside it
        inputs["explanations_dir"] = ctx.inputs["explanations"].parent
    current_predictions = read_predictions(ctx.inputs["predictions"]) if "predictions" in ctx.inputs else None
    # Earlier runs come from git and the local DVC cache, like the provenance's commit: read at run time.
    evaluate = ctx.params.get("evaluate", {})
    earlier = earlier_runs(Path.cwd(), current=inputs.get("metrics"), current_params=ctx.params, current_predictions=current_predictions,
                           alpha=evaluate.get("alpha", 0.05), resamples=evaluate.get("bootstrap_resamples", 1000), seed=ctx.params.get("seed", 0))
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
        "train_steps": "optional: results/train/steps.csv (every optimizer step's loss and learning rates)",
        "train": "results/train/summary.json (device, precision, epochs, wall time)",
        "baseline": "results/baseline/metrics.json (which baseline was fitted: its `model` name)",
        "metrics": "results/evaluate/metrics.json (test metrics, fine-tuned and baseline)",
        "confusion": "optional: results/evaluate/confusion.json (single_label: labels and confusion matrix)",
        "details": "results/evaluate/details.json (both models' per-label scores, curves and calibration; or per-label scores; or error by range and points)",
        "worst_errors": "results/evaluate/worst_errors.json (the most confident wrong predictions, or the largest errors)",
        "decision": "optional: results/evaluate/decision.json (the task; multi_label: each label's threshold)",
        "slices": "optional: results/evaluate/slices.json (metrics per slice, the worst slice)",
        "comparison": "optional: results/evaluate/comparison.json (the paired test of the fine-tuned model against the baseline)",
        "predictions": "optional: results/evaluate/predictions.csv (this run's test predictions, paired with the last recorded run's)",
        "explanations": "optional: results/explain/attributions.json (Integrated Gradients attributions; heat maps beside it)",
        "robustness_metrics": "optional: results/robustness/metrics.json (clean, worst and mean accuracy under perturbations; attack results)",
        "robustness_perturbations": "optional: results/robustness/perturbations.csv (accuracy, drop, flip rate per perturbation and severity)",
        "robustness_attacks": "optional: results/robustness/attacks.csv (accuracy and success rate per attack)",
        "robustness_examples": "optional: results/robustness/examples.json (flipped predictions, or why the rule was skipped)",
        "levels": "results/prune/levels.json (every pruning level and the selected one's name)",
        "parity": "results/export/parity.json (ONNX parity with export's verdict and tolerance, latency)",
        "variants": "results/export/variants.json (dense fp32, pruned fp32, INT8: size, accuracy, latency)",
        "selection": "optional: results/select/selection.json (sweep/CV variants, scores and winner)",
        "ensemble": "optional: results/ensemble/summary.json (the top-k variants' ensemble against the winner)",
        "timings": "optional, repeatable: results/benchmarks/<rule>.tsv, once per rule (Snakemake's `benchmark:` files)",
        "skipped": "optional, repeatable: results/<step>/skipped.json of each optional step the params left out (why it did not run)",
    },
    outputs={"html": "results/report.html"},
    run=run,
    params_help="report.title     page title\n"
    "report.examples  examples shown per cleaning reason, for augmentation and of the most confident errors\n"
    "(every params section is printed in the provenance section)",
    optional=frozenset({"selection", "ensemble", "timings", "skipped", "confusion", "decision", "slices", "train_steps", "comparison", "predictions", "explanations",
                        "robustness_metrics", "robustness_perturbations", "robustness_attacks", "robustness_examples"}),
    repeatable=frozenset({"timings", "skipped"}),
)


if __name__ == "__main__":
    raise SystemExit(main(STAGE))
