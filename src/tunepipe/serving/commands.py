"""The `tunepipe predict` and `tunepipe serve` subcommands (wired into tunepipe.cli); light imports only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PREDICT_HELP = """Score a file with a bundle: CSV, TSV, JSONL or Parquet with a text column (texts), or with an image-path
column, or a folder of images (images). Writes a CSV of id and the bundle's answer: label, confidence and one
prob_<label> column per label; a multi-label bundle: labels (joined by ";", at the bundle's thresholds) and one
prob_<label> column per label; a regression bundle: prediction.

examples:
  tunepipe predict results/export/bundle reviews.csv -o scored.csv
  tunepipe predict results/export/bundle reviews.jsonl -o scored.csv --text-column review --id-column review_id --int8
  tunepipe predict results/export/bundle photos/ -o scored.csv          # an image bundle
"""

SERVE_HELP = """Serve a bundle over HTTP (FastAPI on uvicorn): POST /v1/predict, the Open Inference Protocol v2 routes,
/health, /ready, /metrics (Prometheus, with the drift of the answers against the test split's), /docs (OpenAPI).
Answers follow the bundle's task: labels with probabilities, label sets with per-label probabilities, or numbers.
SIGTERM or Ctrl-C finishes in-flight requests, then exits.

examples:
  tunepipe serve results/export/bundle --port 8000
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"inputs": ["A gem of a film."]}'
  tunepipe serve results/export/bundle --ab other/bundle --split 0.2      # 20% of clients get other/bundle
  tunepipe serve --stage prod                                             # the bundle the registry's prod stage points at

limits (each request's memory and time are bounded; a request over a limit gets a 413, a full queue a 503 with Retry-After):
  --max-body-mb, --max-inputs          the request's size
  --max-image-pixels, --max-request-pixels   pixels decoded per image and per request (default: from the model's image size;
                                       checked from the image's header, before decoding; PNG/JPEG/WebP/GIF/BMP/TIFF only)
  --max-text-chars                     a longer text is cut before tokenising (default: 64 x the bundle's max_length),
                                       or refused with --refuse-long-texts
  --max-queue                          inputs waiting per model (default: 2 x --max-inputs)
The bundle's files are checked against bundle.json's sha256 when it loads; --no-verify skips that (a warning is logged).
"""


def add_commands(sub) -> None:
    predict = sub.add_parser("predict", help="score a CSV/JSONL/Parquet file or an image folder with a bundle (CSV out)",
                             description=PREDICT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument("bundle", type=Path, metavar="BUNDLE", help="a bundle folder (results/export/bundle)")
    predict.add_argument("input", type=Path, metavar="INPUT", help="a .csv/.tsv/.jsonl/.parquet file, or a folder of images")
    predict.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="the CSV to write")
    predict.add_argument("--text-column", "--image-column", dest="input_column", metavar="NAME",
                         help="the column holding the input (default: text, or path for images)")
    predict.add_argument("--id-column", default="id", metavar="NAME", help="the column holding each row's id (default: id; row numbers if absent)")
    predict.add_argument("--batch-size", type=int, default=64, metavar="N", help="inputs per model call (default: 64)")
    predict.add_argument("--threads", type=int, default=1, metavar="N", help="ONNX Runtime threads (default: 1)")
    predict.add_argument("--int8", action="store_true", help="use the INT8 model (smaller, usually faster; check its accuracy in the model card)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar (it shows only on a terminal anyway)")
    predict.add_argument("--max-image-pixels", type=int, metavar="N",
                         help="pixels of one image, read from its header before decoding (default: Pillow's limit, 89 M: these are your own files)")
    predict.add_argument("--no-verify", action="store_true", help="do not check the bundle's files against bundle.json's sha256 (at your own risk)")
    predict.set_defaults(func=_predict)

    serve = sub.add_parser("serve", help="serve a bundle over HTTP (REST, OIP v2, Prometheus metrics, A/B)",
                           description=SERVE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("bundle", type=Path, nargs="?", metavar="BUNDLE", help="a bundle folder (or use --stage)")
    serve.add_argument("--stage", metavar="STAGE", help="serve the version a registry stage points at (e.g. prod) instead of BUNDLE")
    serve.add_argument("--artifact", metavar="NAME", help="the registry artifact for --stage (default: the project's)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, metavar="N", help="server processes (default: 1); each loads the model")
    serve.add_argument("--threads", type=int, default=1, metavar="N", help="ONNX Runtime threads per model (default: 1)")
    serve.add_argument("--int8", action="store_true", help="serve the INT8 model")
    serve.add_argument("--max-batch-size", type=int, default=32, metavar="N", help="most inputs in one model batch (default: 32)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                       help="under load, how long a batch waits for more requests (default: 5; a lone client never waits)")
    serve.add_argument("--no-batching", action="store_true", help="run every request as its own batch (for comparison)")
    serve.add_argument("--max-inputs", type=int, default=256, metavar="N", help="most inputs per request (default: 256)")
    serve.add_argument("--max-body-mb", type=float, default=4.0, metavar="MB", help="largest request body (default: 4)")
    serve.add_argument("--max-queue", type=int, metavar="N", help="inputs admitted per model before a 503 (default: 2 x --max-inputs)")
    serve.add_argument("--max-image-pixels", type=int, metavar="N",
                       help="pixels of one image, read from its header before decoding (default: (16 x image size)^2, at least 2048^2)")
    serve.add_argument("--max-request-pixels", type=int, metavar="N", help="pixels of all images of one request (default: 4 x --max-image-pixels)")
    serve.add_argument("--max-text-chars", type=int, metavar="N", help="characters of one text; a longer one is cut before tokenising (default: 64 x max_length)")
    serve.add_argument("--refuse-long-texts", action="store_true", help="answer 413 to a text over --max-text-chars instead of cutting it")
    serve.add_argument("--no-verify", action="store_true", help="do not check the bundle's files against bundle.json's sha256 (at your own risk; logged)")
    serve.add_argument("--ab", type=Path, metavar="BUNDLE", help="A/B: a second bundle that gets --split of the traffic")
    serve.add_argument("--split", type=float, default=0.0, metavar="X", help="A/B: share of traffic (0-1) for --ab; sticky per X-Client-Key header")
    serve.add_argument("--version", dest="model_version", metavar="NAME", help="the version name responses report (default: the bundle's)")
    serve.add_argument("--ab-version", metavar="NAME", help="the version name of --ab (default: its bundle's)")
    serve.add_argument("--model-name", default="tunepipe-model", metavar="NAME", help="the model's name in OIP v2 routes (default: tunepipe-model)")
    serve.add_argument("--graceful-timeout", type=float, default=30.0, metavar="S", help="on SIGTERM, how long in-flight requests may take (default: 30)")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.set_defaults(func=_serve)


def _fail(command: str, message: str) -> int:
    print(f"tunepipe {command}: error: {message}", file=sys.stderr)
    return 2


def _predict(args: argparse.Namespace) -> int:
    from tunepipe.errors import TunepipeError
    from tunepipe.serving.batch import predict_file
    from tunepipe.serving.runtime import InputLimits, Predictor

    if args.batch_size < 1 or args.threads < 1 or (args.max_image_pixels is not None and args.max_image_pixels < 1):
        return _fail("predict", "--batch-size, --threads and --max-image-pixels must be at least 1")
    if args.no_verify:
        print("tunepipe predict: warning: --no-verify: the bundle's files are not checked against bundle.json's sha256", file=sys.stderr)
    try:
        from PIL import Image

        # Local files, not a network's: Pillow's own bound per image (as before), none per batch; texts are cut as in serve.
        limits = InputLimits(image_pixels=args.max_image_pixels or Image.MAX_IMAGE_PIXELS, request_pixels=sys.maxsize)
        predictor = Predictor(args.bundle, int8=args.int8, threads=args.threads, verify=not args.no_verify, limits=limits)
        count = predict_file(predictor, args.input, args.output, batch_size=args.batch_size, input_column=args.input_column,
                             id_column=args.id_column, progress=False if args.no_progress else None)
    except TunepipeError as exc:
        return _fail("predict", str(exc))
    except KeyboardInterrupt:
        print("interrupted; no output was written", file=sys.stderr)
        return 130
    print(f"scored {count} rows with model {predictor.version} -> {args.output}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tunepipe.errors import TunepipeError
    from tunepipe.serving.server import ServeConfig, serve

    version = args.model_version
    bundle = args.bundle
    try:
        if args.stage:
            if bundle is not None:
                return _fail("serve", "give either BUNDLE or --stage, not both")
            try:
                from tunepipe.registry import bundle_for_stage
            except ImportError:
                return _fail("serve", "--stage needs tunepipe.registry, which this install lacks; serve a bundle folder instead")
            bundle, stage_version = bundle_for_stage(args.stage, artifact=args.artifact, repo=".")
            version = version or stage_version
        elif bundle is None:
            return _fail("serve", "give a bundle folder (results/export/bundle) or --stage STAGE")
        if args.ab is None and args.split:
            return _fail("serve", "--split needs --ab OTHER_BUNDLE")
        if not 0.0 <= args.split <= 1.0:
            return _fail("serve", f"--split must be between 0 and 1, got {args.split}")
        given = [args.max_queue, args.max_image_pixels, args.max_request_pixels, args.max_text_chars]
        if min(args.workers, args.threads, args.max_batch_size, args.max_inputs, *(n for n in given if n is not None)) < 1 or args.max_body_mb <= 0:
            return _fail("serve", "--workers, --threads, --max-batch-size, --max-inputs, --max-body-mb and the other --max-* limits must be positive")
        if args.max_queue is not None and args.max_queue < args.max_inputs:
            return _fail("serve", f"--max-queue {args.max_queue} is below --max-inputs {args.max_inputs}: a full request would never fit")
        config = ServeConfig(bundle=str(bundle), ab=str(args.ab) if args.ab else None, split=args.split, int8=args.int8, threads=args.threads,
                             batching=not args.no_batching, max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             max_inputs=args.max_inputs, max_body_bytes=int(args.max_body_mb * (1 << 20)), model_name=args.model_name,
                             version=version, ab_version=args.ab_version, max_queue=args.max_queue, max_image_pixels=args.max_image_pixels,
                             max_request_pixels=args.max_request_pixels, max_text_chars=args.max_text_chars,
                             refuse_long_texts=args.refuse_long_texts, verify=not args.no_verify)
        if args.no_verify:
            print("tunepipe serve: warning: --no-verify: the bundle's files are not checked against bundle.json's sha256", file=sys.stderr)
        serve(config, host=args.host, port=args.port, workers=args.workers, graceful_timeout=args.graceful_timeout, access_log=args.access_log)
    except TunepipeError as exc:
        return _fail("serve", str(exc))
    return 0
