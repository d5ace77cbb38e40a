"""`tunepipe serve`: a bundle behind an HTTP API (FastAPI on uvicorn) with micro-batching, Prometheus metrics and A/B.

Routes: POST /v1/predict; the Open Inference Protocol v2 (/v2/health/*, /v2/models/{name}[/ready|/infer]);
/health, /ready, /metrics, /docs. Every error is JSON `{"error": "..."}` with a 4xx status when the request
is at fault; the server keeps serving after any of them.

Why FastAPI and a small batcher rather than LitServe: LitServe's batching runs in its own worker processes
behind one `predict` route, so the OIP v2 routes, two models behind one route (A/B, sticky per client) and
per-version label counts for drift would each have had to be worked around it; here one asyncio task per model
batches whatever every route sends it.

What an answer holds and what /metrics counts for drift is the bundle's task's (tunepipe.tasks, numpy only):
a label with probabilities, a label set at the bundle's thresholds, or a number.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import math
import os
import random
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from fastapi import Request  # at module level: FastAPI resolves the handlers' (string) annotations here

from tunepipe import __version__
from tunepipe.serving.runtime import BundleError, InputError, InputLimits, Predictor, load_bundle

_log = logging.getLogger("uvicorn.error")  # printed with uvicorn's own lines
CONFIG_ENV = "TUNEPIPE_SERVE_CONFIG"
#: A body over the limit is still read (and dropped) up to this size, so that clients which send the whole body before
#: reading the answer (urllib, requests) get the 413 rather than a reset connection; beyond it the connection is closed.
DRAIN_BYTES = 64 << 20
#: /metrics' `method` label: these, else "other" (a client must not be able to add series).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


@dataclass(frozen=True)
class ServeConfig:
    bundle: str
    #: A second bundle for A/B, and the share of traffic it gets.
    ab: str | None = None
    split: float = 0.0
    int8: bool = False
    threads: int = 1
    batching: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_inputs: int = 256
    max_body_bytes: int = 4 << 20
    #: Inputs admitted per model (being decoded, queued or in a batch); more are answered 503. None: 2 x max_inputs.
    max_queue: int | None = None
    #: runtime.InputLimits: None derives each from the bundle.
    max_image_pixels: int | None = None
    max_request_pixels: int | None = None
    max_text_chars: int | None = None
    refuse_long_texts: bool = False
    verify: bool = True
    model_name: str = "tunepipe-model"
    #: Versions to report instead of the bundles' own (a registry's version names).
    version: str | None = None
    ab_version: str | None = None

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @property
    def limits(self) -> InputLimits:
        return InputLimits(self.max_image_pixels, self.max_request_pixels, self.max_text_chars, self.refuse_long_texts)

    @property
    def queue_limit(self) -> int:
        return self.max_queue if self.max_queue is not None else 2 * self.max_inputs

    @classmethod
    def from_env(cls) -> ServeConfig:
        return cls(**json.loads(os.environ[CONFIG_ENV]))


class RequestError(Exception):
    """A request the client must fix: becomes `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class MicroBatcher:
    """Collects concurrent requests for one model into batches of at most `max_batch_size` inputs.

    Whatever is queued when the model becomes free goes into the next batch; when several requests are arriving,
    it also waits up to `max_wait_ms` for more. A lone client never waits, so batch-1 latency stays that of the
    model. With `enabled` False every request is its own batch (the benchmark's reference)."""

    def __init__(self, predictor: Predictor, *, max_batch_size: int, max_wait_ms: float, enabled: bool, on_batch, max_queue: int) -> None:
        self.predictor = predictor
        self.max_queue = max_queue
        #: Inputs admitted and not yet answered (decoding, queued or running), and the recent model time per input.
        self.admitted = 0
        self.seconds_per_input = 0.0
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.enabled = enabled
        self.on_batch = on_batch
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pending: deque = deque()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{predictor.version}")
        self.task: asyncio.Task | None = None
        self.busy_before = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish every queued request, then stop."""
        if self.task is not None:
            await self.queue.put(None)
            await self.task
        self.executor.shutdown(wait=True)

    def admit(self, count: int) -> None:
        """Take `count` inputs in, or refuse them (503 with Retry-After) when the model has `max_queue` waiting already."""
        if self.admitted + count > self.max_queue:
            wait = max(1, math.ceil(self.admitted * self.seconds_per_input))
            raise RequestError(503, f"the model has {self.admitted} inputs waiting, the most it queues is {self.max_queue} (--max-queue); "
                                    f"retry in {wait} s", headers={"Retry-After": str(wait)})
        self.admitted += count

    def release(self, count: int) -> None:
        self.admitted -= count

    async def submit(self, checked: list) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((checked, future))
        return await future

    async def _next(self, timeout: float | None):
        if self.pending:
            return self.pending.popleft()
        if timeout is None:
            return await self.queue.get()
        if timeout <= 0:
            return self.queue.get_nowait()
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._next(None)
            if first is None:
                break
            batch, total = [first], len(first[0])
            if self.enabled:
                deadline = loop.time() + self.max_wait
                while total < self.max_batch_size:
                    busy = len(batch) > 1 or self.busy_before or not self.queue.empty()
                    try:
                        item = await self._next(deadline - loop.time() if busy else 0)
                    except (asyncio.QueueEmpty, TimeoutError):
                        break
                    if item is None:
                        stopping = True
                        break
                    if total + len(item[0]) > self.max_batch_size:
                        self.pending.append(item)
                        break
                    batch.append(item)
                    total += len(item[0])
                self.busy_before = len(batch) > 1
            await self._run(batch, loop)
        while self.pending or not self.queue.empty():  # requests that arrived with the stop signal
            item = self.pending.popleft() if self.pending else self.queue.get_nowait()
            if item is not None:
                await self._run([item], loop)

    async def _run(self, batch: list, loop) -> None:
        inputs = [value for checked, _ in batch for value in checked]

        def infer() -> np.ndarray:
            parts = [self.predictor.outputs(inputs[start:start + self.max_batch_size]) for start in range(0, len(inputs), self.max_batch_size)]
            return np.concatenate(parts) if parts else self.predictor.outputs([])

        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self.executor, infer)
            self.seconds_per_input = 0.8 * self.seconds_per_input + 0.2 * (time.perf_counter() - started) / max(1, len(inputs))
        except Exception as exc:  # a bug or a broken model: every waiting request gets it (a 500), the loop goes on
            _log.exception("inference failed on a batch of %d inputs", len(inputs))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for start in range(0, len(inputs), self.max_batch_size):
            self.on_batch(self.predictor, len(inputs[start:start + self.max_batch_size]))
        start = 0
        for checked, future in batch:
            if not future.done():
                future.set_result(outputs[start:start + len(checked)])
            start += len(checked)


class Metrics:
    """Prometheus metrics of one app (its own registry; with several workers, prometheus-client's multiprocess mode).

    `texts` is the task's `monitoring_help`: what the predictions counter counts and what the drift gauge measures."""

    def __init__(self, texts: dict[str, str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        self.texts = texts
        disable_created_metrics()  # the *_created samples only double the output
        self.registry = CollectorRegistry()
        self.requests = Counter("tunepipe_http_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("tunepipe_http_request_duration_seconds", "HTTP request latency by route and status", ["route", "status"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry)
        self.batch_size = Histogram("tunepipe_batch_size", "Inputs per model batch (dynamic micro-batching)", ["version"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.predictions = Counter("tunepipe_predictions_total", texts["predictions"], ["version", "label"], registry=self.registry)
        self.info = Gauge("tunepipe_model_info", "The models served (value 1)", ["version", "role", "modality", "precision"], registry=self.registry,
                          multiprocess_mode="max")

    def render(self, models: list[Predictor]) -> tuple[bytes, str]:
        """The exposition, with each model's drift gauge computed from the counts so far (over every worker)."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.core import GaugeMetricFamily

        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        live: dict[str, dict[str, float]] = {}
        rows: dict[str, float] = {}  # inputs answered per version: the batch-size histogram's sum
        for family in registry.collect():
            if family.name == "tunepipe_predictions":
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        live.setdefault(sample.labels["version"], {})[sample.labels["label"]] = sample.value
            if family.name == "tunepipe_batch_size":
                for sample in family.samples:
                    if sample.name.endswith("_sum"):
                        rows[sample.labels["version"]] = sample.value
        drift = GaugeMetricFamily("tunepipe_label_drift_psi", self.texts["drift"], labels=["version"])
        for model in models:
            drift.add_metric([model.version], model.task.drift(live.get(model.version, {}), rows.get(model.version, 0.0), model.bundle.monitoring))

        class Drift:
            def collect(self):
                yield drift

        extra = CollectorRegistry()
        extra.register(Drift())
        return generate_latest(registry) + generate_latest(extra), CONTENT_TYPE_LATEST


class Router:
    """Which model answers a request: B for `split` of the traffic, sticky per X-Client-Key (a hash), else at random."""

    def __init__(self, models: list[Predictor], split: float, seed: int | None = None) -> None:
        self.models = models
        self.split = split if len(models) > 1 else 0.0
        self.random = random.Random(seed)

    def choose(self, client_key: str | None) -> int:
        if self.split <= 0:
            return 0
        if client_key:
            share = int.from_bytes(hashlib.sha256(client_key.encode("utf-8")).digest()[:8], "big") / 2**64
        else:
            share = self.random.random()
        return 1 if share < self.split else 0


def _error(status: int, message: str, headers: dict[str, str] | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _json_type(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


async def _drop(chunks, read: int) -> dict[str, str] | None:
    """Read and drop the rest of a body (up to DRAIN_BYTES in all), so the answer reaches a client still sending it.
    Returns the headers the answer needs: `Connection: close` when the rest was too large to read."""
    from starlette.requests import ClientDisconnect

    try:
        async for chunk in chunks:
            read += len(chunk)
            if read > DRAIN_BYTES:
                return {"Connection": "close"}
    except ClientDisconnect:
        pass
    return None


async def read_json(request, limit: int) -> Any:
    """The request's JSON body; RequestError for a wrong content type, a body over `limit` bytes, or invalid JSON.

    A refused body is read to its end first (see DRAIN_BYTES): answering while the client still sends resets the connection."""
    chunks = request.stream()
    content_type = request.headers.get("content-type", "")
    declared = request.headers.get("content-length")
    too_long = declared is not None and declared.isdigit() and int(declared) > DRAIN_BYTES
    if not _json_type(content_type):
        headers = {"Connection": "close"} if too_long else await _drop(chunks, 0)
        raise RequestError(415, f"content-type must be application/json, got {content_type or 'none'!r}", headers)
    if declared and declared.isdigit() and int(declared) > limit:
        headers = {"Connection": "close"} if too_long else await _drop(chunks, 0)
        raise RequestError(413, f"body is {int(declared)} bytes, more than the limit of {limit} (--max-body-mb); send fewer or smaller inputs", headers)
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            headers = await _drop(chunks, len(body))
            raise RequestError(413, f"body is more than the limit of {limit} bytes (--max-body-mb); send fewer or smaller inputs", headers)
    if not body:
        raise RequestError(400, 'body is empty; send a JSON object like {"inputs": [...]}')
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise RequestError(400, "body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # an integer of more than sys.get_int_max_str_digits() digits
        raise RequestError(400, f"body is not usable JSON: {exc}".split(";")[0] + "; send numbers of ordinary size") from None
    except RecursionError:
        raise RequestError(400, "body is nested too deeply; send a flat JSON object like {\"inputs\": [...]}") from None


def _decode_image(value: Any, index: int) -> bytes:
    if not isinstance(value, str):
        raise RequestError(422, f"inputs[{index}] is {type(value).__name__}; each input must be a base64-encoded image (a string)")
    if not value:
        raise RequestError(422, f"inputs[{index}] is an empty string; send a base64-encoded image")
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, f"inputs[{index}] is not valid base64; send the image file's bytes base64-encoded") from None


def model_versions(config: ServeConfig) -> list[str]:
    """The version each model reports; BundleError when the bundles cannot be served together."""
    bundles = [load_bundle(config.bundle, verify=config.verify)] + ([load_bundle(config.ab, verify=config.verify)] if config.ab else [])
    if len({bundle.modality for bundle in bundles}) > 1:
        raise BundleError(f"{config.bundle} and {config.ab} classify different kinds of input; A/B needs two bundles of one modality")
    if len({bundle.task.name for bundle in bundles}) > 1:
        raise BundleError(f"{config.bundle} and {config.ab} answer different tasks ({', '.join(b.task.name for b in bundles)}); A/B needs two bundles of one task")
    suffix = "-int8" if config.int8 else ""
    versions = [given or bundle.version + suffix for given, bundle in zip((config.version, config.ab_version), bundles, strict=False)]
    if len(versions) == 2 and versions[0] == versions[1]:
        raise BundleError(f"both A/B bundles have version {versions[0]}; pass --version/--ab-version to tell them apart")
    return versions


def create_app(config: ServeConfig):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.routing import Match

    versions = model_versions(config)
    models = [Predictor(path, int8=config.int8, threads=config.threads, version=version, limits=config.limits, verify=config.verify)
              for path, version in zip((config.bundle, config.ab), versions, strict=False)]
    #: Images are decoded here, off the event loop, by as many threads as the model has: a bounded amount of decoding at once.
    decoder = ThreadPoolExecutor(max(1, config.threads), thread_name_prefix="decode")
    modality, task = models[0].bundle.modality, models[0].task
    oip_names = [spec["name"] for spec in task.oip_output_specs(models[0].labels)]
    router = Router(models, config.split)
    metrics = Metrics(task.monitoring_help)
    state: dict[str, Any] = {"ready": False, "batchers": []}

    def on_batch(predictor: Predictor, size: int) -> None:
        metrics.batch_size.labels(predictor.version).observe(size)

    @asynccontextmanager
    async def lifespan(app):
        for role, model in zip(("a", "b"), models, strict=False):
            model.outputs(model.check([_warmup_input(modality)]))  # the first run allocates; keep it off the first request
            metrics.info.labels(model.version, role if len(models) > 1 else "main", modality, "int8" if model.int8 else "fp32").set(1)
        state["batchers"] = [MicroBatcher(model, max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms, enabled=config.batching,
                                          on_batch=on_batch, max_queue=config.queue_limit) for model in models]
        if not config.verify:
            _log.warning("bundle verification is off (--no-verify): the files are not checked against bundle.json's sha256, "
                         "so a damaged or edited bundle is served as it is")
        for batcher in state["batchers"]:
            batcher.start()
        state["ready"] = True
        _log.info("serving %s (%s)", ", ".join(f"{m.version} from {m.bundle.path}" for m in models), "A/B split %.2f" % router.split if router.split else "one model")
        yield
        state["ready"] = False
        for batcher in state["batchers"]:
            await batcher.stop()
        decoder.shutdown(wait=True)
        _log.info("shut down cleanly")

    app = FastAPI(title="tunepipe", version=__version__, lifespan=lifespan,
                  description=f"{modality.capitalize()} {task.title} with the bundle {models[0].bundle.path} ({', '.join(models[0].labels)}).")

    def route_of(scope) -> str:
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "other")
        return "other"

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        try:
            response = await call_next(request)
            status = response.status_code
        except Exception:
            _log.exception("unhandled error on %s %s", request.method, request.url.path)
            response, status = _error(500, "internal error (a bug in tunepipe serve; the log has the details)"), 500
        route = route_of(request.scope)
        metrics.requests.labels(route, request.method if request.method in METHODS else "other", str(status)).inc()
        metrics.latency.labels(route, str(status)).observe(time.perf_counter() - started)
        return response

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404 and exc.detail == "Not Found":
            return _error(404, f"no route {request.method} {request.url.path}; see /docs for the API")
        if exc.status_code == 405:
            return _error(405, f"{request.method} is not allowed on {request.url.path}; see /docs for the API")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        return _error(422, f"{'.'.join(map(str, first.get('loc', [])))}: {first.get('msg', 'invalid request')}")

    async def score(values: list, client_key: str | None) -> tuple[Predictor, np.ndarray]:
        if not state["ready"]:
            raise RequestError(503, "the server is starting or shutting down; retry in a moment")
        if len(values) == 0:
            raise RequestError(422, "inputs is an empty list; send at least one input")
        if len(values) > config.max_inputs:
            raise RequestError(413, f"inputs has {len(values)} items, more than the limit of {config.max_inputs} per request (--max-inputs); split it into several requests")
        index = router.choose(client_key)
        model, batcher = models[index], state["batchers"][index]
        batcher.admit(len(values))
        try:
            if modality == "image":
                values = [_decode_image(value, i) for i, value in enumerate(values)]
            try:
                checked = await asyncio.get_running_loop().run_in_executor(decoder, model.check, values) if modality == "image" else model.check(values)
            except InputError as exc:
                raise RequestError(413 if exc.too_large else 422, str(exc)) from None
            outputs = await batcher.submit(checked)
        finally:
            batcher.release(len(values))
        for observed in model.task.observed(outputs, model.labels, model.decision, model.bundle.monitoring):
            metrics.predictions.labels(model.version, observed).inc()
        return model, outputs

    predict_schema = {
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["inputs"],
            "properties": {"inputs": {"type": "array", "minItems": 1, "maxItems": config.max_inputs,
                                      "items": {"type": "string", "description": "a text, or a base64-encoded image"}}},
            "example": {"inputs": ["A gem of a film."] if modality == "text" else ["iVBORw0KGgo..."]}}}}}}

    @app.post("/v1/predict", openapi_extra=predict_schema, summary="Classify inputs (texts or base64 images)")
    async def predict(request: Request):
        body = await read_json(request, config.max_body_bytes)
        if not isinstance(body, dict):
            raise RequestError(422, f'body is a JSON {type(body).__name__}; send an object like {{"inputs": [...]}}')
        if "inputs" not in body:
            raise RequestError(422, f'body has no "inputs" (keys: {", ".join(body) or "none"}); send {{"inputs": [...]}}')
        values = body["inputs"]
        if not isinstance(values, list):
            raise RequestError(422, f'"inputs" is {type(values).__name__}; send a list of {"texts" if modality == "text" else "base64 images"}')
        model, outputs = await score(values, request.headers.get("x-client-key"))
        content = {"model_name": config.model_name, "model_version": model.version, **model.answers(outputs)}
        return JSONResponse(content, headers={"X-Model-Version": model.version})

    @app.get("/health", summary="Alive")
    async def health():
        return {"status": "alive"}

    @app.get("/ready", summary="Models loaded and accepting requests")
    async def ready():
        if not state["ready"]:
            return _error(503, "not ready")
        return {"status": "ready", "models": [{"version": m.version, "bundle": str(m.bundle.path)} for m in models]}

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus():
        body, content_type = metrics.render(models)
        return Response(body, media_type=content_type)

    # --- Open Inference Protocol v2 (KServe / Triton JSON) ---------------------------------------------------
    def require_model(name: str) -> None:
        if name != config.model_name:
            raise RequestError(404, f"no model {name!r}; this server has {config.model_name!r}")

    @app.get("/v2", summary="OIP v2 server metadata")
    async def v2_server():
        return {"name": "tunepipe", "version": __version__, "extensions": []}

    @app.get("/v2/health/live", summary="OIP v2 liveness")
    async def v2_live():
        return {"live": True}

    @app.get("/v2/health/ready", summary="OIP v2 readiness")
    async def v2_ready():
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/v2/models/{name}", summary="OIP v2 model metadata")
    async def v2_model(name: str):
        require_model(name)
        return {
            "name": config.model_name, "versions": [m.version for m in models], "platform": "onnxruntime_onnx",
            "inputs": [{"name": "input", "datatype": "BYTES", "shape": [-1]}],
            "outputs": task.oip_output_specs(models[0].labels),
            "parameters": {"labels": models[0].labels, "modality": modality, "task": task.name},
        }

    @app.get("/v2/models/{name}/ready", summary="OIP v2 model readiness")
    async def v2_model_ready(name: str):
        require_model(name)
        return JSONResponse({"name": name, "ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    infer_schema = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["inputs"], "example": {"inputs": [{"name": "input", "shape": [1], "datatype": "BYTES", "data": ["A gem of a film."]}]}}}}}}

    @app.post("/v2/models/{name}/infer", openapi_extra=infer_schema, summary="OIP v2 inference (one BYTES tensor of texts or base64 images)")
    async def v2_infer(name: str, request: Request):
        body = await read_json(request, config.max_body_bytes)  # read first: a refused body still reaches its end (read_json)
        require_model(name)
        values, wanted = _oip_inputs(body)
        unknown = [out for out in wanted if out not in oip_names]
        if unknown:  # before inference: a refused request uses no model time and counts in no prediction totals
            raise RequestError(400, f"unknown output {unknown[0]!r}; this model returns: {', '.join(oip_names)}")
        model, answered = await score(values, request.headers.get("x-client-key"))
        outputs = model.task.oip_outputs(answered, model.labels, model.decision)
        response = {"model_name": config.model_name, "model_version": model.version, "outputs": [outputs[key] for key in (wanted or outputs)]}
        if isinstance(body.get("id"), str):
            response["id"] = body["id"]
        return JSONResponse(response, headers={"X-Model-Version": model.version})

    return app


def _oip_inputs(body: Any) -> tuple[list, list[str]]:
    """The one BYTES input tensor's elements, and the names of the outputs asked for (empty: all)."""
    if not isinstance(body, dict):
        raise RequestError(400, f'body is a JSON {type(body).__name__}; OIP v2 expects an object {{"inputs": [{{"name", "shape", "datatype", "data"}}]}}')
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise RequestError(400, 'body has no "inputs" list of tensors; OIP v2 expects {"inputs": [{"name": "input", "shape": [N], "datatype": "BYTES", "data": [...]}]}')
    if len(tensors) != 1:
        raise RequestError(400, f"{len(tensors)} input tensors; this model takes one BYTES tensor (texts or base64 images)")
    tensor = tensors[0]
    if not isinstance(tensor, dict):
        raise RequestError(400, "inputs[0] is not a tensor object with name, shape, datatype and data")
    if tensor.get("datatype") != "BYTES":
        raise RequestError(400, f"inputs[0].datatype is {tensor.get('datatype')!r}; send BYTES (strings)")
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError(400, "inputs[0].data must be a list of strings")
    flat = [value for row in data for value in row] if data and all(isinstance(row, list) for row in data) else data
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape) or math.prod(shape) != len(flat):
        raise RequestError(400, f"inputs[0].shape {shape!r} does not match its {len(flat)} data elements")
    outputs = body.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise RequestError(400, 'outputs must be a list of {"name": ...} objects')
    return flat, [o["name"] for o in outputs]


def _warmup_input(modality: str):
    if modality == "text":
        return "warm up"
    from PIL import Image

    return Image.new("RGB", (8, 8))


def app_from_env():
    """The uvicorn factory (`--workers` starts it once per worker process): the config is in TUNEPIPE_SERVE_CONFIG."""
    return create_app(ServeConfig.from_env())


def serve(config: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, graceful_timeout: float = 30.0,
          access_log: bool = False) -> None:
    """Run the server until SIGTERM/SIGINT: uvicorn stops accepting, finishes in-flight requests, then the batchers drain."""
    import tempfile

    import uvicorn

    model_versions(config)  # a bad bundle fails here, once, with a one-line error (not in every worker)
    os.environ[CONFIG_ENV] = config.to_env()
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = tempfile.TemporaryDirectory(prefix="tunepipe-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    try:
        uvicorn.run("tunepipe.serving.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                    timeout_graceful_shutdown=graceful_timeout, access_log=access_log, log_level="info")
    finally:
        if metrics_dir is not None:
            metrics_dir.cleanup()
