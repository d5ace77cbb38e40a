"""Running the real workflow from tests: a scratch copy of the project, Snakemake as a user runs it, what it planned."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def scratch_project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "workflow", root / "workflow")
    shutil.copytree(REPO / "profiles", root / "profiles")
    shutil.copytree(REPO / "envs", root / "envs")
    (root / "src").symlink_to(REPO / "src")  # rules take their code files as inputs
    return root


def snakemake(cwd: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HF_HUB_OFFLINE="1")
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def planned_rules(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M))


def planned_outputs(result: subprocess.CompletedProcess) -> set[str]:
    """Every file the jobs of a dry run write: outputs, logs and benchmark files."""
    lines = re.findall(r"^\s+(?:output|log|benchmark): (.*)$", result.stdout + result.stderr, flags=re.M)
    return {path for line in lines for path in line.split(", ")}


@functools.cache
def default_rules() -> frozenset[str]:
    """The rules of the default run, as the workflow itself says (a forced dry run of the default params)."""
    result = snakemake(REPO, "results/report.html", "-n", "--forceall")
    assert result.returncode == 0, result.stderr[-3000:]
    return frozenset(planned_rules(result))


BIN = Path(sys.executable).parent


def sh(project: Path, *args: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=f"{project / 'src'}{os.pathsep}{REPO / 'src'}",
               DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run(list(args), cwd=project, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def tunepipe(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return sh(project, sys.executable, "-m", "tunepipe.cli", *args, timeout=timeout, check=False)


def metrics(project: Path) -> dict:
    return json.loads((project / "results" / "evaluate" / "metrics.json").read_text())
