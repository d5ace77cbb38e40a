"""Process-wide settings every stage applies first: thread counts, seeds, logging."""

from __future__ import annotations

import logging
import os
import sys
import warnings

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Keep a job to its declared `threads:` so parallel Snakemake jobs do not oversubscribe the cores.

    The environment variables reach libraries loaded later; torch is told directly if already loaded.
    """
    threads = max(1, int(threads))
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def passive_thread_pools() -> None:
    """Threads of torch's OpenMP pool sleep when they wait, instead of spinning (a user's own setting wins).

    A spinning pool waits on a thread that another process took the core from: on 2 busy cores, a training step of
    half of MiniLM took 4.6 s with 2 spinning threads, 1.7 s with 1 thread, and 1.7 s with 2 passive ones; every rule
    beside one busy process now stays within 1.6x its quiet time (benchmarks/bench_contention.py). The policy changes
    when threads wait, not what they compute: results are the same to the bit. Takes effect only if torch is not
    loaded yet.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def launch_rank() -> int:
    """This process's rank among a job's training processes (DDP), known before training starts: SLURM's task id in
    a step of several tasks, else LOCAL_RANK, which Lightning's launcher sets in the processes it starts; 0 otherwise."""
    if "SLURM_PROCID" in os.environ and int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1) > 1:
        return int(os.environ["SLURM_PROCID"])
    return int(os.environ.get("LOCAL_RANK") or 0)


def torch_threads(threads: int) -> None:
    """Call after importing torch (lazy imports keep `--help` fast)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def offline_defaults() -> None:
    """Nothing in the default path may reach a model hub; a user who configures a hub id can unset these."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def setup_logging(stage: str) -> logging.Logger:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [{stage}] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", message=".*(LeafSpec|is deprecated|exists and is not empty|does not have many workers|litlogger).*")
    quiet_libraries()
    return logging.getLogger(f"tunepipe.{stage}")


def quiet_libraries() -> None:
    """Libraries reset their log levels on import: call again after importing Lightning/transformers."""
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "torch", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
