"""`tunepipe compare REV [REV]`: is one recorded run really better than another, on the same test rows?

Each side is a git revision whose dvc.lock records a run (its results/evaluate/predictions.csv is read from the
local DVC cache through the lock's md5s, as the report's history does), or the working tree's results when
the second revision is left out. The two runs are paired only when their test rows are the same (ids and
labels); then McNemar's test and the paired bootstrap intervals say whether B is better than A, worse, or not
significantly different (tunepipe.trust.significance). Otherwise it says how the rows differ and prints each
run's accuracy, unpaired.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunepipe.errors import TunepipeError
from tunepipe.runs import PREDICTIONS_PATH, read_predictions, recorded_predictions
from tunepipe.trust.significance import ALPHA, NO_DIFFERENCE, compare_tables, sentence
from tunepipe.vcs import LOCK_FILE, cache_dir, git, read_lock

WORKING_TREE = "working tree"


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
    tested = compare_tables(b.rows, a.rows, resamples=resamples, seed=seed, alpha=alpha)  # B first: its verdict is B's
    result: dict[str, Any] = {"a": a.name, "b": b.name, "paired": tested["paired"], "alpha": alpha, "sentence": sentence(tested, f"B ({b.name})", f"A ({a.name})")}
    if not tested["paired"]:
        return {**result, "reason": tested["reason"], "unpaired": {"a": tested["b"], "b": tested["a"]}}
    return {**result, "rows": tested["rows"], "verdict": tested["verdict"],
            "accuracy": {"a": tested["accuracy_b"], "b": tested["accuracy_a"]}, "f1_macro": {"a": tested["f1_macro_b"], "b": tested["f1_macro_a"]},
            # mcnemar's b: rows only B gets right, c: rows only A gets right; bootstrap differences are B - A
            "mcnemar": tested["mcnemar"], "bootstrap": tested["bootstrap"]}


def describe(result: dict[str, Any]) -> str:
    """The comparison as the lines `tunepipe compare` prints."""
    a, b = result["a"], result["b"]
    lines = [f"A: {a}", f"B: {b}"]
    if not result["paired"]:
        unpaired = result["unpaired"]
        lines += [f"not paired: {result['reason']}.",
                  f"unpaired accuracy (not a test): A {_pct(unpaired['a']['accuracy'])} on {unpaired['a']['rows']} rows, "
                  f"B {_pct(unpaired['b']['accuracy'])} on {unpaired['b']['rows']} rows"]
        return "\n".join(lines) + "\n"
    test, boot = result["mcnemar"], result["bootstrap"]
    level = round(boot["level"] * 100)
    lines += [
        f"the same {result['rows']} test rows: paired",
        f"accuracy  A {_pct(result['accuracy']['a'])}  B {_pct(result['accuracy']['b'])}  B - A {_pts(boot['accuracy_diff'])} "
        f"({level}% CI {_pts(boot['accuracy_diff_ci'][0])} to {_pts(boot['accuracy_diff_ci'][1])}, paired bootstrap)",
        f"macro F1  A {_pct(result['f1_macro']['a'])}  B {_pct(result['f1_macro']['b'])}  B - A {_pts(boot['f1_macro_diff'])} "
        f"({level}% CI {_pts(boot['f1_macro_diff_ci'][0])} to {_pts(boot['f1_macro_diff_ci'][1])}, paired bootstrap)",
        f"McNemar's test ({test['method']}): {test['b']} rows only B gets right, {test['c']} only A; p = {test['p_value']:.4g}",
        f"verdict at alpha {result['alpha']:g}: " + (f"B is {result['verdict']} than A" if result["verdict"] != NO_DIFFERENCE else NO_DIFFERENCE),
    ]
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _pts(value: float) -> str:
    return f"{value * 100:+.1f} pts"


__all__ = ["CompareError", "WORKING_TREE", "compare_revisions", "describe", "load_side"]


COMPARE_HELP = """Compare the test predictions of two recorded runs, row by row.

A is REV; B is the second REV, or the working tree's results/evaluate/predictions.csv when it is left out.
Each revision's predictions are read from the local DVC cache through its dvc.lock (`dvc fetch` brings a
run that is only on the remote). When both runs scored the same test rows (same ids and labels), McNemar's
test (exact binomial below 25 discordant rows, chi-square with continuity correction otherwise) and a
paired bootstrap of the accuracy and macro-F1 differences say whether B is better than A, worse, or not
significantly different at --alpha. When the rows differ (another split, other data), it says so and prints
each run's accuracy unpaired.

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
