# Shared helpers: validate params once, before any job runs, and describe each rule's code inputs.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from tunepipe.config import sections, validate_params
from tunepipe.errors import ParamsError

try:
    config.update(validate_params(config))
except ParamsError as error:
    raise WorkflowError(str(error)) from None

SRC = Path("src/tunepipe")

# Jobs run `python -m tunepipe.stages...`: make that the interpreter Snakemake itself runs in, so
# `.venv/bin/snakemake` works without activating the venv (--use-conda jobs put their env first).
envvars:
    "PATH",


os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def code(*parts):
    """The source files (and templates) a job runs, as inputs, so a code change reruns it (judged by content)."""
    files = []
    for part in ("__init__.py", "errors.py", "io.py", "runtime.py", "stages/harness.py") + parts:
        path = SRC / part
        if path.is_dir():
            files.extend(sorted(str(p) for p in path.rglob("*") if p.suffix in (".py", ".j2")))
        else:
            files.append(str(path))
    return files


def raw_data():
    """The user's dataset (file or image folder), an input of prepare so that editing it reruns the pipeline.

    Bundled datasets come from pinned packages and need no input. A folder counts as changed when files are
    added or removed (its mtime); replacing an image in place needs `--forcerun prepare`.
    """
    data = config["data"]
    return [data["path"]] if data["source"] in ("file", "folder") and data["path"] else []


def prepare_params():
    """prepare reads the seed only when it samples (data.max_rows), so a new seed does not redo the reading."""
    return params_for("seed", "data") if config["data"]["max_rows"] is not None else params_for("data")


def params_for(*names):
    """The JSON of the params sections a rule reads; editing another section does not rerun it."""
    return sections(config, *names)


def timing(rule_name):
    """The rule's `benchmark:` file (wall time, peak memory), shown per rule in the report's provenance."""
    return f"results/benchmarks/{rule_name}.tsv"
