"""`tunepipe resume`: continue a pipeline run after Snakemake itself was killed (kill -9, a power loss, a lost terminal).

Such a run leaves Snakemake's lock (.snakemake/locks), which stops the next `snakemake` with "Directory cannot be
locked", and its jobs' incomplete markers, which the default profile's `rerun-incomplete` already handles. The lock
is only stale once its owner is gone, and Snakemake records no owner: so this checks that no Snakemake and no stage
of this folder is still running (a job outlives a killed Snakemake), then unlocks and runs the same command again.
A killed training resumes from its last checkpoint (tunepipe.training.fit).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

RUNNING = 2  # exit status when the folder is still in use


def live_processes(folder: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every Snakemake or pipeline stage whose working folder is `folder` (ours excluded)."""
    import psutil

    folder = folder.resolve()
    ours = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    found = []
    for process in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
        info = process.info
        if info["pid"] in ours or info["status"] == psutil.STATUS_ZOMBIE or not info["cwd"] or not info["cmdline"]:
            continue  # also processes of other users, whose folder we may not read
        if Path(info["cwd"]) != folder:
            continue
        command = " ".join(info["cmdline"])
        if "snakemake" in command or "tunepipe.stages." in command:
            found.append((info["pid"], command))
    return found


def snakemake_executable() -> str:
    """The Snakemake beside this Python (the project's environment), else the one on PATH."""
    beside = Path(sys.executable).with_name("snakemake")
    return str(beside) if beside.exists() else (shutil.which("snakemake") or "snakemake")


def resume(snakemake_args: list[str], folder: Path = Path("."), say: Callable[[str], None] = print) -> int:
    """Unlock and rerun `snakemake SNAKEMAKE_ARGS` in `folder`; `RUNNING` without touching anything if it is in use."""
    busy = live_processes(folder)
    if busy:
        listing = "; ".join(f"pid {pid}: {command[:120]}" for pid, command in busy)
        say(f"error: this run is still going ({listing}). Wait for it to end, or stop it (kill PID), then run tunepipe resume again.")
        return RUNNING
    snakemake = snakemake_executable()
    unlocked = subprocess.run([snakemake, "--unlock", *snakemake_args], cwd=folder, capture_output=True, text=True)
    if unlocked.returncode != 0:
        say((unlocked.stdout + unlocked.stderr).strip())
        say("error: snakemake --unlock failed (see above); the command was not rerun.")
        return unlocked.returncode
    say("no Snakemake of this folder is running: lock removed; rerunning (unfinished jobs rerun, a killed training resumes)")
    return subprocess.run([snakemake, *snakemake_args], cwd=folder).returncode
