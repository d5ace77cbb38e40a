"""The serving runtime and server never import the training stack (what `pip install 'tunepipe[serve]'` leaves out)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib

from tests.conftest import REPO
from tests.serving.conftest import serve_env

#: The training stack, and everything else only the `pipeline` extra installs: none may be imported.
HEAVY = ("torch", "transformers", "pytorch_lightning", "lightning", "torchmetrics", "snakemake", "dvc", "gto", "scmrepo", "hydra", "omegaconf",
         "onnx", "onnxscript", "safetensors", "sklearn", "scipy", "pandas", "pyarrow", "matplotlib", "jinja2", "jsonschema", "kornia", "captum",
         "torch_pruning")

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, sys, threading, time, urllib.request

    HEAVY = {heavy!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"blocked: the serving path imported {{name}}")
            return None

    sys.meta_path.insert(0, Blocker())

    from tunepipe.cli import main
    assert main(["predict", {bundle!r}, {source!r}, "-o", {out!r}, "--no-progress"]) == 0
    assert main(["predict", {bundle!r}, {source!r}, "-o", {out!r}, "--no-progress", "--int8"]) == 0

    import uvicorn
    from tunepipe.serving.server import ServeConfig, create_app

    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(bundle={bundle!r})), host="127.0.0.1", port={port}, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    request = urllib.request.Request("http://127.0.0.1:{port}/v1/predict", data=json.dumps({{"inputs": ["light"]}}).encode(),
                                     headers={{"Content-Type": "application/json"}})
    print(json.load(urllib.request.urlopen(request, timeout=30))["labels"])
    urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=30).read()
    server.should_exit = True
    thread.join(timeout=30)
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in HEAVY)
    print("heavy modules:", loaded)
    assert not loaded
""")


def test_predict_and_serve_never_import_torch_transformers_lightning_or_other_pipeline_packages(bundle, tmp_path):
    from tests.serving.conftest import free_port

    script = SCRIPT.format(heavy=HEAVY, bundle=str(bundle), source=str(bundle.parent.parent / "split" / "test.jsonl"), out=str(tmp_path / "out.csv"),
                           port=free_port())
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=serve_env(), timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "heavy modules: []" in done.stdout
    assert (tmp_path / "out.csv").read_text().count("\n") > 1


def test_the_serve_extra_holds_only_the_light_stack():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    light = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    names = {requirement.split("==")[0].split("[")[0].strip().lower() for requirement in light}
    pipeline = {requirement.split("==")[0].lower() for requirement in project["optional-dependencies"]["pipeline"]}
    assert {"torch", "transformers", "pytorch-lightning", "torchmetrics", "snakemake", "dvc", "onnx"} <= pipeline
    assert not names & pipeline
    assert {"onnxruntime", "numpy", "tokenizers", "pillow", "fastapi", "uvicorn", "prometheus-client"} <= names
