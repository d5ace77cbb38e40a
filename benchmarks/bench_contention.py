"""Every stage's wall time on a quiet machine and beside one busy process on the same cores (contention).

The real pipeline (Snakemake, every rule to results/report.html) runs in a scratch copy of this project on a small
config, first alone, then again from scratch (results/ deleted) while one competing process spins on a core (the
`yes > /dev/null` of a shared laptop or a busy node). Each rule's time is Snakemake's own `benchmark:` record
(results/benchmarks/<rule>.tsv). On 2 cores a fair share costs about 2x; the target is at most 2.5x per rule.

`--wait-policy active` runs both sides with OMP_WAIT_POLICY=ACTIVE (spinning thread pools, the behaviour
before tunepipe made them passive), to show what the setting is worth.

    python benchmarks/bench_contention.py                       # about 12 minutes on 2 cores
    python benchmarks/bench_contention.py --wait-policy active  # the spinning pools, for comparison
    python benchmarks/bench_contention.py --rows 600 --distill-steps 20 --rules train,distill
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET = 2.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores, and the cores the competitor shares (default 2)")
    parser.add_argument("--rows", type=int, default=1000, help="split.max_rows of the run (default 1000)")
    parser.add_argument("--distill-steps", type=int, default=50, help="distill.steps (default 50)")
    parser.add_argument("--wait-policy", choices=("default", "active", "passive"), default="default",
                        help="OMP_WAIT_POLICY for both runs; default: tunepipe's own (passive)")
    parser.add_argument("--rules", default="", help="comma-separated rules to time (default: every rule that ran)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch project (its path is printed)")
    return parser.parse_args(argv)


def scratch_project(root: Path, args: argparse.Namespace) -> Path:
    root.mkdir(parents=True)
    for name in ("Snakefile", "params.yaml", "dvc.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("workflow", "profiles", "envs"):
        shutil.copytree(REPO / name, root / name)
    (root / "src").symlink_to(REPO / "src")
    config = {
        "split": {"max_rows": args.rows},
        "train": {"max_epochs": 1},
        "distill": {"steps": args.distill_steps},
        "robustness": {"max_rows": 60, "attack": {"max_rows": 20}},
    }
    (root / "bench.yaml").write_text(yaml.safe_dump(config))
    return root


def run_pipeline(project: Path, args: argparse.Namespace, *extra: str) -> dict[str, float]:
    """Run to the report; each rule's wall seconds from its benchmark file."""
    env = dict(os.environ)
    if args.wait_policy != "default":
        env["OMP_WAIT_POLICY"] = args.wait_policy.upper()
    command = [str(Path(sys.executable).parent / "snakemake"), "results/report.html", "--cores", str(args.cores),
               "--configfile", "bench.yaml", "--quiet", "rules", *extra]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"the pipeline failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    seconds = {}
    for path in sorted((project / "results" / "benchmarks").glob("*.tsv")):
        with path.open() as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        seconds[path.stem] = float(row["s"])
    return seconds


def competitor() -> subprocess.Popen:
    """One process that spins on a core for as long as it lives (what `yes > /dev/null` does)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-contention-"))
    project = scratch_project(root / "project", args)
    policy = args.wait_policy if args.wait_policy != "default" else f"tunepipe's ({os.environ.get('OMP_WAIT_POLICY', 'passive').lower()})"
    print(f"{args.cores} cores, {args.rows} rows, distill.steps {args.distill_steps}, OMP wait policy: {policy}")
    try:
        started = time.perf_counter()
        quiet = run_pipeline(project, args)
        quiet_total = time.perf_counter() - started
        busy = competitor()
        try:
            # From scratch: a rerun would resume training from the first run's last.ckpt instead of training again.
            shutil.rmtree(project / "results")
            started = time.perf_counter()
            contended = run_pipeline(project, args)
            contended_total = time.perf_counter() - started
        finally:
            busy.kill()
            busy.wait()
    finally:
        if args.keep:
            print(f"scratch project: {project}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    wanted = [name for name in args.rules.split(",") if name] or sorted(quiet, key=quiet.get, reverse=True)
    print(f"\n{'rule':<22}{'quiet s':>9}{'contended s':>13}{'ratio':>8}")
    worst = 0.0
    for name in wanted:
        if name not in quiet or name not in contended:
            continue
        ratio = contended[name] / quiet[name] if quiet[name] else float("nan")
        worst = max(worst, ratio)
        print(f"{name:<22}{quiet[name]:9.1f}{contended[name]:13.1f}{ratio:8.2f}{'' if ratio <= TARGET else '   over ' + str(TARGET) + 'x'}")
    print(f"{'whole run':<22}{quiet_total:9.1f}{contended_total:13.1f}{contended_total / quiet_total:8.2f}")
    print(f"worst rule: {worst:.2f}x ({'within' if worst <= TARGET else 'over'} the {TARGET}x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
