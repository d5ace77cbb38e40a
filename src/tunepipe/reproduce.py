"""`tunepipe reproduce <rev>`: re-run a committed experiment and check that it gives the same metrics.

The revision is checked out into a separate git worktree, so the user's checkout (and any uncommitted
change in it) is never touched. DVC restores that revision's raw data (or, with `from_checkpoints`,
everything up to the trained model) from the local cache or the remote; the revision's own pipeline
command then reruns the rest, and the new `results/evaluate/metrics.json` is compared with the one the
revision recorded in `dvc.lock`. CPU runs are deterministic, so equal means exactly equal there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunepipe.errors import TunepipeError
from tunepipe.vcs import (LOCK_FILE, METRICS_PATH, cache_dir, cached_object, git, holding_out, lock_outs, read_lock,
                          recorded_md5, recording_stage)

#: Exit codes: 0 the metrics are equal, 1 they differ, 2 the revision could not be reproduced.
EQUAL, DIFFERENT, FAILED = 0, 1, 2
#: Allowed absolute difference per metric when either run trained on a GPU (non-deterministic kernels).
GPU_TOLERANCE = 0.01
RAW_DATA = ("results/prepare",)
#: What `from_checkpoints` restores: the data and the trained model, so evaluation onwards reruns. Each is
#: restored as the revision versions it: the whole folder, or the files its dvc.lock records inside it
#: (older revisions versioned results/train's files one by one; DVC checks out a file inside a folder too).
CHECKPOINT_OUTS = ("results/prepare", "results/clean", "results/split", "results/augment", "results/train")
METADATA = ".snakemake/metadata"
#: Snakemake's `benchmark:` files are outputs of their rules: a restored rule output without its benchmark file
#: would look incomplete and rerun. Restored with the rest when the revision versions them.
BENCHMARKS = "results/benchmarks"
TRAIN_SUMMARY = "results/train/summary.json"
#: Model files whose bytes are compared with the revision's (reported, not part of the verdict).
MODEL_FILES = ("results/train/best.ckpt", "results/prune/model.pt", "results/export/model.onnx")


class ReproduceError(TunepipeError):
    """The revision cannot be reproduced as asked (never ran, data unreachable, run failed...)."""


@dataclass
class Comparison:
    rows: list[dict[str, Any]] = field(default_factory=list)
    tolerance: float = 0.0
    device: str = "cpu"

    @property
    def equal(self) -> bool:
        return all(row["ok"] for row in self.rows)


# ------------------------------------------------------------------------------------------------ helpers


def _run(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float | None = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _tool(name: str) -> str:
    """The executable beside this interpreter (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _env(worktree: Path, *, cpu: bool) -> dict[str, str]:
    # TUNEPIPE_RECORD_RUN=0: the rerun is checked against the revision's record, never recorded over it.
    env = dict(os.environ, DVC_NO_ANALYTICS="1", TUNEPIPE_RECORD_RUN="0")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # The revision's code, not the installed (current) one: stages run as `python -m tunepipe.stages.*`.
    src = worktree / "src"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), env.get("PYTHONPATH", "")) if p)
    if cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _last_lines(text: str, n: int = 15) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-n:])


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _lock_cmd(lock: dict[str, Any]) -> str | None:
    """The command of the stage that writes the metrics (in a file out or inside the results/evaluate out)."""
    stage = recording_stage(lock, METRICS_PATH)
    cmd = stage.get("cmd") if stage else None
    return " && ".join(cmd) if isinstance(cmd, list) else cmd


def restore_targets(wanted: Sequence[str], outs: dict[str, str]) -> tuple[list[str], list[str]]:
    """(what to check out, what the lock does not version) for `wanted` paths, as the lock records them.

    A wanted path that is an out, or inside one, is restored as is; a folder the lock versions file by file
    (an older dvc.yaml) is restored as those files.
    """
    targets, missing = [], []
    for path in wanted:
        inside = [out for out in outs if out.startswith(path.rstrip("/") + "/")]
        if holding_out(outs, path) is not None:
            targets.append(path)
        elif inside:
            targets.extend(inside)
        else:
            missing.append(path)
    return targets, missing


# ------------------------------------------------------------------------------------------------- steps


@dataclass
class Revision:
    sha: str
    short: str
    subject: str
    lock: dict[str, Any]


def resolve_revision(repo: Path, rev: str) -> Revision:
    """The commit `rev` names, with the run its dvc.lock records; a clear error when it records none."""
    found = git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], repo)
    if found is None:
        raise ReproduceError(f"{rev!r} is not a commit in {repo} (see `git log --oneline -- {LOCK_FILE}` for revisions that ran)")
    sha = found.strip()
    short, subject = git(["log", "-1", "--format=%h%x1f%s", sha], repo, check=True).rstrip("\n").split("\x1f", 1)
    shown = git(["show", f"{sha}:{LOCK_FILE}"], repo)
    hint = f"Pick a revision that ran: `git log --oneline -- {LOCK_FILE}`."
    if shown is None:
        raise ReproduceError(f"{short} ({subject}) has no {LOCK_FILE}: the pipeline never ran at that revision (or its "
                             f"results were not committed), so there is nothing to reproduce. {hint}")
    lock = read_lock(shown)
    if recording_stage(lock, METRICS_PATH) is None:
        raise ReproduceError(f"{short} ({subject}): {LOCK_FILE} records no {METRICS_PATH}, so there are no metrics to "
                             f"compare with. {hint}")
    return Revision(sha=sha, short=short, subject=subject, lock=lock)


def uncommitted_changes(repo: Path) -> list[str]:
    """Tracked files with uncommitted changes in the user's checkout (untracked files do not count)."""
    status = git(["status", "--porcelain", "--untracked-files=no"], repo, check=True) or ""
    return [line[3:] for line in status.splitlines() if line.strip()]


def configure_dvc(repo: Path, worktree: Path, remote: str | None) -> tuple[Path, str | None, str | None]:
    """Point the worktree's DVC at the user's cache and at the one remote the run pulls from (as configured now).

    Sharing the cache makes restoring instant and keeps what is pulled. Only that remote is written, into the
    worktree's git-ignored `config.local`: its URL resolved (a relative local remote in `.dvc/config` is relative
    to the checkout it is in) and, for the run only, its other settings, credentials included (`forget_credentials`
    removes them before a worktree is kept). Returns (cache dir, remote name, remote url).
    """
    from dvc.config import Config

    user = Config(dvc_dir=str(repo / ".dvc"), validate=False)
    cache = cache_dir(repo)
    remotes = user.get("remote") or {}
    name = remote or (user.get("core") or {}).get("remote")
    if remote and remote not in remotes:
        raise ReproduceError(f"no DVC remote named {remote!r}; configured: {', '.join(remotes) or 'none'} (`dvc remote list`)")
    settings = {key: str(value) if key == "url" else value for key, value in (remotes.get(name) or {}).items()} if name else {}
    config = Config(dvc_dir=str(worktree / ".dvc"), validate=False)
    with config.edit("local", validate=False) as local:
        local.setdefault("cache", {})["dir"] = str(cache)
        if settings:
            local.setdefault("remote", {})[name] = settings
        if name:
            local.setdefault("core", {})["remote"] = name
    return cache, name, settings.get("url")


def forget_credentials(worktree: Path) -> None:
    """Leave only each remote's URL in the worktree's `config.local`: a worktree kept to look into keeps no secrets."""
    from dvc.config import Config

    config = Config(dvc_dir=str(worktree / ".dvc"), validate=False)
    with config.edit("local", validate=False) as local:
        for name, settings in (local.get("remote") or {}).items():
            local["remote"][name] = {key: value for key, value in settings.items() if key == "url"}


def restore(worktree: Path, targets: Sequence[str], *, env: dict[str, str], remote: str | None, url: str | None,
            cache: Path, say: Callable[[str], None]) -> str:
    """Check out `targets` from the shared cache; pull what is missing from the remote. Returns where they came from."""
    dvc = _tool("dvc")
    done = _run([dvc, "checkout", *targets], worktree, env)
    if done.returncode == 0:
        return "local cache"
    where = f"remote {remote!r} ({url})" if remote else "the default remote"
    say(f"  not all in the local cache ({cache}); pulling from {where}")
    args = [dvc, "pull", "--force", *targets] + (["--remote", remote] if remote else [])
    done = _run(args, worktree, env, timeout=None)
    if done.returncode != 0:
        raise ReproduceError(
            f"cannot restore {', '.join(targets)}: they are not in the local DVC cache ({cache}) and {where} could "
            f"not provide them:\n{_last_lines(done.stderr or done.stdout, 6)}\n"
            "Push them from the machine that ran this revision (`dvc push`), or point DVC at a remote that has "
            "them (`dvc remote modify --local <name> url <url>`, or `--remote NAME`)."
        )
    return where


def recorded_file(lock: dict[str, Any], cache: Path, worktree: Path, path: str, *, env: dict[str, str], remote: str | None) -> Path:
    """The cached copy of a file the revision recorded (fetched from the remote if needed, with its folder's manifest)."""
    md5 = recorded_md5(lock, path, cache)
    found = cached_object(cache, md5) if md5 else None
    if found is None:
        _run([_tool("dvc"), "fetch", path] + (["--remote", remote] if remote else []), worktree, env, timeout=None)
        md5 = recorded_md5(lock, path, cache)
        found = cached_object(cache, md5) if md5 else None
    if found is None:
        raise ReproduceError(f"the recorded {path} (md5 {md5 or 'unknown'}) is neither in the local DVC cache ({cache}) nor on the remote")
    return found


_RULE = re.compile(r"^(?:local)?rule (\w+):", re.M)
_STEPS = re.compile(r"(\d+) of (\d+) steps \((\d+%)\) done")
_FINISHED = re.compile(r"Finished jobid: \d+ \(Rule: (\w+)\)")


def planned_rules(worktree: Path, cmd: str, env: dict[str, str]) -> list[str]:
    done = _run(["bash", "-c", f"{cmd} -n"], worktree, env)
    if done.returncode != 0:
        raise ReproduceError(f"Snakemake cannot plan the run:\n{_last_lines(done.stdout + done.stderr)}")
    return list(dict.fromkeys(_RULE.findall(done.stdout + done.stderr)))


def run_pipeline(worktree: Path, cmd: str, env: dict[str, str], log_path: Path, say: Callable[[str], None], verbose: bool) -> None:
    """Run the revision's pipeline command, echoing progress (every line with `verbose`) and logging all."""
    start = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
        ["bash", "-c", cmd], cwd=worktree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            log.write(line)
            tail = (tail + [line.rstrip()])[-40:]
            stamp = f"  [{time.monotonic() - start:5.0f} s]"
            if verbose:
                say(f"{stamp} {line.rstrip()}")
            elif (m := _FINISHED.search(line)):
                say(f"{stamp} {m.group(1)} done")
            elif (m := _RULE.match(line)):
                say(f"{stamp} {m.group(1)} ...")
            elif (m := _STEPS.search(line)):
                say(f"{stamp} {m.group(1)}/{m.group(2)} steps ({m.group(3)})")
            elif "[train] epoch" in line:
                say(f"{stamp}   {line.strip().split('[train] ', 1)[-1]}")
        code = proc.wait()
    if code != 0:
        raise ReproduceError(f"the pipeline failed (exit {code}); full log: {log_path}\n" + "\n".join("    " + l for l in tail[-15:]))


def compare(recorded: dict[str, Any], reproduced: dict[str, Any], tolerance: float) -> Comparison:
    result = Comparison(tolerance=tolerance)
    for key in sorted(set(recorded) | set(reproduced)):
        old, new = recorded.get(key), reproduced.get(key)
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
        diff = new - old if numeric else None
        if numeric and isinstance(old, int) and isinstance(new, int):
            ok = old == new  # counts are exact everywhere
        elif numeric:
            ok = old == new if tolerance == 0 else abs(diff) <= tolerance
        else:
            ok = old == new
        result.rows.append({"metric": key, "recorded": old, "reproduced": new, "diff": diff, "ok": ok})
    return result


def format_comparison(comparison: Comparison) -> str:
    def show(value: Any) -> str:
        return "missing" if value is None else (repr(value) if isinstance(value, float) else str(value))

    rows = [("metric", "recorded", "reproduced", "diff", "")]
    for row in comparison.rows:
        diff = "" if row["diff"] is None else ("0" if row["diff"] == 0 else f"{row['diff']:+.3g}")
        rows.append((row["metric"], show(row["recorded"]), show(row["reproduced"]), diff, "ok" if row["ok"] else "DIFFERS"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


# ---------------------------------------------------------------------------------------------- the command


def reproduce(
    rev: str,
    *,
    repo: Path | str = ".",
    from_checkpoints: bool = False,
    workdir: Path | str | None = None,
    keep: bool = False,
    remote: str | None = None,
    tolerance: float | None = None,
    cores: int | None = None,
    cpu: bool = False,
    verbose: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Reproduce `rev` and compare its metrics; returns EQUAL, DIFFERENT or FAILED (after saying why)."""
    began = time.monotonic()
    toplevel = git(["rev-parse", "--show-toplevel"], Path(repo))
    if toplevel is None:
        raise ReproduceError(f"{Path(repo).resolve()} is not inside a git repository: reproduce works on committed revisions")
    root = Path(toplevel.strip())
    revision = resolve_revision(root, rev)
    say(f"reproducing {revision.short} ({revision.subject})" + (" from its checkpoints" if from_checkpoints else " from raw data"))
    changes = uncommitted_changes(root)
    if changes:
        say(f"note: your checkout has {len(changes)} uncommitted change(s) ({', '.join(changes[:3])}{', ...' if len(changes) > 3 else ''}); "
            f"they are not part of {revision.short} and are ignored (your checkout is left as it is)")

    if workdir is None:
        worktree = Path(tempfile.mkdtemp(prefix=f"tunepipe-reproduce-{revision.short}-"))
    else:
        worktree = Path(workdir).resolve()
        if worktree.exists() and any(worktree.iterdir()):
            raise ReproduceError(f"--workdir {worktree} exists and is not empty; choose a new folder (nothing was changed)")
    say(f"[1/4] git worktree at {worktree}")
    git(["worktree", "add", "--detach", "--force", str(worktree), revision.sha], root, check=True, timeout=600)
    succeeded = ran = configured = False
    try:
        env = _env(worktree, cpu=cpu)
        configured = True  # from here on, config.local may hold the remote's credentials
        cache, remote_name, url = configure_dvc(root, worktree, remote)
        cmd = _lock_cmd(revision.lock)
        if not cmd:
            raise ReproduceError(f"{LOCK_FILE} at {revision.short} records no command for the stage that writes {METRICS_PATH}")
        if cores is not None:
            cmd += f" --cores {int(cores)}"

        recorded_outs = lock_outs(revision.lock)
        wanted = list(CHECKPOINT_OUTS if from_checkpoints else RAW_DATA) + [METADATA]
        if BENCHMARKS in recorded_outs:
            wanted.append(BENCHMARKS)
        targets, missing = restore_targets(wanted, recorded_outs)
        if missing:
            raise ReproduceError(f"{LOCK_FILE} at {revision.short} does not version {', '.join(missing)}, so it cannot be restored")
        say(f"[2/4] restoring {', '.join(targets)}")
        t0 = time.monotonic()
        source = restore(worktree, targets, env=env, remote=remote_name, url=url, cache=cache, say=say)
        recorded_path = recorded_file(revision.lock, cache, worktree, METRICS_PATH, env=env, remote=remote_name)
        recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
        say(f"  restored from {source} in {time.monotonic() - t0:.1f} s")
        stale = _stale_deps(worktree, env)
        if stale:
            say(f"warning: {LOCK_FILE} at {revision.short} does not match that revision's {stale}: the recorded metrics "
                "came from another state, so they may differ")

        plan = planned_rules(worktree, cmd, env)
        if from_checkpoints and "train" in plan:
            raise ReproduceError("Snakemake would re-train: the restored checkpoint does not match this revision's code, "
                                 "params or data records. Run without --from-checkpoints to re-train.")
        ran = True
        say(f"[3/4] running the pipeline: {', '.join(plan) or 'nothing to run'}  (log: {worktree / 'reproduce.log'})")
        t0 = time.monotonic()
        run_pipeline(worktree, cmd, env, worktree / "reproduce.log", say, verbose)
        say(f"  pipeline finished in {time.monotonic() - t0:.0f} s")

        reproduced = json.loads((worktree / METRICS_PATH).read_text(encoding="utf-8"))
        device = _device(worktree / TRAIN_SUMMARY)
        recorded_device = device
        if (summary_md5 := recorded_md5(revision.lock, TRAIN_SUMMARY, cache)) and (path := cached_object(cache, summary_md5)):
            recorded_device = _device(path)
        on_gpu = "cpu" not in (device, recorded_device)
        limit = tolerance if tolerance is not None else (GPU_TOLERANCE if on_gpu else 0.0)
        comparison = compare(recorded, reproduced, limit)
        rule = "exactly equal (CPU: deterministic)" if limit == 0 else f"within ±{limit:g} per metric"
        say(f"[4/4] {METRICS_PATH}: recorded at {revision.short} ({recorded_device}) vs reproduced ({device}), expected {rule}")
        say(format_comparison(comparison))
        for path in MODEL_FILES:
            if (model_md5 := recorded_md5(revision.lock, path, cache)) and (worktree / path).is_file():
                same = _md5(worktree / path) == model_md5
                say(f"  {path}: {'identical to the recorded one' if same else 'differs from the recorded one (bytes)'}")
        verdict = EQUAL if comparison.equal else DIFFERENT
        say(("REPRODUCED: the metrics are equal" if verdict == EQUAL else "NOT REPRODUCED: the metrics differ")
            + f" ({time.monotonic() - began:.0f} s in all)")
        succeeded = verdict == EQUAL
        return verdict
    finally:
        if not keep and (succeeded or not ran):  # a failed or differing run is kept to look into
            git(["worktree", "remove", "--force", str(worktree)], root, timeout=600)
            shutil.rmtree(worktree, ignore_errors=True)
        else:
            if configured:
                forget_credentials(worktree)
            say(f"worktree kept at {worktree} (remove it with `git worktree remove --force {worktree}`; its DVC config keeps "
                "the remote's URL, not its credentials)")


def _device(summary: Path) -> str:
    try:
        data = json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "unknown"
    return str(data.get("accelerator") or data.get("device") or "unknown")


def _stale_deps(worktree: Path, env: dict[str, str]) -> str | None:
    """What `dvc status` says changed in the revision's deps/params relative to its own dvc.lock, if anything."""
    done = _run([_tool("dvc"), "status", "--json"], worktree, env)
    try:
        status = json.loads(done.stdout or "{}")
    except ValueError:
        return None
    changed: list[str] = []
    for entries in status.values() if isinstance(status, dict) else []:
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("changed deps"), dict):
                changed.extend(entry["changed deps"])
    return ", ".join(sorted(set(changed))) or None


__all__ = ["DIFFERENT", "EQUAL", "FAILED", "GPU_TOLERANCE", "ReproduceError", "compare", "reproduce", "resolve_revision"]
