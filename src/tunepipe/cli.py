"""The `tunepipe` command: helpers around the Snakemake workflow (the pipeline itself runs with `snakemake`)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunepipe.stages.harness import Stage


def _params(args: argparse.Namespace) -> int:
    from tunepipe.config import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0


def _validate(args: argparse.Namespace) -> int:
    import yaml

    from tunepipe.errors import ParamsError
    from tunepipe.sweep import validate_run_params

    merged: dict = {}
    for path in args.files:
        with open(path, encoding="utf-8") as handle:
            _merge(merged, yaml.safe_load(handle) or {})
    try:
        validate_run_params(merged, source=" + ".join(map(str, args.files)))
    except ParamsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ok: {' + '.join(map(str, args.files))} is valid")
    return 0


def _merge(base: dict, update: dict) -> None:
    """Like Snakemake's --configfile: nested sections are merged key by key."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def stage_modules() -> dict[str, Stage]:
    """name -> STAGE of every module in tunepipe.stages that declares one (the harness does not), by name."""
    import tunepipe.stages

    found = {}
    for module in sorted(pkgutil.iter_modules(tunepipe.stages.__path__), key=lambda info: info.name):
        stage = getattr(importlib.import_module(f"tunepipe.stages.{module.name}"), "STAGE", None)
        if stage is not None:
            found[module.name] = stage
    return found


def _stages(args: argparse.Namespace) -> int:
    stages = stage_modules()
    width = max(map(len, stages), default=0) + 1
    for name, stage in stages.items():
        print(f"{name:<{width}} {stage.summary}")
    print("\nEach runs alone as `python -m tunepipe.stages.<name> --help`.")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from tunepipe.errors import TunepipeError
    from tunepipe.reproduce import FAILED, reproduce

    try:
        return reproduce(
            args.rev, repo=args.repo, from_checkpoints=args.from_checkpoints, workdir=args.workdir, keep=args.keep,
            remote=args.remote, tolerance=args.tolerance, cores=args.cores, cpu=args.cpu, verbose=args.verbose,
            say=lambda line: print(line, flush=True),
        )
    except TunepipeError as exc:  # ReproduceError, or a git command that had to succeed
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _resume(args: argparse.Namespace) -> int:
    from tunepipe.resume import resume

    return resume(args.snakemake_args, folder=Path.cwd(), say=lambda line: print(line, flush=True))


RESUME_HELP = """Continue a pipeline run whose Snakemake was killed (kill -9, a power loss, a closed terminal).

Run it in the project folder with the arguments of the command that was killed. It checks that no Snakemake
and no pipeline stage of the folder is still running (a job can outlive a killed Snakemake), then runs
`snakemake --unlock ARGS` (the killed run's lock is stale) and `snakemake ARGS`. Jobs that did not
finish rerun (the default profile's rerun-incomplete), and a killed training resumes from its last
checkpoint, results/train/checkpoints/last.ckpt (written at every epoch end, and mid-epoch every
train.checkpoint_minutes), to the same result as an uninterrupted run.

On a SLURM cluster, check first that the killed run left no jobs: squeue --me (they are not on this
machine, so this command cannot see them).

exit status: Snakemake's; 2 when a Snakemake or stage of this folder is still running (nothing is touched).

examples:
  tunepipe resume --cores 8 results/report.html
  tunepipe resume --profile workflow/profiles/slurm results/report.html
"""


REPRODUCE_HELP = """Re-run the experiment committed at REV and check that it gives the same metrics.

What it does, in a separate git worktree (your checkout, committed or not, is never touched):
  1. checks out REV (its code, params.yaml, dvc.yaml and dvc.lock);
  2. restores REV's raw data (results/prepare) and Snakemake's records through DVC: from the local
     cache, else from the DVC remote (`dvc push` from the machine that ran it puts them there);
     with --from-checkpoints, restores everything up to the trained model instead;
  3. runs REV's pipeline command (from its dvc.lock), so Snakemake reruns every step after the
     restored ones (the default params take about 5 minutes on a 2-core CPU; progress is shown);
  4. compares the new results/evaluate/metrics.json with the one REV recorded, prints the
     difference, and says whether the model files are byte-identical.

CPU training is seeded and deterministic, so on a CPU the metrics must be exactly equal. If either run
trained on a GPU, each metric may differ by up to --tolerance (default 0.01); --cpu hides GPUs to
reproduce a CPU run exactly on a GPU machine.

Uncommitted changes in your checkout are ignored (noted), because REV is what is reproduced; commit
them first if you mean to reproduce them.

exit status: 0 the metrics are equal, 1 they differ (worktree kept to inspect), 2 REV cannot be
reproduced (never ran, data unreachable, pipeline failed; the message says why).

examples:
  tunepipe reproduce HEAD~3
  tunepipe reproduce v1.2 --from-checkpoints          # evaluation onwards only: minutes, not hours
  tunepipe reproduce 4f2c1ab --remote s3store --keep  # keep the worktree to look at its report
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunepipe",
        description="Helpers for the tunepipe workflow. Run the pipeline itself with: snakemake --cores all results/report.html",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("params", help="print the parameter reference (Markdown), generated from the schema").set_defaults(func=_params)
    validate = sub.add_parser("validate", help="check params files (later files override earlier ones, like --configfile)")
    validate.add_argument("files", nargs="*", type=Path, default=[Path("params.yaml")], help="default: params.yaml")
    validate.set_defaults(func=_validate)
    sub.add_parser("stages", help="list the pipeline's stages").set_defaults(func=_stages)
    res = sub.add_parser("resume", help="continue a run whose Snakemake was killed: unlock (if nothing runs) and rerun",
                         description=RESUME_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    res.add_argument("snakemake_args", nargs=argparse.REMAINDER, metavar="SNAKEMAKE_ARGS",
                     help="the killed command's arguments, e.g. --cores 8 results/report.html")
    res.set_defaults(func=_resume)
    rep = sub.add_parser(
        "reproduce", help="re-run a committed experiment in a separate worktree and compare its metrics",
        description=REPRODUCE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep.add_argument("rev", metavar="REV", help="a git revision whose dvc.lock records a run (branch, tag, sha, HEAD~2...)")
    rep.add_argument("--from-checkpoints", action="store_true",
                     help="restore the trained model (and the data before it) instead of re-training; reruns evaluation onwards")
    rep.add_argument("--remote", metavar="NAME", help="DVC remote to pull from when the local cache lacks the data (default: the configured default)")
    rep.add_argument("--tolerance", type=float, metavar="X",
                     help="allowed absolute difference per metric (default: 0 on CPU, 0.01 when a GPU trained either run)")
    rep.add_argument("--cpu", action="store_true", help="hide GPUs (CUDA_VISIBLE_DEVICES=) so a CPU run is reproduced exactly")
    rep.add_argument("--cores", type=int, metavar="N", help="cores for Snakemake (default: what the revision's command says)")
    rep.add_argument("--workdir", type=Path, metavar="DIR", help="where to create the worktree (a new or empty folder; default: a temporary folder)")
    rep.add_argument("--keep", action="store_true", help="keep the worktree afterwards (it is always kept when the metrics differ)")
    rep.add_argument("--repo", type=Path, default=Path("."), metavar="DIR", help="the project checkout (default: the current folder)")
    rep.add_argument("-v", "--verbose", action="store_true", help="echo the pipeline's whole output, not only progress")
    rep.set_defaults(func=_reproduce)
    from tunepipe.serving.commands import add_commands as add_serving_commands

    add_serving_commands(sub)  # predict, serve
    from tunepipe.registry_cli import add_commands as add_registry_commands

    add_registry_commands(sub)  # registry register/assign/rollback/show/get
    from tunepipe.compare import add_command as add_compare_command

    add_compare_command(sub)  # compare REV [REV]
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["resume"] and not {"-h", "--help"} & set(argv[1:]):
        # Everything after `resume` is Snakemake's (argparse would take its options for ours).
        return _resume(argparse.Namespace(snakemake_args=argv[1:]))
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
