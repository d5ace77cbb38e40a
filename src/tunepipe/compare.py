"""`tunepipe compare REV [REV]`: is one recorded run really better than another, on the same test rows?

Each side is a git revision whose dvc.lock records a run (its results/evaluate/predictions.csv is read from the
local DVC cache through the lock's md5s, as the report's history does), or the working tree's results when
the second revision is left out. The two runs are paired only when their test rows are the same (ids and
labels) and of the same task; then the task's paired test (McNemar's for one label per row, Wilcoxon's signed-rank
on per-row errors for label sets and numbers) and the paired bootstrap intervals of the task's metrics say whether B
is better than A, worse, or not significantly different (tunepipe.trust.significance). Otherwise it says how the rows
differ and prints each run's first metric (accuracy), unpaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunepipe.errors import TunepipeError
from tunepipe.runs import PREDICTIONS_PATH, compare_predictions, read_predictions, recorded_predictions
from tunepipe.trust.significance import ALPHA, NO_DIFFERENCE, PAIRED_TESTS, sentence
from tunepipe.vcs import LOCK_FILE, cache_dir, git, read_lock

WORKING_TREE = "working tree"
#: How `describe` names a metric, and the metrics it prints as percentages (shares; the others are errors or R2, as numbers).
LABELS = {"accuracy": "accuracy", "f1_macro": "macro F1", "f1_micro": "micro F1", "mae": "MAE", "rmse": "RMSE", "r2": "R2"}
SHARES = frozenset({"accuracy", "f1_macro", "f1_micro"})


class CompareError(TunepipeError):
    """A side cannot be read: an unknown revision, no recorded run, predictions not in the cache."""


@dataclass(frozen=True)
class Side:
    name: str
    rows: list[dict[str, str]]


def load_side(root: Path, rev: str | None) -> Side:
    """The test predictions of `rev` (from its dvc.lock and the local DVC cache), or of the working tree when None."""
    if rev is None:
        path = root / PREDICTIONS_PATH
        if not path.is_file():
            raise CompareError(f"{path} does not exist: run the pipeline first, or name a second revision.")
        return Side(WORKING_TREE, read_predictions(path))
    commit = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root)
    if not commit:
        raise CompareError(f"{rev!r} is not a git revision of {root} (a branch, tag, sha, HEAD~1...).")
    commit = commit.strip()
    text = git(["show", f"{commit}:./{LOCK_FILE}"], root)
    if not text:
        raise CompareError(f"{rev} ({commit[:7]}) has no {LOCK_FILE}: it records no run (commit dvc.lock after `dvc repro`).")
    rows, reason = recorded_predictions(read_lock(text), cache_dir(root))
    if rows is None:
        raise CompareError(f"{rev} ({commit[:7]}): {reason}.")
    return Side(f"{rev} ({commit[:7]})" if not commit.startswith(rev) else commit[:7], rows)


def compare_revisions(root: Path | str, rev_a: str, rev_b: str | None = None, *, alpha: float = ALPHA, resamples: int = 1000,
                      seed: int = 0) -> dict[str, Any]:
    """B (`rev_b`, or the working tree) against A (`rev_a`): the paired comparison, or why the two cannot be paired."""
    root = Path(root).resolve()
    if git(["rev-parse", "--is-inside-work-tree"], root) is None:
        raise CompareError(f"{root} is not a git repository (or git is not installed); `tunepipe compare` reads runs from git and DVC.")
    a, b = load_side(root, rev_a), load_side(root, rev_b)
    tested = compare_predictions(b.rows, a.rows, resamples=resamples, seed=seed, alpha=alpha)  # B first: its verdict is B's
    result: dict[str, Any] = {"a": a.name, "b": b.name, "paired": tested["paired"], "alpha": alpha, "sentence": sentence(tested, f"B ({b.name})", f"A ({a.name})")}
    if not tested["paired"]:
        return {**result, "reason": tested["reason"], "unpaired": {"a": tested["b"], "b": tested["a"]}}
    metrics = [key[:-2] for key in tested if key.endswith("_a")]
    test = next(name for name in PAIRED_TESTS if name in tested)
    return {**result, "rows": tested["rows"], "verdict": tested["verdict"],
            **{metric: {"a": tested[f"{metric}_b"], "b": tested[f"{metric}_a"]} for metric in metrics},
            # mcnemar's b: rows only B gets right, c: rows only A gets right; wilcoxon's mean_difference: B's errors - A's;
            # bootstrap differences are B - A
            test: tested[test], "bootstrap": tested["bootstrap"]}


def describe(result: dict[str, Any]) -> str:
    """The comparison as the lines `tunepipe compare` prints."""
    a, b = result["a"], result["b"]
    lines = [f"A: {a}", f"B: {b}"]
    if not result["paired"]:
        unpaired = result["unpaired"]
        lines.append(f"not paired: {result['reason']}.")
        metric = next((key for key in unpaired["a"] if key != "rows"), None)
        if metric is not None:
            lines.append(f"unpaired {LABELS.get(metric, metric)} (not a test): A {_shown(metric, unpaired['a'][metric])} on {unpaired['a']['rows']} rows, "
                         f"B {_shown(metric, unpaired['b'][metric])} on {unpaired['b']['rows']} rows")
        return "\n".join(lines) + "\n"
    boot = result["bootstrap"]
    level = round(boot["level"] * 100)
    lines.append(f"the same {result['rows']} test rows: paired")
    for metric in (key[: -len("_diff")] for key in boot if key.endswith("_diff")):
        diff, (low, high) = boot[f"{metric}_diff"], boot[f"{metric}_diff_ci"]
        lines.append(f"{LABELS.get(metric, metric)}  A {_shown(metric, result[metric]['a'])}  B {_shown(metric, result[metric]['b'])}  "
                     f"B - A {_change(metric, diff)} ({level}% CI {_change(metric, low)} to {_change(metric, high)}, paired bootstrap)")
    if "mcnemar" in result:
        test = result["mcnemar"]
        lines.append(f"McNemar's test ({test['method']}): {test['b']} rows only B gets right, {test['c']} only A; p = {test['p_value']:.4g}")
    else:
        test = result["wilcoxon"]
        lines.append(f"Wilcoxon's signed-rank test on per-row errors: {test['differing']} rows with different errors, mean B - A "
                     f"{test['mean_difference']:+.4g}; p = {test['p_value']:.4g}")
    lines.append(f"verdict at alpha {result['alpha']:g}: " + (f"B is {result['verdict']} than A" if result["verdict"] != NO_DIFFERENCE else NO_DIFFERENCE))
    return "\n".join(lines) + "\n"


def _shown(metric: str, value: float | None) -> str:
    return _pct(value) if metric in SHARES or value is None else f"{value:.4g}"


def _change(metric: str, value: float) -> str:
    return _pts(value) if metric in SHARES else f"{value:+.4g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pts(value: float) -> str:
    return f"{value * 100:+.1f} pts"


__all__ = ["CompareError", "LABELS", "SHARES", "WORKING_TREE", "compare_revisions", "describe", "load_side"]


COMPARE_HELP = """Compare the test predictions of two recorded runs, row by row.

A is REV; B is the second REV, or the working tree's results/evaluate/predictions.csv when it is left out.
Each revision's predictions are read from the local DVC cache through its dvc.lock (`dvc fetch` brings a
run that is only on the remote). When both runs scored the same test rows (same ids and labels), McNemar's
test (exact binomial below 25 discordant rows, chi-square with continuity correction otherwise; for label sets
and numbers Wilcoxon's signed-rank test on per-row errors) and a paired bootstrap of the metric differences
(accuracy and macro F1; micro and macro F1; MAE, RMSE and R2) say whether B is better than A, worse, or not
significantly different at --alpha. When the rows differ (another split, other data), it says so and prints
each run's first metric unpaired.

exit status: 0 compared (paired or not), 2 a side cannot be read (the message says why).

examples:
  tunepipe compare HEAD~1            # the last commit's run against the results in the working tree
  tunepipe compare v1.0 v1.1 --json
"""


def _command(args) -> int:
    import json
    import sys

    if not 0 < args.alpha < 1 or args.resamples < 1:
        print("error: --alpha must be between 0 and 1 and --resamples at least 1", file=sys.stderr)
        return 2
    try:
        result = compare_revisions(args.repo, args.rev_a, args.rev_b, alpha=args.alpha, resamples=args.resamples, seed=args.seed)
    except TunepipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(result, indent=2) + "\n" if args.json else describe(result))
    return 0


def add_command(sub) -> None:
    """`tunepipe compare` on the CLI's subcommands."""
    import argparse

    parser = sub.add_parser("compare", help="paired significance test of two recorded runs' test predictions (McNemar, paired bootstrap)",
                            description=COMPARE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev_a", metavar="REV", help="run A: a git revision whose dvc.lock records a run")
    parser.add_argument("rev_b", metavar="REV", nargs="?", default=None, help="run B (default: the working tree's results)")
    parser.add_argument("--alpha", type=float, default=ALPHA, help=f"significance level of the verdict (default {ALPHA})")
    parser.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--repo", type=Path, default=Path("."), metavar="DIR", help="the project checkout (default: the current folder)")
    parser.set_defaults(func=_command)
