"""Load-test `tunepipe serve` on 127.0.0.1: dynamic batching on vs off, fp32 vs INT8, and a naive eager-PyTorch endpoint.

Each configuration is a real server in its own process; a bounded number of one-input POST /v1/predict requests
is sent at each concurrency (one keep-alive connection per concurrent client), inputs taken in turn from the
test split. Prints requests/s and p50/p95/p99 latency per configuration and concurrency, then (targets in
brackets; "miss" is reported as is, nothing is tuned to pass):
  batching on / off throughput at the highest concurrency             [>= 3]
  ONNX server (batching, fp32) / eager server throughput, same point  [>= 2]
  p99 at concurrency 1 vs the model's batch-1 ORT latency             [<= 2x + 5 ms]
  non-2xx responses under this valid load                             [0]

With --hostile, each hostile load of issue 27 (3.9 MB texts, 8 MB bodies, 4,400-digit JSON numbers, a flood of
full requests, invented HTTP methods; with --image-bundle, PNG decompression bombs) runs on a fresh server while one
client sends valid one-input requests: their p50/p99 latency and the server's peak memory (VmHWM) are printed per load.
--compare-src DIR runs the fp32 batching server (and the hostile loads) from another source tree as well, in the same
rounds, for a before/after in one go (e.g. `git archive d74214c src | tar -x -C /tmp/before`, then --compare-src /tmp/before/src).

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
    parser.add_argument("--compare-src", type=Path, metavar="DIR", help="also serve from this tunepipe source tree (a before/after in one run)")
    parser.add_argument("--hostile", action="store_true", help="also measure a valid client under each hostile load")
    parser.add_argument("--hostile-seconds", type=float, default=6.0, help="seconds of each hostile load (default 6)")
    parser.add_argument("--image-bundle", type=Path, help="an image bundle for the image hostile loads (PNG bombs)")
    parser.add_argument("--only-hostile", action="store_true", help="skip the valid-traffic table")
    parser.add_argument("--only", metavar="TEXT", help="run only the configurations whose name contains TEXT (e.g. int8)")
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


def start(command: list[str], port: int, log: Path, src: Path = REPO / "src") -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
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


def stop_process(process: subprocess.Popen) -> None:
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


# ------------------------------------------------------------------------------------------------ hostile loads


def huge_png(side: int) -> bytes:
    """A black side x side grey PNG streamed through zlib: 89 M pixels in about 90 KB for side 9459."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (side + 1)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def hostile_loads(text: str, image: bool) -> dict[str, dict]:
    """name -> {method, body, threads}: what the attacking clients send again and again (issue 27's probes)."""
    if image:
        import base64

        bomb = base64.b64encode(huge_png(9459)).decode()
        return {"none": {}, "4 PNG bombs (9459x9459) per request": {"method": "POST", "body": json.dumps({"inputs": [bomb] * 4}).encode(), "threads": 2}}
    return {
        "none": {},
        "3.9 MB texts": {"method": "POST", "body": json.dumps({"inputs": [text + " " + "word " * 780_000]}).encode(), "threads": 2},
        "8 MB bodies": {"method": "POST", "body": json.dumps({"inputs": ["x" * (8 << 20)]}).encode(), "threads": 2},
        "4,400-digit JSON numbers": {"method": "POST", "body": ('{"inputs": [' + "9" * 4400 + "]}").encode(), "threads": 2},
        "floods of 256-input requests": {"method": "POST", "body": json.dumps({"inputs": [text] * 256}).encode(), "threads": 8},
        "invented HTTP methods": {"method": "XM", "body": b"", "threads": 2},
    }


def _attack(port: int, load: dict, stop, outcomes: list) -> None:
    import http.client

    count = 0
    while not stop.is_set():
        count += 1
        method = f"XM{count}" if load["method"] == "XM" else load["method"]
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request(method, "/v1/predict", body=load["body"] or None, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            outcomes.append(str(response.status))
            connection.close()
        except OSError as exc:  # before issue 27: a reset connection for an 8 MB body
            outcomes.append(type(exc).__name__)


def memory_mb(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: round(int(fields[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM")}


def hostile(command: list[str], src: Path, loads: dict[str, dict], probe: bytes, seconds: float, logs: Path) -> list[dict]:
    """Each load on a fresh server: attackers for `seconds` while one client sends `probe` one after another."""
    import threading
    from collections import Counter

    rows = []
    for name, load in loads.items():
        port = free_port()
        process = start([*command, "--port", str(port)], port, logs / f"bench-serve-hostile-{port}.log", src)
        try:
            load_probe = load_probe_client(port, probe, 3)  # warm
            started_mb = memory_mb(process.pid)["VmRSS"]
            stop, outcomes = threading.Event(), []
            attackers = [threading.Thread(target=_attack, args=(port, load, stop, outcomes), daemon=True) for _ in range(load.get("threads", 0))]
            for attacker in attackers:
                attacker.start()
            time.sleep(0.5 if attackers else 0)
            latencies, statuses = [], []
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                latency, status = load_probe(1)[0]
                latencies.append(latency)
                statuses.append(status)
            stop.set()
            for attacker in attackers:
                attacker.join(timeout=120)
            alive = process.poll() is None
            memory = memory_mb(process.pid) if alive else {"VmRSS": None, "VmHWM": None}
            ordered = sorted(latencies)
            rows.append({"load": name, "probe_requests": len(latencies), "probe_non_2xx": sum(1 for s in statuses if not 200 <= s < 300),
                         "probe_p50_ms": round(ordered[len(ordered) // 2], 1), "probe_p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
                         "rss_before_mb": started_mb, "rss_mb": memory["VmRSS"], "peak_mb": memory["VmHWM"], "alive": alive,
                         "attacker_outcomes": dict(Counter(outcomes))})
        finally:
            if process.poll() is None:
                stop_process(process)
    return rows


def load_probe_client(port: int, probe: bytes, warm: int):
    """A keep-alive client sending `probe`; returns a function doing n requests -> [(latency ms, status)]."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(n: int) -> list[tuple[float, int]]:
        nonlocal connection
        results = []
        for _ in range(n):
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/predict", body=probe, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                status = response.status
            except OSError:
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status = 599
            results.append(((time.perf_counter() - started) * 1000, status))
        return results

    send(warm)
    return send


def print_hostile(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'hostile load':<38} {'probe p50':>9} {'probe p99':>9} {'non-2xx':>7} {'RSS before':>10} {'peak MB':>8}  attackers got")
    for row in rows:
        peak = "died" if not row["alive"] else f"{row['peak_mb']:.0f}"
        outcomes = ", ".join(f"{k} x{v}" for k, v in sorted(row["attacker_outcomes"].items())) or "-"
        print(f"{row['load']:<38} {row['probe_p50_ms']:>9.1f} {row['probe_p99_ms']:>9.1f} {row['probe_non_2xx']:>7} {row['rss_before_mb']:>10.0f} {peak:>8}  {outcomes}")


def hostile_section(args: argparse.Namespace, serve: list[str], text: str, logs: Path) -> None:
    """The hostile loads on the fp32 batching server (this source tree, then --compare-src), text then image bundle."""
    sources = {"this tree": REPO / "src", **({"--compare-src": args.compare_src.resolve()} if args.compare_src else {})}
    probe = json.dumps({"inputs": [text]}).encode()
    results = {}
    for label, src in sources.items():
        rows = hostile(serve, src, hostile_loads(text, image=False), probe, args.hostile_seconds, logs)
        print_hostile(f"hostile loads, text bundle, served from {label} ({src}): a valid one-input client's latency (ms) and the server's memory (MB)", rows)
        results[f"text, {label}"] = rows
        if args.image_bundle:
            import base64
            import io

            from PIL import Image

            buffer = io.BytesIO()
            Image.new("RGB", (64, 64), (120, 40, 200)).save(buffer, "PNG")
            image_probe = json.dumps({"inputs": [base64.b64encode(buffer.getvalue()).decode()]}).encode()
            command = [sys.executable, "-m", "tunepipe.cli", "serve", str(args.image_bundle), "--threads", str(args.threads)]
            rows = hostile(command, src, hostile_loads(text, image=True), image_probe, args.hostile_seconds, logs)
            print_hostile(f"hostile loads, image bundle {args.image_bundle}, served from {label}", rows)
            results[f"image, {label}"] = rows
    print()
    if args.json:
        args.json.with_suffix(".hostile.json").write_text(json.dumps(results, indent=2) + "\n")


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
    sources = {name: REPO / "src" for name in configs}
    if args.compare_src:
        for name in ("onnx fp32, batching", "onnx int8, batching"):
            configs[f"{name} [compare-src]"] = configs[name]
            sources[f"{name} [compare-src]"] = args.compare_src.resolve()
    if args.only:
        configs = {name: command for name, command in configs.items() if args.only in name}
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    if args.hostile or args.only_hostile:
        hostile_section(args, serve, texts[0], logs)
    if args.only_hostile:
        return 0

    ort_ms = batch1_ort_ms(args.bundle, texts[0], args.threads, args.runs)
    print(f"bundle {args.bundle} (version {manifest['version']}, {manifest['base_model']}, {manifest['pruning_level']}); "
          f"{args.requests} requests per point and round, {args.rounds} round(s), {args.threads} thread(s) per model; batch-1 ORT latency {ort_ms:.2f} ms\n")
    print(f"{'configuration':<34} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'non-2xx':>7} {'mean batch':>10}")
    rounds: dict[str, list[list[dict]]] = {name: [] for name in configs}
    for number in range(args.rounds):
        order = list(configs) if number % 2 == 0 else list(reversed(configs))
        for name in order:
            port = free_port()
            command = [*configs[name], str(port)] if name == "eager pytorch" else [*configs[name], "--port", str(port)]
            process = start(command, port, logs / f"bench-serve-{port}.log", sources[name])
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
                stop_process(process)
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
            print(f"{name:<34} {level:>4} {row['rps']:>8.1f} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['non_2xx']:>7} {batch}")

    top = max(levels)

    def at(name: str, level: int) -> dict:
        return next(row for row in results[name] if row["concurrency"] == level)

    def verdict(ok: bool | None) -> str:
        return "" if ok is None else "meets" if ok else "miss"

    print()
    checks = {}
    if {"onnx fp32, batching", "onnx fp32, no batching"} <= set(results):
        on, off = at("onnx fp32, batching", top)["rps"], at("onnx fp32, no batching", top)["rps"]
        checks["batching_on_off_rps"] = {"value": round(on / off, 2), "target": ">= 3", "met": on / off >= 3}
    if {"eager pytorch", "onnx fp32, batching", "onnx int8, batching"} <= set(results):
        eager = at("eager pytorch", top)["rps"]
        checks["onnx_eager_rps"] = {"value": round(on / eager, 2), "target": ">= 2", "met": on / eager >= 2}
        int8 = at("onnx int8, batching", top)["rps"]
        checks["int8_eager_rps"] = {"value": round(int8 / eager, 2), "target": "(not a target)", "met": None}
    for name in [name for name in results if f"{name} [compare-src]" in results]:  # this tree against --compare-src, same rounds
        checks[f"compare:{name}"] = {"value": round(at(name, top)["rps"] / at(f"{name} [compare-src]", top)["rps"], 2), "target": "(not worse: ~1)", "met": None}
    if 1 in levels and "onnx fp32, batching" in results:
        p99 = at("onnx fp32, batching", 1)["p99_ms"]
        limit = 2 * ort_ms + 5
        checks["p99_c1_ms"] = {"value": p99, "target": f"<= {limit:.2f} (2 x {ort_ms:.2f} + 5)", "met": p99 <= limit}
    non_2xx = sum(row["non_2xx"] for rows in results.values() for row in rows)
    checks["non_2xx"] = {"value": non_2xx, "target": "0", "met": non_2xx == 0}
    labels = {"batching_on_off_rps": f"batching on / off throughput, concurrency {top}", "onnx_eager_rps": f"ONNX / eager server throughput, concurrency {top}",
              "int8_eager_rps": f"ONNX INT8 / eager server throughput, conc. {top}", "p99_c1_ms": "p99 at concurrency 1 (ms)", "non_2xx": "non-2xx responses"}
    labels |= {key: f"{key[8:]}: this tree / --compare-src req/s, conc. {top}" for key in checks if key.startswith("compare:")}
    for key, check in checks.items():
        print(f"{labels[key]:<48} {check['value']:>8}   target {check['target']:<24} {verdict(check['met'])}")
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "version": manifest["version"], "threads": args.threads, "requests": args.requests, "rounds": args.rounds,
                                         "batch1_ort_ms": round(ort_ms, 3), "results": results, "checks": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
