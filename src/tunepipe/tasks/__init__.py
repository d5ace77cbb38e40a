"""What depends on the kind of target (one label, a set of labels, a number), as one object per task behind one protocol.

The second axis beside the modality (tunepipe.modalities): stages, the library and the report ask
`get_task(params["task"]["type"])` instead of branching on the task. A task owns reading and validating targets,
their removal reasons in `clean`, the strata that keep splits balanced, the head's size and its output activation,
the loss, the validation metrics and which one early stopping and the selections follow, the linear-probe warm
start, the baseline's estimator and the test metrics. Adding a task is one new module here (defining `TASK`) plus
its tests. Importing this package is cheap (no torch, no pandas): stage modules import it at `--help` and DAG time.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, Protocol

from tunepipe.errors import ParamsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import torch
    import torchmetrics
    from torch import nn

    from tunepipe.tasks._report import ReportView


class Task(Protocol):
    name: str
    #: What the model card and the report call it, e.g. "multi-label classification".
    title: str
    #: Validation metrics logged every epoch (names without `val_`) and whether higher (`max`) or lower (`min`) is better.
    val_metrics: dict[str, str]
    #: `train.monitor` / `sweep.metric` when they are `auto`: the validation metric early stopping, checkpoints and sweeps follow.
    default_monitor: str
    #: The `scores` compressed candidates are held to (prune's and export's selections), then a second one they report;
    #: higher is better for the first.
    level_metrics: tuple[str, str]
    #: The test metrics of evaluate given bootstrap intervals; the first is the headline.
    headline_metrics: tuple[str, ...]
    #: Removal reasons `clean` counts for targets, in the order they are checked.
    reasons: tuple[str, ...]
    #: The baseline's model on the modality's features (`baseline_estimator`), in words, e.g. "ridge regression".
    baseline_model: str
    #: Whether evaluate reads the validation split to `decide` (multi_label's thresholds).
    decides_on_validation: bool
    #: evaluate's files besides metrics, predictions, decision, slices and comparison: key -> name under results/evaluate/.
    evaluate_files: dict[str, str]

    def check_params(self, params: dict[str, Any]) -> list[str]:
        """Problems with the task's settings (`data.*` keys this task cannot use), one line each; [] when fine."""

    def read_targets(self, table: pd.DataFrame, data_cfg: dict[str, Any], source: str) -> pd.Series:
        """Each row's raw target from the user's table (a label, a list of labels, a number); DataError for a column of the wrong kind."""

    def clean_targets(self, rows: pd.DataFrame, labels: list[str] | None) -> tuple[pd.DataFrame, list[tuple[str, pd.Series]], dict[str, int]]:
        """Rows with normalised targets, the removal checks (reason, mask) in `reasons` order, and other counts (labels dropped)."""

    def resolve_conflicts(self, rows: pd.DataFrame, alive: pd.Series) -> tuple[pd.DataFrame, pd.Series, dict[str, int]]:
        """Near-duplicates (same `key`) with different targets among the `alive` rows: the rows (targets possibly merged),
        the mask of rows removed as `conflicting_label`, and other counts."""

    def summarise(self, kept: pd.DataFrame, labels: list[str] | None, source: str) -> dict[str, Any]:
        """The kept targets described for clean's report (labels, label_names, imbalance_ratio, ...); DataError when unusable."""

    def strata(self, targets: pd.Series) -> pd.Series:
        """A hashable stratum per row that sampling and splitting keep balanced (the label; a label set; a quantile bin)."""

    def assign_splits(self, group_targets: list[list[Any]], fractions: tuple[float, float, float], seed: int) -> list[int] | None:
        """A split (0 train, 1 val, 2 test) per group of rows from their targets; None: split by `strata` (stratified draws)."""

    def counts(self, targets: pd.Series) -> dict[str, int]:
        """Rows per label (a label set counts once for each of its labels; regression: per quantile bin), for summaries."""

    def names(self, declared: list[str] | None, data_cfg: dict[str, Any], *row_sets: list[dict]) -> list[str]:
        """The output names, in the order of the model's outputs (labels; the target column for regression)."""

    def encode(self, rows: list[dict], names: list[str], source: str) -> list[Any]:
        """Each row's target as the model learns it: a label index, a 0/1 vector, a number."""

    def output_size(self, names: list[str]) -> int:
        """Units of the model's head."""

    def target_stats(self, targets: list[Any]) -> dict[str, float]:
        """Facts about the training targets kept with the model (regression: mean and std to standardise); {} when none."""

    def loss(self, train_cfg: dict[str, Any], stats: dict[str, float], targets: list[Any]) -> nn.Module:
        """The training loss, called as loss(logits, targets)."""

    def outputs(self, logits: torch.Tensor, stats: dict[str, float]) -> torch.Tensor:
        """What the model predicts: class probabilities (rows sum to 1), per-label probabilities, or values (rows)."""

    def val_collection(self, names: list[str], stats: dict[str, float]) -> torchmetrics.MetricCollection:
        """The `val_` metrics, updated with (outputs(logits), targets)."""

    def probe_head(self, features: np.ndarray, targets: list[Any], stats: dict[str, float], outputs: int) -> tuple[np.ndarray, np.ndarray, float]:
        """A linear model on frozen embeddings (the warm start): the head's weight, bias (`outputs` rows, the head's
        size, whatever targets the rows hold) and its training score."""

    def decide(self, outputs: torch.Tensor, targets: torch.Tensor, names: list[str], evaluate_cfg: dict[str, Any]) -> dict[str, Any]:
        """How outputs become answers, fixed on validation and used downstream (multi-label: each label's threshold); {} when nothing is to decide."""

    def scores(self, outputs: torch.Tensor, targets: torch.Tensor, names: list[str], decision: dict[str, Any] | None = None) -> dict[str, float]:
        """The headline numbers of predictions (no intervals): the baseline's metrics.json, each pruning level's, each variant's."""

    def output_columns(self, names: list[str]) -> list[str]:
        """The predictions CSV's columns that hold the outputs (`prob:<label>` per label, or `predicted`), read back in this order."""

    def prediction_table(self, rows: list[dict], names: list[str], outputs: torch.Tensor, input_field: str,
                         baseline: torch.Tensor | None = None, decision: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
        """One CSV row per row: id, label, predicted, the input and the outputs (with `baseline`, the baseline's beside them)."""

    def baseline_estimator(self, baseline_cfg: dict[str, Any], seed: int, outputs: int, features: int) -> Any:
        """The baseline's scikit-learn estimator on the modality's features (logistic regression, one-vs-rest, ridge), for
        `outputs` (the head's size) and at most `features` input features (what its coefficients may take)."""

    def baseline_outputs(self, model: Any, inputs: Any, names: list[str], stats: dict[str, float]) -> np.ndarray:
        """The baseline's predictions in `outputs`' form."""

    def evaluate(self, outputs: torch.Tensor, targets: torch.Tensor, names: list[str], *, resamples: int, seed: int,
                 decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """Every test number of one model: `metrics` (flat, in the order metrics.json lists them, with `<name>_ci_low/_high`
        for the headline metrics) and the tables behind `evaluation_files`."""

    def evaluation_files(self, rows: list[dict], names: list[str], model_eval: dict[str, Any], base_eval: dict[str, Any],
                         outputs: torch.Tensor, targets: torch.Tensor, *, input_field: str, worst: int,
                         bootstrap: dict[str, Any]) -> dict[str, Any]:
        """The content of each of `evaluate_files`: a JSON-ready dict, or (rows, columns) for a CSV file."""

    # Optimisation: distillation, ensembles, the pruning and INT8 selections.

    def distillation_loss(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor, *, temperature: float,
                          alpha: float, stats: dict[str, float]) -> torch.Tensor:
        """alpha x the student's loss on the teacher's (softened) outputs + (1 - alpha) x its loss on the true targets (distill, prune's recovery)."""

    def combine_members(self, member_logits: torch.Tensor) -> torch.Tensor:
        """An ensemble's logits from its members' (members x rows x outputs): `outputs` of them is the members' mean prediction."""

    def decision_in_use(self, names: list[str], decision: dict[str, Any] | None) -> dict[str, Any]:
        """The decision `scores` applies (multi_label: the thresholds and where they came from), for levels.json; {} when none."""

    def variant_score(self, logits: np.ndarray, targets: np.ndarray, names: list[str], stats: dict[str, float],
                      decision: dict[str, Any] | None) -> float:
        """`level_metrics[0]` of an exported variant's raw logits (nan without rows): what export's INT8 choice is selected on."""

    def prediction_agreement(self, reference: np.ndarray, logits: np.ndarray, names: list[str], stats: dict[str, float],
                             decision: dict[str, Any] | None) -> float:
        """The share of rows whose answer from `logits` is the one from `reference` (an ONNX or INT8 model against its fp32 source)."""

    # Serving: the bundle, the light runtime's answers, monitoring.
    # (numpy only: tunepipe.serving calls these without torch; `outputs` below are `served_outputs`' arrays.)
    #: Help texts of /metrics' `predictions` counter and `drift` gauge.
    monitoring_help: dict[str, str]

    def drift_reference(self, targets: list[Any], names: list[str]) -> dict[str, Any]:
        """monitoring.json's drift reference from the test split's targets: label shares, label frequencies, or a target histogram."""

    def served_outputs(self, logits: np.ndarray, stats: dict[str, float]) -> np.ndarray:
        """`outputs` in numpy (float32) for the light runtime: probabilities, per-label probabilities, or values."""

    def answer_columns(self, names: list[str]) -> list[str]:
        """`tunepipe predict`'s CSV columns after `id`."""

    def answer_rows(self, outputs: np.ndarray, names: list[str], decision: dict[str, Any]) -> list[list[str]]:
        """`tunepipe predict`'s CSV cells of each row, in `answer_columns` order."""

    def answers(self, outputs: np.ndarray, names: list[str], decision: dict[str, Any]) -> dict[str, list]:
        """/v1/predict's answer fields, each a list with one entry per input."""

    def oip_outputs(self, outputs: np.ndarray, names: list[str], decision: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The Open Inference Protocol v2 output tensors, by name."""

    def oip_output_specs(self, names: list[str]) -> list[dict[str, Any]]:
        """The OIP v2 model metadata's `outputs` (name, datatype, shape)."""

    def observed(self, outputs: np.ndarray, names: list[str], decision: dict[str, Any], monitoring: dict[str, Any]) -> list[str]:
        """What /metrics counts for these answers: each row's label, each predicted label, or each value's histogram bin."""

    def drift(self, live: dict[str, float], rows: float, monitoring: dict[str, Any]) -> float:
        """The drift gauge: the PSI of the live counts (of `observed`, over `rows` inputs) against monitoring.json's reference."""

    def card_notes(self, names: list[str]) -> dict[str, str]:
        """The model card's words for this task: how logits become answers (`output`), its intended `use`, and its `limit`."""

    # Trust: slices, the paired comparison with the baseline, explanations, robustness.
    #: The metric slices are ranked on, the diagnosis quotes and robustness scores, with `max` (higher is better) or `min`.
    trust_metric: tuple[str, str]
    #: The paired test of two models' per-row errors against the baseline and between runs (`mcnemar` or `wilcoxon`).
    trust_test: str
    #: What explain's Integrated Gradients attribute, in words (attributions.json's method).
    explain_output: str

    def trust_answers(self, outputs: torch.Tensor, names: list[str], decision: dict[str, Any] | None = None) -> np.ndarray:
        """Each row's answer as numpy (a class index, a 0/1 label vector at the decision's thresholds, a value)."""

    def trust_scores(self, answers: np.ndarray, targets: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        """Slice and comparison metrics over the leading (resample) axis of (resamples, rows, ...) answers; `trust_metric` first."""

    def trust_resamples(self, targets: np.ndarray, names: list[str], *, resamples: int, seed: int) -> np.ndarray:
        """Seeded bootstrap row indices (resamples x rows): within each true class, or rows with replacement."""

    def trust_row_errors(self, answers: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Each row's error for the paired test (0/1 wrong, wrong labels, absolute error)."""

    def trust_labels(self, rows: list[dict]) -> list[str]:
        """The test rows' labels for the diagnosis's imbalance check (each label of a set; none for numbers)."""

    def trust_owns_table(self, fields: list[str]) -> bool:
        """Whether a predictions table with these columns was written by this task (`prediction_table`)."""

    def trust_table_names(self, *tables: list[dict[str, str]]) -> list[str]:
        """The names predictions tables' label and predicted cells are coded over, for `trust_table_answers`."""

    def trust_table_answers(self, table: list[dict[str, str]], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """A predictions table's (answers, targets) as `trust_answers` gives them, read from its predicted and label cells."""

    def explain_candidates(self, predictions: list[dict[str, str]], names: list[str]) -> list[tuple[str, float, dict[str, Any], int | None]]:
        """Per predictions row: kind (error/correct), how sure (the surest explained first), its fields, the output to explain (None: not the model's)."""

    def trust_shown(self, value: Any, names: list[str]) -> Any:
        """A target or an answer as examples show it (a label, labels joined by `;`, a rounded number)."""

    def robust_differ(self, answers: np.ndarray, clean: np.ndarray, stats: dict[str, float]) -> np.ndarray:
        """Per row, whether a perturbed answer differs from the clean one (a flip, a changed label set, a value moved past a tolerance)."""

    def robust_eligible(self, clean: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The rows an attack's success rate counts (the correct ones, or all)."""

    def robust_margin(self, outputs: torch.Tensor, clean: np.ndarray, target: Any, stats: dict[str, float],
                      decision: dict[str, Any] | None = None) -> np.ndarray:
        """Per candidate of one row (outputs of its edits), how near the answer is to changing: the greedy attack keeps the largest."""

    def robust_change(self, answers: np.ndarray, clean: np.ndarray) -> dict[str, float | None]:
        """Extra columns of a perturbation's row (regression: the mean absolute change of the value); {} when none."""


    # Report: what the report shows for this task.

    def report_view(self) -> ReportView:
        """What the report shows for this task: its metrics' names, the summary cards, the data and evaluation blocks, the worst errors' columns."""

#: Every task module in this package, by name.
NAMES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")))
DEFAULT = "single_label"


def get_task(name: str) -> Task:
    if name not in NAMES:
        raise ParamsError(f"task.type {name!r} is not one of: {', '.join(NAMES)}.")
    return importlib.import_module(f"{__name__}.{name}").TASK


def task_of(params: dict[str, Any]) -> Task:
    """The task of validated params (or of a checkpoint's meta, which holds the same `task` section)."""
    return get_task((params.get("task") or {}).get("type", DEFAULT))
