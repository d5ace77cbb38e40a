"""Search spaces with ranges, TPE asked in rounds, and the median pruning rule (the library behind `sweep.method: tpe`).

`sweep.parameters` maps a dotted key to a list (categorical) or a range: `{low, high, log}` (float) or
`{low, high, step}` (integer when both bounds are integers). TPE runs as DAG jobs: round k asks
`sweep.parallel` parameter sets from the trials of rounds < k, replayed into an in-memory Optuna study in
their (round, index) order with a sampler seeded from (sweep.seed, k), so what is asked depends on the
seed and the earlier results only, never on which job finished first. A trial stops at the first epoch
after the warm-up where its metric is worse than the median of the earlier rounds' trials at that epoch.
Importing this module is cheap (optuna is imported where TPE asks).
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunepipe.errors import ParamsError

RANGE_KEYS = ("low", "high", "log", "step")
#: Asks of a round's slot that may repeat an earlier variant before a random untried point is taken, and random tries.
_TPE_REPEATS, _RANDOM_TRIES = 5, 200


@dataclass(frozen=True)
class Range:
    """A numeric interval to sample from: integers when both bounds (and the step) are integers."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    integer: bool = False

    def draw(self, rng: random.Random) -> float | int:
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return min(self.high, max(self.low, round(value))) if self.integer else value
        if self.step is not None or self.integer:
            step = self.step or 1
            count = int(math.floor((self.high - self.low) / step + 1e-9))
            value = self.low + step * rng.randint(0, count)
            return int(value) if self.integer else value
        return rng.uniform(self.low, self.high)

    def ends(self) -> list[float | int]:
        return [self.low, self.high]


Space = dict[str, "list[Any] | Range"]


def _number(key: str, name: str, value: Any) -> float | int:
    # `snakemake --config sweep='{...}'` hands nested numbers over as text ("1e-5" is a string in YAML 1.1).
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"sweep.parameters: {key}.{name} must be a number, not {value!r}.")
    return value


def parse_range(key: str, spec: Mapping[str, Any]) -> Range:
    """A `{low, high, log}` / `{low, high, step}` mapping, checked, with the key named in every error."""
    unknown = sorted(set(spec) - set(RANGE_KEYS))
    if unknown or "low" not in spec or "high" not in spec:
        raise ParamsError(f"sweep.parameters: {key} must be a list of values or a range {{low, high, log}} (float) / "
                          f"{{low, high, step}} (integer bounds: integers){'; unknown: ' + ', '.join(unknown) if unknown else ''}.")
    low, high = _number(key, "low", spec["low"]), _number(key, "high", spec["high"])
    log = spec.get("log", False)
    if isinstance(log, str):
        log = {"true": True, "false": False}.get(log.lower(), log)
    if not isinstance(log, bool):
        raise ParamsError(f"sweep.parameters: {key}.log must be true or false, not {log!r}.")
    step = None if spec.get("step") is None else _number(key, "step", spec["step"])
    if not low < high:
        raise ParamsError(f"sweep.parameters: {key}: low ({low}) must be less than high ({high}).")
    if log and low <= 0:
        raise ParamsError(f"sweep.parameters: {key}: a log range needs low > 0 (got {low}).")
    if log and step is not None:
        raise ParamsError(f"sweep.parameters: {key}: give either log or step, not both.")
    if step is not None and step <= 0:
        raise ParamsError(f"sweep.parameters: {key}.step must be > 0 (got {step}).")
    integer = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    return Range(low, high, log, step, integer)


def parse_space(parameters: Mapping[str, Any]) -> Space:
    """Each key's values: a list as given, or a Range."""
    space: Space = {}
    for key, spec in parameters.items():
        if isinstance(spec, Mapping):
            space[key] = parse_range(key, spec)
        elif isinstance(spec, (list, tuple)) and spec:
            space[key] = list(spec)
        else:
            raise ParamsError(f"sweep.parameters: {key} must be a non-empty list of values or a range {{low, high, log}} / {{low, high, step}}, "
                              f"not {spec!r}.")
    return space


def has_ranges(space: Space) -> bool:
    return any(isinstance(values, Range) for values in space.values())


def draw(space: Space, rng: random.Random) -> dict[str, Any]:
    """One random point: a uniform choice from each list, a uniform (or log-uniform) draw from each range."""
    return {key: values.draw(rng) if isinstance(values, Range) else rng.choice(values) for key, values in space.items()}


# ------------------------------------------------------------------------------------------------- TPE


@dataclass(frozen=True)
class Told:
    """A finished trial of an earlier round, as the study is told it."""

    round: int
    index: int
    name: str
    params: dict[str, Any]  # the sampler's own encoding (list values by index)
    value: float
    pruned: bool = False
    intermediate: dict[int, float] = field(default_factory=dict)  # epoch -> sweep.metric


def round_seed(seed: int, round_index: int) -> int:
    """The sampler's seed in round k: from (sweep.seed, k), so each round draws afresh but reproducibly."""
    return int.from_bytes(hashlib.sha256(f"tunepipe-tpe:{seed}:{round_index}".encode()).digest()[:4], "big")


def round_sizes(samples: int, parallel: int) -> list[int]:
    """Trials per round: `parallel` each, the last one what is left of `samples`."""
    return [min(parallel, samples - start) for start in range(0, samples, parallel)]


def distributions(space: Space) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    result = {}
    for key, values in space.items():
        if isinstance(values, Range):
            kind = IntDistribution if values.integer else FloatDistribution
            result[key] = kind(values.low, values.high, log=values.log, step=values.step if (values.step or not values.integer) else 1)
        else:  # by index: values may be anything JSON holds (a `_target_` string, a list...)
            result[key] = CategoricalDistribution(list(range(len(values))))
    return result


def decode(space: Space, params: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides a sampler's point stands for (exact values; list entries by index)."""
    return {key: (params[key] if isinstance(values, Range) else values[params[key]]) for key, values in space.items()}


def ask_round(space: Space, told: Sequence[Told], *, seed: int, round_index: int, count: int, mode: str, startup: int,
              name_of) -> list[dict[str, Any]]:
    """`count` new points `[{"name", "params", "overrides"}]` from the earlier rounds' results, deterministically.

    A point whose variant name (`name_of(overrides)`) an earlier or this round already has is told as failed and
    asked again; after a few repeats (TPE keeps proposing a categorical value it likes) the point is drawn at
    random among the untried ones, with a generator seeded like the sampler. A small categorical space may run
    out: the round then asks fewer.
    """
    import optuna
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = distributions(space)
    sampler = optuna.samplers.TPESampler(seed=round_seed(seed, round_index), n_startup_trials=startup, constant_liar=True)
    study = optuna.create_study(direction="maximize" if mode == "max" else "minimize", sampler=sampler)
    for trial in sorted(told, key=lambda t: (t.round, t.index)):
        study.add_trial(create_trial(state=TrialState.PRUNED if trial.pruned else TrialState.COMPLETE, value=trial.value, params=dict(trial.params),
                                     distributions=dists, intermediate_values=dict(trial.intermediate)))
    taken = {trial.name for trial in told}
    fallback = random.Random(round_seed(seed, round_index))
    asked: list[dict[str, Any]] = []
    for _ in range(count):
        trial = None
        for _ in range(_TPE_REPEATS):
            trial = study.ask(dists)
            if name_of(decode(space, trial.params)) not in taken:
                break
            study.tell(trial, state=TrialState.FAIL)
            trial = None
        for _ in range(0 if trial else _RANDOM_TRIES):
            point = {key: values.draw(fallback) if isinstance(values, Range) else fallback.randrange(len(values)) for key, values in space.items()}
            if name_of(decode(space, point)) not in taken:
                study.enqueue_trial(point)
                trial = study.ask(dists)
                break
        if trial is None:
            break
        overrides = decode(space, trial.params)
        taken.add(name_of(overrides))
        asked.append({"name": name_of(overrides), "params": dict(trial.params), "overrides": overrides})
    return asked


# --------------------------------------------------------------------------------------------- pruning


def metric_by_epoch(history: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    """k -> metric at one history.csv's k-th row (a row per validation: per epoch unless train.val_check_interval
    validates within epochs; rows without the metric left out)."""
    result = {}
    for index, row in enumerate(history, 1):
        value = row.get(metric)
        if value not in (None, ""):
            result[index] = float(value)
    return result


def median_by_epoch(histories: Sequence[Mapping[int, float]]) -> dict[int, float]:
    """The median of the earlier trials that reached each epoch."""
    epochs = sorted({epoch for history in histories for epoch in history})
    return {epoch: statistics.median([h[epoch] for h in histories if epoch in h]) for epoch in epochs}


def worse_than_median(value: float, epoch: int, medians: Mapping[int, float], mode: str, warmup_epochs: int) -> bool:
    """The median rule: after the warm-up, strictly worse than the earlier trials' median at the same epoch."""
    if epoch <= warmup_epochs or epoch not in medians:
        return False
    return value < medians[epoch] if mode == "max" else value > medians[epoch]


def pruning_summary(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Epochs trained, epochs a full sweep would train (a pruned trial would have gone to its max_epochs) and the share saved."""
    trained = sum(int(t.get("epochs_run") or 0) for t in trials)
    full = sum(int(t["max_epochs"]) if t.get("pruned_at_epoch") and t.get("max_epochs") else int(t.get("epochs_run") or 0) for t in trials)
    pruned = sum(1 for t in trials if t.get("pruned_at_epoch"))
    return {"pruned_trials": pruned, "epochs_trained": trained, "epochs_full": full, "epochs_saved": full - trained,
            "saved_share": round((full - trained) / full, 4) if full else 0.0}


def space_json(space: Space) -> dict[str, Any]:
    """The space as params JSON again (what `parse_space` reads back to the same space)."""
    return {key: ({name: getattr(values, name) for name in RANGE_KEYS if getattr(values, name) not in (None, False)}
                  if isinstance(values, Range) else list(values)) for key, values in space.items()}


def told_trials(asked_rounds: Sequence[Mapping[str, Any]], summaries: Mapping[str, Mapping[str, Any]],
                histories: Mapping[str, Sequence[Mapping[str, Any]]], metric: str) -> list[Told]:
    """The earlier rounds' trials as the study is told them: score at the best epoch, pruned or not, the metric per epoch.

    `summaries`/`histories`: by variant name. A trial of an earlier round without a summary is an error (its job failed).
    """
    told = []
    for asked in asked_rounds:
        for trial in asked["trials"]:
            summary = summaries.get(trial["name"])
            if summary is None or metric not in summary.get("metrics_at_best_epoch", {}):
                raise KeyError(trial["name"])
            pruned = bool(summary.get("pruned_at_epoch"))
            told.append(Told(int(asked["round"]), int(trial["index"]), trial["name"], dict(trial["params"]),
                             float(summary["metrics_at_best_epoch"][metric]), pruned, metric_by_epoch(histories.get(trial["name"], []), metric)))
    return told
