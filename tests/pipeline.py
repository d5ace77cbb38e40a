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


def deep_merge(base: dict, *overrides: dict) -> dict:
    """`base` with each override's keys set in turn, merged through nested sections (a new dict; the inputs unchanged)."""
    merged = dict(base)
    for override in overrides:
        for key, value in override.items():
            merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


def micro_params(model_dir: Path) -> dict:
    """params.yaml with tests/fixtures/micro.yaml and a local model: a whole text run in about a minute."""
    import yaml

    params = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), yaml.safe_load((REPO / "tests" / "fixtures" / "micro.yaml").read_text()))
    return deep_merge(params, {"model": {"pretrained": str(model_dir), "max_length": 24}})


def versioned_project(project: Path, remote: Path, params: dict) -> None:
    """A git repository holding the workflow and `params`, with DVC's remote at `remote` (a folder), committed, never run."""
    import yaml

    project.mkdir(parents=True)
    for name in ("Snakefile", "dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, project / name)
    for name in ("workflow", "profiles", "envs", "requirements"):
        shutil.copytree(REPO / name, project / name)
    (project / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(REPO / ".dvc" / name, project / ".dvc" / name)
    shutil.copytree(REPO / "src" / "tunepipe", project / "src" / "tunepipe", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(project, "git", "init", "-q", "-b", "main")
    sh(project, "git", "config", "user.name", "tunepipe test")  # `dvc exp run` commits, so it needs an identity
    sh(project, "git", "config", "user.email", "test@tunepipe.invalid")
    sh(project, "dvc", "remote", "modify", "--local", "storage", "url", str(remote))  # never the real default
    sh(project, "git", "add", "-A")
    sh(project, "git", "commit", "-qm", "project, never run")


#: Fashion-MNIST's classes by the part of the body they dress (the multi-label image test's second tag).
GARMENT_KIND = {"T-shirt/top": "upper body", "Pullover": "upper body", "Coat": "upper body", "Shirt": "upper body", "Dress": "full body",
                "Trouser": "lower body", "Sandal": "footwear", "Sneaker": "footwear", "Ankle boot": "footwear", "Bag": "accessory"}


def fashion_table(folder: Path, rows: int = 300) -> Path:
    """A CSV of real Fashion-MNIST images written as PNGs, with two kinds of target taken from the data itself: `tags`
    (the class and its kind of garment, ";"-separated) and `brightness` (the image's mean grey level)."""
    import csv

    import numpy as np
    from PIL import Image

    from tunepipe.data.images import FASHION_MNIST_LABELS, fashion_mnist

    images, labels = fashion_mnist()
    folder.mkdir(parents=True, exist_ok=True)
    table = folder / "fashion.csv"
    with open(table, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "tags", "brightness"])
        for index in range(rows):
            name = FASHION_MNIST_LABELS[int(labels[index])]
            Image.fromarray(images[index]).save(folder / f"{index}.png")
            writer.writerow([f"{index}.png", f"{name};{GARMENT_KIND[name]}", f"{float(np.asarray(images[index], dtype=np.float64).mean()):.4f}"])
    return table


def task_run(root: Path, name: str, *configs: str, files: dict | None = None) -> Path:
    """The whole pipeline (results/report.html) in a scratch project with the given config files (and extra files)."""
    project = scratch_project(root / name)
    for path, content in (files or {}).items():
        (project / path).write_text(content, encoding="utf-8")
    for config in configs:
        if (REPO / "tests" / "fixtures" / config).exists():
            shutil.copy(REPO / "tests" / "fixtures" / config, project / config)
    result = snakemake(project, "results/report.html", "--cores", "2", "--configfile", *configs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return project
