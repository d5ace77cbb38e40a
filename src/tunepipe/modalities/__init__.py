"""What depends on the kind of input (texts, images), as one object per modality behind one protocol.

Stages, the library and the report ask `get_modality(name)` instead of branching on `data.modality`;
adding a modality is one new module here (defining `MODALITY`) plus its tests. Importing this package is
cheap (no torch, no pandas): stage modules import it at `--help` and DAG-build time.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunepipe.errors import ParamsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from markupsafe import Markup
    from torch import nn
    from torch.utils.data import Dataset

    from tunepipe.data.cleaning import CleanReport
    from tunepipe.robustness import Perturbation
    from tunepipe.robustness.adversarial import AttackSpace
    from tunepipe.tasks import Task


class Modality(Protocol):
    name: str
    #: The row field holding the input: "text" (the text itself) or "path" (an image file).
    input_field: str
    #: The model card's task, e.g. "text classification".
    task: str
    #: The baseline's features, e.g. "TF-IDF" (the task's linear model is fitted on them; tunepipe.models.baseline.describe names both).
    baseline_features: str
    #: export.quantization `auto`: "dynamic" or "static" (calibrated) INT8.
    default_quantization: str
    def no_student(self, model_cfg: dict[str, Any]) -> str | None:
        """Why the distill rule cannot make a student of `model.pretrained` (None when it can), from the params alone."""

    def read(self, data_cfg: dict[str, Any], image_dir: Path, task: Task | None = None) -> pd.DataFrame:
        """The raw rows of `data.source`: id, <input_field>, label[, group]; bundled images go to `image_dir`. The targets
        in `label` are read by `task` (one label, a label set, a number; single_label when None)."""

    def clean(self, frame: pd.DataFrame, *, labels: list[str] | None, clean_cfg: dict[str, Any], source: str,
              task: Task | None = None) -> tuple[pd.DataFrame, CleanReport]:
        """The kept rows and the count of removals per reason (`source` names the file in errors); `task` checks the targets."""

    def augment(self, rows: Sequence[dict], *, augment_cfg: dict[str, Any], seed: int, out_dir: Path) -> Iterator[dict]:
        """New training rows (marked `augmented`, with `source_id`), made one at a time as they are asked for; files they
        need are written into `out_dir`. `rows` may be a row file read lazily (tunepipe.io.JsonlRows)."""

    def load_processor(self, model_cfg: dict[str, Any]) -> Any:
        """What `encode` needs to turn rows into model inputs (a tokenizer, or None)."""

    def resolve_model_cfg(self, model_cfg: dict[str, Any], rows: list[dict], processor: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """`model_cfg` with its data-aware `auto` values made concrete from the training rows (tunepipe.data_aware),
        and the facts behind them (e.g. how many texts the token length truncates) for the summary and the report."""

    def encode(self, rows: list[dict], labels: list[int] | None, model_cfg: dict[str, Any], processor: Any) -> Dataset:
        """The rows as a dataset with `collate(items)` and `lengths()` (labels -1 when None)."""

    def build_classifier(self, model_cfg: dict[str, Any], num_labels: int, pretrained_weights: bool = True) -> nn.Module:
        """The classifier: `input_names`, `embed(**inputs)`, `encoder`, `head`, `layers()`."""

    def baseline_outputs(self, train_rows: list[dict], train_targets: list[Any], test_rows: list[dict], *,
                         baseline_cfg: dict[str, Any], seed: int, task: Task, names: list[str]) -> np.ndarray:
        """The simple baseline's predictions for `test_rows` in the task's form (class probabilities, per-label
        probabilities, values): the modality's features (TF-IDF, pixels) and the task's estimator."""

    def preprocessing(self, model_cfg: dict[str, Any]) -> dict[str, Any]:
        """What a serving runtime must do to a raw input before the exported model sees it (the model card's)."""

    def input_limit(self, model_cfg: dict[str, Any]) -> str:
        """The model card's modality-specific line under "limits"."""

    def auto_slices(self, rows: list[dict]) -> dict[str, list[str | None]]:
        """Automatic test-split slices (name -> each row's slice), e.g. text length or image brightness quartiles."""

    def explain(self, model: nn.Module, rows: list[dict], targets: list[int], model_cfg: dict[str, Any], processor: Any, *,
                steps: int, out_dir: Path, names: list[str]) -> list[dict[str, Any]]:
        """Integrated Gradients attributions of each row's class `targets[i]` (tunepipe.trust.explain), one JSON-ready
        dict per row; a row's drawing, if the modality makes one, is written to `out_dir / names[i]`."""

    def show_attribution(self, item: dict[str, Any], base_dir: Path | None) -> Markup:
        """How one `explain` result is drawn in the report (shaded tokens, a heat map); its files are under `base_dir`."""

    def show_example(self, value: Any) -> str | Markup:
        """How an example input is shown in the report."""

    def perturbations(self, severities: list[int], model_cfg: dict[str, Any], processor: Any) -> list[Perturbation]:
        """Seeded corruptions of this modality's inputs at each severity (tunepipe.robustness), for the robustness rule."""

    def attack_space(self) -> AttackSpace:
        """Where gradient attacks and adversarial training move an input (pixels, or token embeddings)."""

    def attacks(self, attack_cfg: dict[str, Any], model_cfg: dict[str, Any], processor: Any) -> list[Any]:
        """The adversarial attacks the robustness rule runs (each with `run(...) -> AttackOutcome`)."""


#: Every modality module in this package, by name.
NAMES = tuple(sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")))


def get_modality(name: str) -> Modality:
    if name not in NAMES:
        raise ParamsError(f"data.modality {name!r} is not one of: {', '.join(NAMES)}.")
    return importlib.import_module(f"{__name__}.{name}").MODALITY
