"""After a successful `snakemake ... results/report.html`, record the run as `dvc commit` does (dvc.lock + cache).

So `git add dvc.lock && git commit` alone makes a run that Snakemake made reproducible (`tunepipe reproduce`)
and registrable (`tunepipe registry register`), as if it had been run by `dvc repro`. Called from the
Snakefile's `onsuccess:`; it records only a run that stands for the DVC stage as a whole:

- not when DVC runs Snakemake (`dvc repro`, `dvc exp run`: DVC holds its lock and records the run itself;
  DVC sets `DVC_STAGE` for every stage command);
- not when `TUNEPIPE_RECORD_RUN=0` (the off switch: an environment variable, so that no rule goes stale);
- not in a dry run or `--touch` (Snakemake calls no `onsuccess` in a dry run; a touch is not a run);
- not outside a DVC project (no `dvc.yaml` with the `pipeline` stage here, or no `.dvc/`): nothing said;
- not when the run's params are not params.yaml's (`--config`/`--configfile`): dvc.lock records params.yaml,
  so it would claim params the outputs were not made with;
- not on a partial target (`snakemake results/train/best.ckpt`): every out of the stage must have been built
  or checked by one of the run's jobs, or the lock would pair new outputs with stale ones.

A failure to record is one line (with the command that records it by hand); it never fails the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tunepipe.vcs import PARAMS_FILE

STAGE = "pipeline"
DVC_FILE = "dvc.yaml"
OFF_SWITCH = "TUNEPIPE_RECORD_RUN"
DVC_STAGE_ENV = "DVC_STAGE"  # set by DVC for every stage command (dvc/stage/run.py), `dvc exp run` included
SNAKEMAKE_RECORDS = ".snakemake/metadata"  # written by Snakemake itself, not by a job
PREFIX = "tunepipe:"


def read_stage(root: Path, stage: str = STAGE) -> tuple[str, list[str]] | None:
    """The command and out paths of `stage` in root/dvc.yaml; None when there is no such file or stage."""
    try:
        dvc_yaml = yaml.safe_load((root / DVC_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    entry = ((dvc_yaml or {}).get("stages") or {}).get(stage) if isinstance(dvc_yaml, dict) else None
    if not isinstance(entry, dict):
        return None
    outs = []
    for out in entry.get("outs") or []:
        path = next(iter(out)) if isinstance(out, dict) else out
        outs.append(os.path.normpath(str(path)))
    return str(entry.get("cmd") or ""), outs


def uncovered_outs(outs: Iterable[str], built: Iterable[str]) -> list[str]:
    """The outs that no built file is, or lies inside (Snakemake's own records excepted)."""
    files = {os.path.normpath(str(path)) for path in built}
    return [out for out in outs if out != SNAKEMAKE_RECORDS
            and not any(path == out or path.startswith(out + os.sep) for path in files)]


def job_files(jobs: Iterable[Any]) -> list[str]:
    """Every file the DAG's jobs write (outputs, logs, benchmark files): what the run built or found up to date."""
    files: list[str] = []
    for job in jobs:
        files.extend(str(path) for path in job.output)
        files.extend(str(path) for path in job.log)
        if getattr(job, "benchmark", None):
            files.append(str(job.benchmark))
    return files


def differing_sections(config: Mapping[str, Any], root: Path) -> list[str]:
    """Top-level params sections where the run's config differs from params.yaml's (both validated)."""
    from tunepipe.sweep import validate_run_params

    recorded = validate_run_params(yaml.safe_load((root / PARAMS_FILE).read_text(encoding="utf-8")) or {})
    used = validate_run_params(dict(config))
    return sorted(key for key in set(recorded) | set(used) if recorded.get(key) != used.get(key))


def in_dvc_project(root: Path) -> bool:
    return any((folder / ".dvc").is_dir() for folder in (root, *root.parents))


def why_not(root: Path, *, config: Mapping[str, Any], built: Iterable[str], dryrun: bool = False,
            environ: Mapping[str, str] = os.environ) -> tuple[str, bool] | None:
    """None when the run is to be recorded; else (why not, whether to say so)."""
    if environ.get(DVC_STAGE_ENV):
        return f"run by DVC (stage {environ[DVC_STAGE_ENV]}), which records it itself", False
    if environ.get(OFF_SWITCH, "").strip().lower() in ("0", "false", "no", "off"):
        return f"{OFF_SWITCH}={environ[OFF_SWITCH]}; record it with `dvc commit {STAGE}`", True
    if dryrun:
        return "a dry run or --touch", False
    stage = read_stage(root)
    if stage is None or not in_dvc_project(root):
        return f"not a DVC project (no {DVC_FILE} with a `{STAGE}` stage and .dvc/ here)", False
    sections = differing_sections(config, root)
    if sections:
        return (f"the run's params differ from {PARAMS_FILE} in {', '.join(sections)} (--config/--configfile), and "
                f"dvc.lock records {PARAMS_FILE}'s; put them in {PARAMS_FILE} and run again, or use `dvc exp run -S`"), True
    cmd, outs = stage
    missing = uncovered_outs(outs, built)
    if missing:
        return (f"a partial run (no job of it wrote to {', '.join(missing)}); run the stage's whole pipeline "
                f"(`{cmd}`) to record it"), True
    return None


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # beside Snakemake's own log lines


def record_run(root: Path | str | None = None, *, config: Mapping[str, Any], jobs: Iterable[Any] = (),
               built: Iterable[str] | None = None, dryrun: bool = False, environ: Mapping[str, str] = os.environ,
               say: Callable[[str], None] = _stderr, timeout: float = 3600) -> bool:
    """`dvc commit --force pipeline` when this run stands for the stage (see the module docstring); True if recorded.

    Never raises: a failure is one line saying how to record the run by hand.
    """
    try:
        root = Path(root or Path.cwd())
        skip = why_not(root, config=config, built=job_files(jobs) if built is None else built, dryrun=dryrun, environ=environ)
        if skip is not None:
            reason, loud = skip
            if loud:
                say(f"{PREFIX} the run is not recorded in dvc.lock: {reason}")
            return False
        env = dict(environ, DVC_NO_ANALYTICS="1")
        done = subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", STAGE], cwd=root, env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            say(f"{PREFIX} could not record the run in dvc.lock ({lines[-1] if lines else f'dvc exited {done.returncode}'}); "
                f"record it with `dvc commit {STAGE}`")
            return False
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded; recording it is a bonus that must not fail it
        say(f"{PREFIX} could not record the run in dvc.lock ({type(exc).__name__}: {exc}); record it with `dvc commit {STAGE}`")
        return False
    say(f"{PREFIX} recorded the run in dvc.lock and the DVC cache: `git add dvc.lock && git commit` versions it, "
        f"`dvc push` shares it ({OFF_SWITCH}=0 turns this off)")
    return True


__all__ = ["OFF_SWITCH", "STAGE", "differing_sections", "job_files", "read_stage", "record_run", "uncovered_outs", "why_not"]
