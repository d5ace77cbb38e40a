"""The tiny runs' bundles, and `tunepipe serve` started for real on a free local port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO


@pytest.fixture(scope="session")
def bundle(tiny_run) -> Path:
    return tiny_run / "results" / "export" / "bundle"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def request(self, method: str, path: str, body: bytes | str | dict | list | None = None, *, content_type: str | None = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, dict | str, dict[str, str]]:
        """(status, JSON body or text, headers) of a real HTTP request; 4xx/5xx are returned, not raised."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=dict(headers or {}))
        if content_type and data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as exc:
            status, raw, got = exc.code, exc.read(), dict(exc.headers)
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text), got
        except json.JSONDecodeError:
            return status, text, got

    def predict(self, inputs: list, headers: dict[str, str] | None = None) -> dict:
        status, body, _ = self.request("POST", "/v1/predict", {"inputs": inputs}, headers=headers)
        assert status == 200, body
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample in /metrics (0.0 when absent)."""
        status, text, _ = self.request("GET", "/metrics")
        assert status == 200
        want = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            sample, _, value = line.rpartition(" ")
            metric, _, rest = sample.partition("{")
            if metric == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
                return float(value)
        return 0.0


@contextlib.contextmanager
def running_server(*args: str, log_dir: Path, startup_s: float = 120):
    """`tunepipe serve ARGS` in a subprocess on a free port; waits for /ready, stops it (SIGTERM) afterwards."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, "-m", "tunepipe.cli", "serve", *args, "--port", str(port)], stdout=handle,
                                   stderr=subprocess.STDOUT, env=serve_env())
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"tunepipe serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if server.request("GET", "/ready")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"tunepipe serve not ready after {startup_s} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: The rows of the tiny multi-label and regression bundles: their test split (drift reference) and what tests score.
TASK_TEXTS = ["A gem of a film, warm and funny.", "Dull, tedious and far too long.", "It was fine.", "Explosions, car chases and a hero.",
              "A quiet family drama about loss.", "Laugh after laugh, then tears.", "Nothing happens for two hours.", "Space pirates!"]
TASK_SETUP = {
    "single_label": {"names": ["bad", "fine", "good"], "stats": {}, "thresholds": False, "head_scale": 10.0,
                     "targets": ["good", "bad", "fine", "good", "fine", "good", "bad", "fine"]},
    "multi_label": {"names": ["action", "comedy", "drama"], "stats": {}, "thresholds": True, "head_scale": 10.0,
                    "targets": [["comedy"], ["drama"], [], ["action"], ["drama"], ["comedy", "drama"], ["drama"], ["action", "comedy"]]},
    "regression": {"names": ["rating"], "stats": {"mean": 6.2, "std": 1.4}, "thresholds": False, "head_scale": 10.0, "targets": [8.1, 3.9, 6.0, 6.7, 7.2, 7.9, 2.5, 5.5]},
}


def torch_outputs(model, texts: list[str], cfg: dict, stats: dict, task) -> np.ndarray:
    """What the pipeline's PyTorch model predicts for `texts` (the task's `outputs` on its logits): the reference for serving."""
    import torch

    from tunepipe.modalities import get_modality

    modality = get_modality("text")
    data = modality.encode([{"text": text} for text in texts], None, cfg, modality.load_processor(cfg))
    batch = data.collate([data[i] for i in range(len(texts))])
    with torch.no_grad():
        logits = model(**{name: batch[name] for name in model.input_names})
    return task.outputs(logits, stats).double().numpy()


def run_export_stage(folder: Path, export: dict, model: Path, best: Path, val_rows: list[dict], test_rows: list[dict],
                     decision: Path | None = None) -> Path:
    """The export stage as its rule runs it, on a saved model.pt and its checkpoint, with `export` as its params: the
    val and test rows are written beside them; the folder of its outputs (model.onnx, parity.json, bundle, ...)."""
    from tunepipe.io import write_jsonl
    from tunepipe.stages import export as export_stage
    from tunepipe.stages.harness import main

    for split, part in (("val", val_rows), ("test", test_rows)):
        write_jsonl(folder / f"{split}.jsonl", part)
    out = folder / "export"
    files = {"onnx": "model.onnx", "int8": "model.int8.onnx", "parity": "parity.json", "variants": "variants.json", "card": "model_card.json", "bundle": "bundle"}
    inputs = {"model": model, "best": best, "val": folder / "val.jsonl", "test": folder / "test.jsonl", **({"decision": decision} if decision else {})}
    code = main(export_stage.STAGE, ["--params", json.dumps({"export": export}), *[f"--in={k}={v}" for k, v in inputs.items()],
                                     *[f"--out={k}={out / v}" for k, v in files.items()]])
    assert code == 0
    return out


def build_task_bundle(folder: Path, model_dir: Path, task_name: str) -> tuple[Path, dict]:
    """A real bundle of a tiny random BERT for `task_name`, written by the bundle writer with the model card (the export
    stage's last steps); the INT8 file is a copy of the fp32 one. Returns the bundle and {"expected", "decision", ...}."""
    import torch

    from tunepipe.modalities import get_modality
    from tunepipe.optimize import bundle, model_card
    from tunepipe.optimize.onnx_export import export_onnx
    from tunepipe.tasks import get_task

    setup = TASK_SETUP[task_name]
    names, stats = setup["names"], setup["stats"]
    cfg = {"pretrained": str(model_dir), "allow_download": False, "max_length": 24, "dropout": 0.0}
    modality, task = get_modality("text"), get_task(task_name)
    torch.manual_seed(3)
    model = modality.build_classifier(cfg, task.output_size(names)).eval()
    with torch.no_grad():  # spread the head's outputs so label sets and values differ between rows
        model.head.weight.mul_(setup["head_scale"])
    processor = modality.load_processor(cfg)
    data = modality.encode([{"text": text} for text in TASK_TEXTS], None, cfg, processor)
    folder.mkdir(parents=True, exist_ok=True)
    onnx = folder / "model.onnx"
    export_onnx(model, onnx, data.collate([data[0], data[1]]), opset=17, dynamo=False)
    expected = torch_outputs(model, TASK_TEXTS, cfg, stats, task)
    # multi_label: per label, a threshold midway across the widest gap of its probabilities (some rows on, some off)
    decision = {"thresholds": [widest_gap_midpoint(expected[:, j]) for j in range(len(names))], "thresholds_from": "test fixture"} \
        if setup["thresholds"] else {}
    level = task.level_metrics[0]
    deployed = {"pruning_level": 0.0, "params": sum(p.numel() for p in model.parameters()), "rows": len(TASK_TEXTS), "test_rows": len(TASK_TEXTS), f"test_{level}": 0.625,
                "max_abs_logit_diff": 1e-6, "prediction_agreement": 1.0, "onnx_bytes": onnx.stat().st_size,
                "latency_ms": {"1": {"onnxruntime": 1.0, "eager": 2.0}}}
    card = model_card.build(model_cfg=cfg, label_names=names, title=f"text {task.title}", task=task, preprocessing=modality.preprocessing(cfg),
                            input_limit=modality.input_limit(cfg), input_names=list(model.input_names), sample=data.collate([data[0]]),
                            deployed=deployed, int8=dict(deployed, **{f"test_{level}": 0.5}), dense=dict(deployed, **{f"test_{level}": 0.75}),
                            export_params={"opset": 17}, threads=1, files={"onnx": "model.onnx", "int8": "model.int8.onnx"})
    out = folder / "bundle"
    spec = bundle.runtime_spec("text", cfg, processor, out)
    bundle.write_bundle(out, onnx=onnx, int8=onnx, card=card, modality="text", input_names=list(model.input_names), runtime_spec=spec,
                        test_labels=setup["targets"], task={"type": task_name, "decision": decision, "target_stats": stats})
    return out, {"expected": expected, "decision": decision, "names": names, "model": model, "cfg": cfg, "stats": stats, "task": task}


def widest_gap_midpoint(values) -> float:
    ordered = sorted(float(v) for v in values)
    gap, i = max((b - a, i) for i, (a, b) in enumerate(zip(ordered, ordered[1:])))
    return (ordered[i] + ordered[i + 1]) / 2


@pytest.fixture(scope="session")
def multi_label_bundle(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    return build_task_bundle(tmp_path_factory.mktemp("multi-label-bundle"), tiny_model_dir, "multi_label")


@pytest.fixture(scope="session")
def regression_bundle(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    return build_task_bundle(tmp_path_factory.mktemp("regression-bundle"), tiny_model_dir, "regression")


@pytest.fixture(scope="session")
def single_label_bundle(tiny_model_dir, tmp_path_factory) -> tuple[Path, dict]:
    return build_task_bundle(tmp_path_factory.mktemp("single-label-bundle"), tiny_model_dir, "single_label")


def build_image_bundle(folder: Path, image_size: int = 32) -> Path:
    """A real image bundle, written by the bundle writer, of a tiny hand-built ONNX model with random weights (the mean
    colour of the uint8 pixels -> 3 logits): the serving runtime's image path without a pipeline run or downloaded weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tunepipe.optimize import bundle

    rng = np.random.default_rng(0)
    names = ["dark", "mid", "light"]
    graph = helper.make_graph(
        [helper.make_node("Cast", ["pixels"], ["x"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["x"], ["mean"], axes=[2, 3], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["y"]),
         helper.make_node("Add", ["y", "b"], ["logits"])],
        "tiny-image",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", 3, image_size, image_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(names)])],
        initializer=[numpy_helper.from_array((rng.normal(size=(3, len(names))) / 50).astype(np.float32), "w"),
                     numpy_helper.from_array(np.array([1.0, 0.0, -1.0], dtype=np.float32), "b")])
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), model)
    card = {"labels": names, "preprocessing": "RGB, bilinear resize to a square, uint8 CHW", "model": {"base_model": "tiny random (test)", "pruning_level": 0.0},
            "metrics": {"accuracy": 0.5, "int8_accuracy": 0.5, "rows": 3}}
    out = folder / "bundle"
    bundle.write_bundle(out, onnx=model, int8=model, card=card, modality="image", input_names=["pixels"], runtime_spec=bundle.image_spec(image_size),
                        test_labels=names)
    return out


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory) -> Path:
    return build_image_bundle(tmp_path_factory.mktemp("image-bundle"))

