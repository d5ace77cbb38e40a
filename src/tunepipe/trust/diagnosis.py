"""Why the fine-tuned model did not beat the baseline: the causes a run's own records show, with the params to change.

`diagnose` is called by evaluate when the paired comparison (tunepipe.trust.significance) does not find the
fine-tuned model better. Each check reads what training recorded (its summary with the data-aware facts, its
per-epoch history) and the test labels; a check fires on a stated threshold, never on a guess. The report's
summary prints the headline first, then each cause with its evidence and advice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunepipe.trust.significance import BETTER, WORSE

#: A share of truncated training texts at or above this is named as a cause.
TRUNCATED_SHARE = 0.10
#: Fewer optimizer steps than this in the whole training is "too few steps".
FEW_STEPS = 200
#: Fewer (non-augmented) training rows than this: a linear model on words is a strong baseline.
FEW_ROWS = 1000
#: The largest class this many times the smallest (in the test split) is an imbalance.
IMBALANCE_RATIO = 3.0
#: The last epoch's validation loss this much (relative) above the best one, while the training loss fell: overfitting.
OVERFIT_RISE = 0.05


def _cause(name: str, evidence: str, advice: str) -> dict[str, str]:
    return {"cause": name, "evidence": evidence, "advice": advice}


def _truncation(summary: Mapping[str, Any]) -> dict[str, str] | None:
    facts = summary.get("data_aware", {}).get("model.max_length")
    if not facts or facts.get("truncated_share", 0) < TRUNCATED_SHARE:
        return None
    longer = f"{facts['truncated_share']:.0%} of the training texts ({facts['truncated_texts']} of {facts['texts']}) are longer than " \
             f"{facts['max_length']} tokens and were cut (95th percentile {facts['p95']}, longest {facts['longest']})"
    if facts.get("auto"):
        covering = min(512, 8 * -(-facts["p95"] // 8))
        advice = (f"`model.max_length: auto` stopped at its cap (a compute budget of {facts['max_length']} tokens, or the model's limit); "
                  f"set `model.max_length` explicitly (up to the model's limit, e.g. {covering}): training gets slower about in proportion")
    else:
        advice = "raise `model.max_length`, or set it to `auto` (the 95th percentile of the token lengths)"
    return _cause("truncation", longer, advice)


def _too_few_steps(summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> dict[str, str] | None:
    epochs = summary.get("data_aware", {}).get("train.max_epochs", {})
    steps = epochs.get("steps_per_epoch")
    run = summary.get("epochs_run") or len(history)
    total = steps * run if steps else None
    still_improving = bool(history) and summary.get("best_epoch") == run and epochs.get("value") == run
    planned = epochs.get("value") or summary.get("max_epochs")
    stopped_early = isinstance(planned, int) and run < planned  # early stopping ended it: more steps were on offer
    if total is not None and total < FEW_STEPS and not stopped_early:
        return _cause("too few steps", f"training took {total} optimizer steps ({run} epoch(s) of {steps})",
                      "raise `train.min_steps` (with `train.max_epochs: auto`) or `train.max_epochs`")
    if still_improving and run >= 1:
        return _cause("still improving", f"the best validation score was at the last of the {run} epoch(s): training stopped while it was still improving",
                      "raise `train.max_epochs` (or `train.min_steps` with `max_epochs: auto`); early stopping ends it when it stops improving")
    return None


def _overfitting(history: Sequence[Mapping[str, Any]]) -> dict[str, str] | None:
    losses = [(float(row["train_loss"]), float(row["val_loss"])) for row in history if row.get("val_loss") not in (None, "")
              and row.get("train_loss") not in (None, "")]
    if len(losses) < 2:
        return None
    best_val = min(val for _, val in losses)
    (first_train, _), (last_train, last_val) = losses[0], losses[-1]
    if last_val > best_val * (1 + OVERFIT_RISE) and last_train < first_train:
        return _cause("overfitting", f"the validation loss rose to {last_val:.3f} from its best {best_val:.3f} while the training loss fell "
                      f"({first_train:.3f} to {last_train:.3f})",
                      "lower `train.encoder_lr`, raise `model.dropout` or `augment.multiplier`; the best checkpoint is kept either way")
    return None


def _imbalance(test_labels: Sequence[str]) -> dict[str, str] | None:
    counts: dict[str, int] = {}
    for label in test_labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2:
        return None
    (big, most), (small, least) = max(counts.items(), key=lambda kv: kv[1]), min(counts.items(), key=lambda kv: kv[1])
    if most < IMBALANCE_RATIO * least:
        return None
    return _cause("class imbalance", f"the classes are imbalanced: {big!r} has {most} test rows, {small!r} {least}",
                  "keep `train.monitor: val_f1_macro`; collect more rows of the small classes, or merge classes that are rarely told apart")


def _few_rows(summary: Mapping[str, Any]) -> dict[str, str] | None:
    facts = summary.get("data_aware", {}).get("model.max_length")
    rows = facts["texts"] if facts else summary.get("train_rows")
    if rows is None or rows >= FEW_ROWS:
        return None
    return _cause("few rows", f"{rows} training rows: on little data a linear model on words or pixels is hard to beat",
                  "try a sweep (`sweep.grid` over `train.encoder_lr`, `train.max_epochs`), or use the baseline")


def diagnose(versus: Mapping[str, Any], *, summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
             test_labels: Sequence[str], baseline_name: str, metric: tuple[str, str] = ("accuracy", "max")) -> dict[str, Any] | None:
    """None when the fine-tuned model is better; else the headline in words and the causes the run's records show.

    `metric` is the task's (`Task.trust_metric`): the headline quotes it, as a percentage when higher is better (a
    share: accuracy, F1), else as a number in the target's units (an error: MAE). `test_labels` are the test rows'
    labels, each label of a label set counted (`Task.trust_labels`; none for numbers).
    """
    verdict = versus.get("verdict")
    if verdict == BETTER:
        return None
    worse = verdict == WORSE
    headline = (f"The fine-tuned model is worse than the {baseline_name} baseline on the same test rows" if worse else
                f"The fine-tuned model is not significantly better than the {baseline_name} baseline on the same test rows")
    name, direction = metric
    score_a, score_b = versus.get(f"{name}_a"), versus.get(f"{name}_b")
    if score_a is not None and score_b is not None:
        shown = "{:.1%}" if direction == "max" else "{:.4g}"
        headline += f" ({name.replace('_', ' ')} {shown.format(score_a)} against {shown.format(score_b)})"
    headline += (". For this data the baseline is the better model; the exported ONNX model is the fine-tuned one."
                 if worse else ". The exported model is the fine-tuned one; the baseline would serve about as well.")
    causes = [found for found in (_truncation(summary), _too_few_steps(summary, history), _overfitting(history), _imbalance(test_labels),
                                  _few_rows(summary)) if found]
    if not causes:
        causes.append(_cause("no visible cause", "the run's records show no truncation, short training, overfitting or imbalance",
                             "try a sweep over `train.encoder_lr` and `train.max_epochs`; some data is simply served well by the baseline"))
    return {"verdict": verdict, "headline": headline, "causes": causes}


__all__ = ["diagnose"]
