"""Load-test `tunepipe serve` on 127.0.0.1: dynamic batching on vs off, fp32 vs INT8, and a naive eager-PyTorch endpoint.

Each configuration is a real server in its own process; a bounded number of one-input POST /v1/predict requests
is sent at each concurrency (one keep-alive connection per concurrent client), inputs taken in turn from the
test split. Prints requests/s and p50/p95/p99 latency per configuration and concurrency, then (targets in
brackets; "miss" is reported as is, nothing is tuned to pass):
  batching on / off throughput at the highest concurrency             [>= 3]
  ONNX server (batching, fp32) / eager server throughput, same point  [>= 2]
  p99 at concurrency 1 vs the model's batch-1 ORT latency             [<= 2x + 5 ms]
  non-2xx responses under this valid load                             [0]

The eager endpoint is what a first deployment often is: FastAPI, a sync route running the PyTorch model
(results/prune/model.pt, the model the bundle was exported from) on each request, tokenised with the
Hugging Face tokenizer. Every server gets the same --threads.

  python benchmarks/bench_serve.py --bundle results/export/bundle --model results/prune/model.pt --split results/split/test.jsonl
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("results/export/bundle"), help="the bundle to serve (default results/export/bundle)")
    parser.add_argument("--model", type=Path, default=Path("results/prune/model.pt"), help="the PyTorch model of the eager endpoint (default results/prune/model.pt)")
    parser.add_argument("--split", type=Path, default=Path("results/split/test.jsonl"), help="JSONL rows whose inputs are sent (default results/split/test.jsonl)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per configuration and concurrency (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests first (default 20)")
    parser.add_argument("--concurrency", default="1,8,32", help="concurrent clients (default 1,8,32)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every server's model (default 1)")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="repeat every configuration, alternating their order; medians reported (default 1)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs of the batch-1 ORT latency, median reported (default 50)")
    parser.add_argument("--skip-eager", action="store_true", help="leave out the eager endpoint (no torch needed)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--eager-server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: run the eager endpoint
    return parser.parse_args(argv)


def eager_app(model_path: Path, threads: int):
    """The naive endpoint: one PyTorch forward per request, in FastAPI's thread pool."""
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel

    from tunepipe.checkpoints import load_model
    from tunepipe.modalities import get_modality
    from tunepipe.models.inference import model_inputs

    torch.set_num_threads(threads)
    model, payload = load_model(model_path)
    modality = get_modality(payload["modality"])
    processor = modality.load_processor(payload["model_cfg"])
    labels = payload["label_names"]
    app = FastAPI()

    class Body(BaseModel):  # no `from __future__ import annotations` in this file: FastAPI must see this class, not its name
        inputs: list[str]

    @app.get("/ready")
    def ready():
        return {"ready": True}

    @app.post("/v1/predict")
    def predict(body: Body):
        dataset = modality.encode([{modality.input_field: value} for value in body.inputs], None, payload["model_cfg"], processor)
        batch = dataset.collate([dataset[i] for i in range(len(dataset))])
        with torch.inference_mode():
            probabilities = torch.softmax(model(**model_inputs(model, batch)), dim=1)
        best = probabilities.argmax(1).tolist()
        return {"labels": [labels[i] for i in best], "confidences": probabilities.max(1).values.tolist(), "model_version": "eager"}

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server not ready after 180 s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def _client(port: int, bodies: list[bytes], start_index: int, step: int, count: int, latencies: list[float], statuses: list[int]) -> None:
    """One keep-alive HTTP/1.1 connection sending `count` requests in turn (a minimal client: no library overhead)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for k in range(count):
            body = bodies[(start_index + k * step) % len(bodies)]
            head = f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses.append(int(status_line.split()[1]))
    finally:
        writer.close()


def load(port: int, bodies: list[bytes], requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: list[int] = []
    per_client = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(_client(port, bodies, i, concurrency, n, latencies, statuses) for i, n in enumerate(per_client) if n))
        return time.perf_counter() - started

    wall = asyncio.run(run())
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {"concurrency": concurrency, "requests": len(latencies), "seconds": round(wall, 3), "rps": round(len(latencies) / wall, 1),
            "p50_ms": round(pct(0.5), 2), "p95_ms": round(pct(0.95), 2), "p99_ms": round(pct(0.99), 2),
            "non_2xx": sum(1 for s in statuses if not 200 <= s < 300)}


def batch_totals(port: int) -> tuple[float, float]:
    """(inputs, batches) so far, from the server's /metrics (0, 0 for the eager endpoint, which has none)."""
    import urllib.error
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    except urllib.error.HTTPError:
        return 0.0, 0.0
    values = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for key in values:
            if line.startswith(f"tunepipe_batch_size_{key}{{"):
                values[key] += float(line.rsplit(" ", 1)[1])
    return values["sum"], values["count"]


def batch1_ort_ms(bundle: Path, text: str, threads: int, runs: int) -> float:
    from tunepipe.serving.runtime import Predictor

    predictor = Predictor(bundle, threads=threads)
    checked = predictor.check([text])
    for _ in range(5):
        predictor.logits(checked)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        predictor.logits(checked)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO / "src"))
    if args.eager_server:
        import uvicorn

        uvicorn.run(eager_app(args.model, args.threads), host="127.0.0.1", port=args.eager_server, log_level="warning")
        return 0
    from tunepipe.io import read_json, read_jsonl

    manifest = read_json(args.bundle / "bundle.json")
    if manifest["modality"] != "text":
        raise SystemExit("bench_serve.py sends texts; give a text bundle")
    texts = [row["text"] for row in read_jsonl(args.split)]
    bodies = [json.dumps({"inputs": [text]}).encode() for text in texts]
    levels = [int(c) for c in args.concurrency.split(",")]
    serve = [sys.executable, "-m", "tunepipe.cli", "serve", str(args.bundle), "--threads", str(args.threads),
             "--max-batch-size", str(args.max_batch_size), "--max-wait-ms", str(args.max_wait_ms)]
    configs = {
        "onnx fp32, batching": serve,
        "onnx fp32, no batching": [*serve, "--no-batching"],
        "onnx int8, batching": [*serve, "--int8"],
    }
    if not args.skip_eager:
        configs["eager pytorch"] = [sys.executable, str(Path(__file__).resolve()), "--model", str(args.model), "--threads", str(args.threads), "--eager-server"]

    ort_ms = batch1_ort_ms(args.bundle, texts[0], args.threads, args.runs)
    print(f"bundle {args.bundle} (version {manifest['version']}, {manifest['base_model']}, {manifest['pruning_level']}); "
          f"{args.requests} requests per point and round, {args.rounds} round(s), {args.threads} thread(s) per model; batch-1 ORT latency {ort_ms:.2f} ms\n")
    print(f"{'configuration':<24} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'non-2xx':>7} {'mean batch':>10}")
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    rounds: dict[str, list[list[dict]]] = {name: [] for name in configs}
    for number in range(args.rounds):
        order = list(configs) if number % 2 == 0 else list(reversed(configs))
        for name in order:
            port = free_port()
            command = [*configs[name], str(port)] if name == "eager pytorch" else [*configs[name], "--port", str(port)]
            process = start(command, port, logs / f"bench-serve-{port}.log")
            try:
                load(port, bodies, args.warmup, min(levels))
                rows = []
                for level in levels:
                    before = batch_totals(port)
                    row = load(port, bodies, args.requests, level)
                    after = batch_totals(port)
                    row["mean_batch"] = round((after[0] - before[0]) / (after[1] - before[1]), 2) if after[1] > before[1] else None
                    rows.append(row)
                rounds[name].append(rows)
            finally:
                stop(process)
    results: dict[str, list[dict]] = {}
    for name in configs:  # the median of each figure over the rounds; errors are summed
        results[name] = []
        for i, level in enumerate(levels):
            runs = [rows[i] for rows in rounds[name]]
            row = {"concurrency": level, "rounds": len(runs), "requests": sum(r["requests"] for r in runs), "non_2xx": sum(r["non_2xx"] for r in runs),
                   "rps_rounds": [r["rps"] for r in runs]}
            for key in ("rps", "p50_ms", "p95_ms", "p99_ms"):
                row[key] = round(statistics.median(r[key] for r in runs), 2)
            batches = [r["mean_batch"] for r in runs if r["mean_batch"]]
            row["mean_batch"] = round(statistics.median(batches), 2) if batches else None
            results[name].append(row)
            batch = f"{row['mean_batch']:>10.2f}" if row["mean_batch"] else f"{'-':>10}"
            print(f"{name:<24} {level:>4} {row['rps']:>8.1f} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['non_2xx']:>7} {batch}")

    top = max(levels)

    def at(name: str, level: int) -> dict:
        return next(row for row in results[name] if row["concurrency"] == level)

    def verdict(ok: bool | None) -> str:
        return "" if ok is None else "meets" if ok else "miss"

    print()
    checks = {}
    on, off = at("onnx fp32, batching", top)["rps"], at("onnx fp32, no batching", top)["rps"]
    checks["batching_on_off_rps"] = {"value": round(on / off, 2), "target": ">= 3", "met": on / off >= 3}
    if "eager pytorch" in results:
        eager = at("eager pytorch", top)["rps"]
        checks["onnx_eager_rps"] = {"value": round(on / eager, 2), "target": ">= 2", "met": on / eager >= 2}
        int8 = at("onnx int8, batching", top)["rps"]
        checks["int8_eager_rps"] = {"value": round(int8 / eager, 2), "target": "(not a target)", "met": None}
    if 1 in levels:
        p99 = at("onnx fp32, batching", 1)["p99_ms"]
        limit = 2 * ort_ms + 5
        checks["p99_c1_ms"] = {"value": p99, "target": f"<= {limit:.2f} (2 x {ort_ms:.2f} + 5)", "met": p99 <= limit}
    non_2xx = sum(row["non_2xx"] for rows in results.values() for row in rows)
    checks["non_2xx"] = {"value": non_2xx, "target": "0", "met": non_2xx == 0}
    labels = {"batching_on_off_rps": f"batching on / off throughput, concurrency {top}", "onnx_eager_rps": f"ONNX / eager server throughput, concurrency {top}",
              "int8_eager_rps": f"ONNX INT8 / eager server throughput, conc. {top}", "p99_c1_ms": "p99 at concurrency 1 (ms)", "non_2xx": "non-2xx responses"}
    for key, check in checks.items():
        print(f"{labels[key]:<48} {check['value']:>8}   target {check['target']:<24} {verdict(check['met'])}")
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "version": manifest["version"], "threads": args.threads, "requests": args.requests, "rounds": args.rounds,
                                         "batch1_ort_ms": round(ort_ms, 3), "results": results, "checks": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
