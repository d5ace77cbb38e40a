"""Zero, one or several labels per row out of a fixed set (tags): one sigmoid per label, binary cross-entropy,
micro/macro/sample F1, per-label decision thresholds tuned on validation."""

from __future__ import annotations

import json
from typing import Any

#: The thresholds tried per label when they are tuned on validation (evaluate.thresholds: tuned).
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))
FIXED_THRESHOLD = 0.5
#: The stratum of a row without labels, and the one of rows whose rarest label is too rare to stratify alone.
NO_LABELS, RARE = "(no labels)", "(rare labels)"
#: How a label set is written in one CSV cell (predictions tables, `tunepipe predict`).
LABEL_JOIN = ";"
#: The fewest rows a stratum needs (one per split).
MIN_STRATUM = 3


def _truthy(value: Any, column: str, source: str) -> bool:
    """A 0/1 label column's cell: 1/0, true/false, yes/no; anything else is a clear error."""
    text = str(value).strip().lower()
    if text in ("1", "1.0", "true", "yes", "y"):
        return True
    if text in ("0", "0.0", "false", "no", "n", "", "nan", "none"):
        return False
    raise ValueError(f"{source}: column {column!r} (data.label_columns) holds {value!r}; each of these columns must be 0/1 (or true/false).")


def parse_label_set(value: Any, separator: str | None, column: str, source: str) -> list[str] | None:
    """A label-set cell: a list (JSONL, Parquet), a JSON list in text, or a string split on `separator`; None when missing."""
    from tunepipe.data.readers import is_missing

    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return [str(item).strip() for item in value if not is_missing(item) and str(item).strip()]
    if is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return [str(item).strip() for item in parsed if str(item).strip()]
        if separator is not None:
            return [part.strip() for part in text.split(separator) if part.strip()]
        if text == "":
            return []
        raise ValueError(f"{source}: column {column!r} holds the text {value!r}, neither a list nor a delimited string; set "
                         "data.label_separator (e.g. ';' or '|') to the character between labels, or give JSON lists.")
    raise ValueError(f"{source}: column {column!r} holds {value!r} ({type(value).__name__}); multi_label needs a list of labels, "
                     "a delimited string (data.label_separator) or several 0/1 columns (data.label_columns).")


class MultiLabel:
    name = "multi_label"
    title = "multi-label classification"
    val_metrics = {"f1_micro": "max", "f1_macro": "max"}
    default_monitor = "val_f1_micro"
    level_metrics = ("f1_micro", "f1_macro")
    headline_metrics = ("f1_micro", "f1_macro", "subset_accuracy")
    reasons = ("missing_label",)
    #: The baseline's model on the modality's features (`baseline_estimator`), in words.
    baseline_model = "one-vs-rest logistic regression"
    #: Whether evaluate reads the validation split for `decide`.
    decides_on_validation = True
    #: evaluate's files besides metrics, predictions, decision, slices and comparison (results/evaluate/<name>).
    evaluate_files = {"per_label": "per_label.csv", "worst_errors": "worst_errors.json", "details": "details.json"}

    def check_params(self, params):
        data, problems = params["data"], []
        if data["modality"] == "image" and data["source"] in ("folder", "fashion_mnist"):
            problems.append(f"task.type multi_label: data.source {data['source']!r} gives one label per image (a folder name); "
                            "use data.source: file with a table of image paths and a label-set column (or data.label_columns).")
        elif data["source"] in ("rotten_tomatoes", "fashion_mnist"):
            problems.append(f"task.type multi_label: the bundled data.source {data['source']!r} has one label per row; use data.source: file.")
        if data.get("label_columns") is not None and data.get("label_separator") is not None:
            problems.append("data.label_separator: not used with data.label_columns (each 0/1 column is a label); remove one of them.")
        return problems

    def read_targets(self, table, data_cfg, source):
        import pandas as pd

        from tunepipe.errors import DataError

        columns = data_cfg.get("label_columns")
        try:
            if columns:
                return pd.Series([[column for column in columns if _truthy(row[column], column, source)] for _, row in table[columns].iterrows()],
                                 index=table.index, dtype=object)
            column = data_cfg["label_column"]
            return pd.Series([parse_label_set(value, data_cfg.get("label_separator"), column, source) for value in table[column]],
                             index=table.index, dtype=object)
        except ValueError as exc:
            raise DataError(str(exc)) from None

    def clean_targets(self, rows, labels):
        import pandas as pd

        allowed = set(labels) if labels is not None else None
        dropped = 0
        kept_sets: list[list[str] | None] = []
        for value in rows["label"]:
            if value is None or (isinstance(value, float) and value != value):
                kept_sets.append(None)
                continue
            unique = list(dict.fromkeys(str(item).strip() for item in value if str(item).strip()))
            inside = [item for item in unique if allowed is None or item in allowed]
            dropped += len(unique) - len(inside)
            order = labels or sorted(inside)
            kept_sets.append(sorted(inside, key=order.index) if labels else sorted(inside))
        rows = rows.assign(label=pd.Series(kept_sets, index=rows.index, dtype=object))
        return rows, [("missing_label", rows["label"].map(lambda value: value is None))], {"undeclared_labels_dropped": dropped}

    def resolve_conflicts(self, rows, alive):
        sets = rows["label"].map(lambda value: "\x1f".join(value) if isinstance(value, list) else None)
        distinct = sets[alive].groupby(rows.loc[alive, "key"]).nunique()
        return rows, rows["key"].isin(set(distinct[distinct > 1].index)), {}

    def summarise(self, kept, labels, source):
        from tunepipe.errors import DataError

        counts: dict[str, int] = {}
        for value in kept["label"]:
            for item in value:
                counts[item] = counts.get(item, 0) + 1
        order = list(labels) if labels is not None else sorted(counts)
        empty_declared = [label for label in order if counts.get(label, 0) == 0]
        if empty_declared:
            raise DataError(f"{source}: declared label(s) {', '.join(map(repr, empty_declared))} are on no row after cleaning; "
                            "fix data.labels or the label column.")
        if not order:
            raise DataError(f"{source}: no row has any label after cleaning; check data.label_column (or data.label_columns) and data.labels.")
        sizes = kept["label"].map(len)
        return {"labels": {label: counts[label] for label in order}, "label_names": order,
                "imbalance_ratio": round(max(counts[label] for label in order) / min(counts[label] for label in order), 4),
                "label_cardinality": round(float(sizes.mean()), 4), "rows_without_labels": int((sizes == 0).sum())}

    def strata(self, targets):
        """Each row's rarest label (the order iterative stratification deals rows in), `(no labels)` for an empty set:
        every label's rows, the rare ones first, are spread over the splits in proportion."""
        import pandas as pd

        counts: dict[str, int] = {}
        for value in targets:
            for item in value or []:
                counts[item] = counts.get(item, 0) + 1
        strata = pd.Series([min(value, key=lambda item: (counts[item], item)) if value else NO_LABELS for value in targets],
                           index=targets.index, dtype=object)
        # strata too small to be spread over three splits join one stratum of rare labels (or the largest, if that is too small too)
        sizes = strata.value_counts()
        small = set(sizes[sizes < MIN_STRATUM].index)
        if small:
            merged = int(sizes[list(small)].sum())
            target = RARE if merged >= MIN_STRATUM else str(sizes.idxmax())
            strata = strata.map(lambda stratum: target if stratum in small else stratum)
        return strata

    def assign_splits(self, group_targets, fractions, seed):
        """Iterative stratification: every label's rows (the rare ones first) spread over the splits in proportion."""
        from tunepipe.data.splitting import iterative_assignment

        return iterative_assignment(group_targets, fractions, seed)

    def counts(self, targets):
        counts: dict[str, int] = {}
        for value in targets:
            for item in value or []:
                counts[item] = counts.get(item, 0) + 1
        counts[NO_LABELS] = int(sum(1 for value in targets if not value))
        return dict(sorted(counts.items()))

    def names(self, declared, data_cfg, *row_sets):
        from tunepipe.errors import DataError

        if declared is not None:
            return list(declared)
        found = sorted({item for rows in row_sets for row in rows for item in row["label"]})
        if not found:
            raise DataError("no row has any label; check data.label_column (or data.label_columns).")
        return found

    def encode(self, rows, names, source):
        from tunepipe.errors import DataError

        index = {name: i for i, name in enumerate(names)}
        vectors = []
        for row in rows:
            vector = [0.0] * len(names)
            for item in row["label"]:
                if item not in index:
                    raise DataError(f"{source}: label {item!r} (row {row['id']}) is not one of {names}; fix data.labels or re-run clean.")
                vector[index[item]] = 1.0
            vectors.append(vector)
        return vectors

    def output_size(self, names):
        return len(names)

    def target_stats(self, targets):
        return {}

    def loss(self, train_cfg, stats, targets):
        import torch
        from torch import nn

        if train_cfg.get("pos_weight") != "auto" or not targets:
            return nn.BCEWithLogitsLoss()
        # rare labels weigh more: negatives / positives per label (1 where a label has no positive training row)
        matrix = torch.tensor(targets, dtype=torch.float32)
        positives = matrix.sum(dim=0)
        weight = torch.where(positives > 0, (len(matrix) - positives) / positives.clamp(min=1), torch.ones_like(positives))
        return nn.BCEWithLogitsLoss(pos_weight=weight)

    def outputs(self, logits, stats):
        return logits.sigmoid()

    def val_collection(self, names, stats):
        import torchmetrics
        from torchmetrics.classification import MultilabelF1Score

        n = len(names)
        return torchmetrics.MetricCollection({"f1_micro": MultilabelF1Score(num_labels=n, average="micro"),
                                              "f1_macro": MultilabelF1Score(num_labels=n, average="macro")}, prefix="val_")

    def probe_head(self, features, targets, stats, outputs):
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        matrix = np.asarray(targets, dtype=np.int64)
        weight = np.zeros((matrix.shape[1], features.shape[1]), dtype=np.float64)
        bias = np.zeros(matrix.shape[1], dtype=np.float64)
        predicted = np.zeros_like(matrix)
        for j in range(matrix.shape[1]):
            column = matrix[:, j]
            if column.min() == column.max():  # a label always on (or off) in training: its prior, no weights
                rate = np.clip(column.mean(), 1e-3, 1 - 1e-3)
                bias[j] = np.log(rate / (1 - rate))
                predicted[:, j] = column
                continue
            probe = LogisticRegression(max_iter=2000, C=1.0).fit(features, column)
            weight[j], bias[j] = probe.coef_[0], probe.intercept_[0]
            predicted[:, j] = probe.predict(features)
        true_positives = float((predicted & matrix).sum())
        f1_micro = 2 * true_positives / max(1.0, float(predicted.sum() + matrix.sum()))
        return weight, bias, f1_micro

    def decide(self, outputs, targets, names, evaluate_cfg):
        from tunepipe.tasks._label_sets import tune_thresholds

        if evaluate_cfg["thresholds"] == "fixed":
            return {"thresholds": [FIXED_THRESHOLD] * len(names), "thresholds_from": "fixed"}
        return {"thresholds": tune_thresholds(outputs, targets, THRESHOLD_GRID), "thresholds_from": "tuned on validation (best F1 per label)"}

    def scores(self, outputs, targets, names, decision=None):
        from tunepipe.tasks._label_sets import headline_scores

        return headline_scores(outputs, targets, self._thresholds(names, decision))

    def output_columns(self, names):
        from tunepipe.evaluation import PROB_PREFIX

        return [f"{PROB_PREFIX}{name}" for name in names]

    def prediction_table(self, rows, names, outputs, input_field, baseline=None, decision=None):
        from tunepipe.evaluation import BASELINE_PREFIX, PROB_PREFIX
        from tunepipe.tasks._label_sets import decisions

        thresholds = self._thresholds(names, decision)
        fields = ["id", "label", "predicted", "input"] + self.output_columns(names)
        if baseline is not None:
            fields += [f"{BASELINE_PREFIX}predicted"] + [f"{BASELINE_PREFIX}{column}" for column in self.output_columns(names)]
        chosen = decisions(outputs, thresholds)
        base_chosen = decisions(baseline, thresholds) if baseline is not None else None
        table = []
        for i, row in enumerate(rows):
            record = {"id": row["id"], "label": LABEL_JOIN.join(row["label"]), "input": row[input_field],
                      "predicted": LABEL_JOIN.join(name for j, name in enumerate(names) if chosen[i, j])}
            record.update({f"{PROB_PREFIX}{name}": str(float(value)) for name, value in zip(names, outputs[i].double().numpy())})
            if base_chosen is not None:
                record[f"{BASELINE_PREFIX}predicted"] = LABEL_JOIN.join(name for j, name in enumerate(names) if base_chosen[i, j])
                record.update({f"{BASELINE_PREFIX}{PROB_PREFIX}{name}": str(float(value)) for name, value in zip(names, baseline[i].double().numpy())})
            table.append(record)
        return table, fields

    def baseline_estimator(self, baseline_cfg, seed, outputs, features):
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        return OneVsRestClassifier(LogisticRegression(C=baseline_cfg["C"], max_iter=2000, random_state=seed))

    def baseline_outputs(self, model, inputs, names, stats):
        return model.predict_proba(inputs)

    def evaluate(self, outputs, targets, names, *, resamples, seed, decision=None):
        from tunepipe.tasks._label_sets import evaluate_label_sets

        return evaluate_label_sets(outputs, targets, names, self._thresholds(names, decision), resamples=resamples, seed=seed)

    def evaluation_files(self, rows, names, model_eval, base_eval, outputs, targets, *, input_field, worst, bootstrap):
        from tunepipe.tasks._label_sets import decisions

        thresholds = [row["threshold"] for row in model_eval["per_label"]]
        chosen = decisions(outputs, thresholds)
        wrong = (chosen != targets.long()).sum(dim=1)
        # the rows with the most wrong labels, then the surest of them (the largest probability on a wrong side)
        margin = torch_abs_margin(outputs, targets)
        order = sorted((i for i in range(len(rows)) if int(wrong[i])), key=lambda i: (-int(wrong[i]), -float(margin[i]), i))[:worst]
        picked = [{"rank": rank, "id": rows[i]["id"], "label": LABEL_JOIN.join(rows[i]["label"]),
                   "predicted": LABEL_JOIN.join(name for j, name in enumerate(names) if chosen[i, j]), "wrong_labels": int(wrong[i]),
                   "confidence": round(float(margin[i]), 6), "input": rows[i][input_field]} for rank, i in enumerate(order, start=1)]
        fields = ["label", "threshold", "precision", "recall", "f1", "auroc", "average_precision", "support", "predicted"]
        return {
            "per_label": (model_eval["per_label"], fields),
            "worst_errors": {"labels": names, "rows": picked},
            "details": {"labels": names, "thresholds": thresholds,
                        "bootstrap": {**bootstrap, "level": 0.95, "method": "percentile, rows resampled with replacement"},
                        "models": {"fine_tuned": {"per_label": model_eval["per_label"]}, "baseline": {"per_label": base_eval["per_label"]}}},
        }

    @staticmethod
    def _thresholds(names, decision):
        return list((decision or {}).get("thresholds") or [FIXED_THRESHOLD] * len(names))

    # Optimisation: distillation, ensembles, the pruning and INT8 selections.

    def distillation_loss(self, student_logits, teacher_logits, targets, *, temperature, alpha, stats):
        """alpha x T^2 x BCE(sigmoid(student / T), sigmoid(teacher / T)) + (1 - alpha) x BCE(student, 0/1 targets), means over
        rows and labels; T^2 as for softmax (each label is a two-class softmax of [0, z])."""
        import torch
        from torch import nn

        soft_teacher = torch.sigmoid(teacher_logits.detach().float() / temperature)
        soft = nn.functional.binary_cross_entropy_with_logits(student_logits / temperature, soft_teacher) * temperature**2
        hard = nn.functional.binary_cross_entropy_with_logits(student_logits, targets.float())
        return alpha * soft + (1 - alpha) * hard

    def combine_members(self, member_logits):
        """The logit of the members' mean sigmoid probability per label: log(mean p) - log(mean (1 - p)), in log space
        (log p = -softplus(-z): ONNX Runtime's Softplus stays finite where its Log(Sigmoid) of a logsigmoid gives -inf)."""
        import torch
        from torch import nn

        logits = member_logits.float()
        return torch.logsumexp(-nn.functional.softplus(-logits), dim=0) - torch.logsumexp(-nn.functional.softplus(logits), dim=0)

    def decision_in_use(self, names, decision):
        source = (decision or {}).get("thresholds_from") if (decision or {}).get("thresholds") else None
        return {"thresholds": self._thresholds(names, decision),
                "thresholds_from": source or f"fixed {FIXED_THRESHOLD} (no results/evaluate/decision.json given)"}

    def variant_score(self, logits, targets, names, stats, decision):
        import torch

        if not len(targets):
            return float("nan")
        probs = torch.from_numpy(logits).float().sigmoid()
        return self.scores(probs, torch.from_numpy(targets), names, decision)[self.level_metrics[0]]

    def prediction_agreement(self, reference, logits, names, stats, decision):
        """Rows whose whole predicted label set (at the thresholds) is the same."""
        import numpy as np

        if not len(reference):
            return 1.0
        thresholds = np.asarray(self._thresholds(names, decision), dtype=np.float32)
        with np.errstate(over="ignore"):  # exp of a very negative logit is inf: its probability 0, as it should be
            chosen = [1 / (1 + np.exp(-z.astype(np.float32))) >= thresholds for z in (reference, logits)]
        return float((chosen[0] == chosen[1]).all(axis=1).mean())

    # Serving: the bundle, the light runtime's answers, monitoring.
    #: Help of /metrics' predictions counter and drift gauge.
    monitoring_help = {"predictions": "Predicted labels by model version (each label of a predicted set counts once)",
                       "drift": "Mean over labels of the PSI (present vs absent) of each label's live predicted frequency against its test-split frequency"}

    def drift_reference(self, targets, names):
        total = len(targets) or 1
        return {"label_frequency": {name: sum(name in labels for labels in targets) / total for name in names}}

    def served_outputs(self, logits, stats):
        from tunepipe.tasks._serving import sigmoid

        return sigmoid(logits).astype("float32")

    def answer_columns(self, names):
        return ["labels", *(f"prob_{name}" for name in names)]

    def answer_rows(self, outputs, names, decision):
        return [[LABEL_JOIN.join(chosen), *(f"{p:.6f}" for p in row)] for chosen, row in zip(self._label_sets(outputs, names, decision), outputs)]

    def answers(self, outputs, names, decision):
        return {"labels": self._label_sets(outputs, names, decision),
                "probabilities": [{name: round(float(p), 6) for name, p in zip(names, row)} for row in outputs]}

    def oip_outputs(self, outputs, names, decision):
        count = len(outputs)
        chosen = (outputs >= self._served_thresholds(outputs, names, decision)).astype(int)
        return {"labels": {"name": "labels", "datatype": "BYTES", "shape": [count],
                           "data": [LABEL_JOIN.join(labels) for labels in self._label_sets(outputs, names, decision)]},
                "predicted": {"name": "predicted", "datatype": "INT32", "shape": [count, len(names)], "data": chosen.ravel().tolist()},
                "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": [count, len(names)], "data": outputs.astype(float).ravel().tolist()}}

    def oip_output_specs(self, names):
        return [{"name": "labels", "datatype": "BYTES", "shape": [-1], "note": f"each row's predicted labels joined by {LABEL_JOIN!r}"},
                {"name": "predicted", "datatype": "INT32", "shape": [-1, len(names)]}, {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(names)]}]

    def observed(self, outputs, names, decision, monitoring):
        return [label for labels in self._label_sets(outputs, names, decision) for label in labels]

    def drift(self, live, rows, monitoring):
        from tunepipe.tasks._serving import frequency_psi

        return frequency_psi(live, rows, monitoring["label_frequency"])

    def card_notes(self, names):
        return {"output": "sigmoid per label for probabilities; a label is predicted where its probability reaches its threshold "
                          "(bundle.json task.decision.thresholds, tuned on validation)",
                "use": "into any number of the labels above (none, one or several per input)",
                "limit": "Labels outside the list above cannot be predicted; an input may get none of them."}

    def _served_thresholds(self, outputs, names, decision):
        import numpy as np

        return np.asarray(self._thresholds(names, decision), dtype=outputs.dtype)

    def _label_sets(self, outputs, names, decision):
        chosen = outputs >= self._served_thresholds(outputs, names, decision)
        return [[name for name, on in zip(names, row) if on] for row in chosen]

    # Trust: slices, the paired comparison with the baseline, explanations, robustness.
    #: The metric slices are ranked on and robustness scores, with `max` (higher is better) or `min`.
    trust_metric = ("f1_micro", "max")
    #: The paired test of two models' per-row errors (tunepipe.trust.significance.PAIRED_TESTS): wrong labels per row, Wilcoxon's.
    trust_test = "wilcoxon"
    #: What explain's Integrated Gradients attribute.
    explain_output = ("one label's probability per row: for an error the label it is surest wrong about (a wrong label's, or a "
                      "missed label's), for a correct row its most probable label")

    def trust_answers(self, outputs, names, decision=None):
        from tunepipe.tasks._label_sets import decisions

        return decisions(outputs, self._thresholds(names, decision)).numpy()

    def trust_scores(self, answers, targets, names):
        from tunepipe.tasks._trust import set_scores

        return set_scores(answers, targets)

    def trust_resamples(self, targets, names, *, resamples, seed):
        from tunepipe.trust.significance import row_resamples

        return row_resamples(len(targets), resamples=resamples, seed=seed)

    def trust_row_errors(self, answers, targets):
        return (answers != targets).sum(axis=-1)

    def trust_labels(self, rows):
        return [str(item) for row in rows for item in row["label"]]

    def trust_owns_table(self, fields):
        from tunepipe.evaluation import PROB_PREFIX

        return "confidence" not in fields and any(field.startswith(PROB_PREFIX) for field in fields)

    def trust_table_names(self, *tables):
        return sorted({item for table in tables for row in table for key in ("label", "predicted") for item in self._split(row[key])})

    def trust_table_answers(self, table, names):
        import numpy as np

        def matrix(key):
            return np.asarray([[int(name in set(self._split(row[key]))) for name in names] for row in table], dtype=np.int64).reshape(len(table), len(names))

        return matrix("predicted"), matrix("label")

    def explain_candidates(self, predictions, names):
        from tunepipe.evaluation import PROB_PREFIX

        candidates = []
        for row in predictions:
            if any(f"{PROB_PREFIX}{name}" not in row for name in names):
                candidates.append(("error", 0.0, {"id": str(row["id"])}, None))
                continue
            probs = [float(row[f"{PROB_PREFIX}{name}"]) for name in names]
            truth, chosen = set(self._split(row["label"])), set(self._split(row["predicted"]))
            right_side = [p if name in truth else 1 - p for name, p in zip(names, probs)]
            if truth == chosen:  # its most probable label (a predicted one when there is one); sure as its least sure label
                pool = [j for j, name in enumerate(names) if name in chosen] or list(range(len(names)))
                kind, target, sure = "correct", max(pool, key=lambda j: (probs[j], -j)), min(right_side)
            else:  # the label it is surest wrong about
                kind, target = "error", min(range(len(names)), key=lambda j: (right_side[j], j))
                sure = 1 - right_side[target]
            candidates.append((kind, sure, {"id": str(row["id"]), "label": str(row["label"]), "predicted": str(row["predicted"]),
                                            "confidence": round(sure, 6), "explained": names[target]}, target))
        return candidates

    def trust_shown(self, value, names):
        return LABEL_JOIN.join(name for name, on in zip(names, value) if float(on) >= 0.5)

    def robust_differ(self, answers, clean, stats):
        return (answers != clean).any(axis=-1)

    def robust_eligible(self, clean, targets):
        import numpy as np

        return np.ones(len(clean), dtype=bool)

    def robust_margin(self, outputs, clean, target, stats, decision=None):
        """How near a label is to crossing its threshold (>= 0: the set changed), the nearest label's."""
        import numpy as np

        thresholds = np.asarray(self._thresholds([None] * outputs.shape[1], decision))
        probs = outputs.double().numpy()
        return np.where(np.asarray(clean) == 1, thresholds - probs, probs - thresholds).max(axis=1)

    def robust_change(self, answers, clean):
        return {}

    @staticmethod
    def _split(cell):
        """A predictions table's label-set cell (labels joined by LABEL_JOIN) as its labels."""
        return [item for item in str(cell).split(LABEL_JOIN) if item]


    # Report: what the report shows for this task.

    def report_view(self):
        """The report's metric names, summary cards and blocks for label sets: label frequencies, per-label thresholds and scores."""
        from tunepipe.tasks._report import ReportView, Shown

        return ReportView(
            metrics=(Shown("f1_micro", "F1 (micro)", "micro F1"), Shown("f1_macro", "F1 (macro)", "macro F1"),
                     Shown("f1_samples", "F1 (per row)", "per-row F1"), Shown("subset_accuracy", "Subset accuracy (exact label set)", "subset accuracy", abbr="subset acc."),
                     Shown("hamming_loss", "Hamming loss", "Hamming loss", lower_better=True),
                     Shown("precision_micro", "Precision (micro)", "micro precision"), Shown("recall_micro", "Recall (micro)", "micro recall"),
                     Shown("auroc_macro", "AUROC (macro)", "AUROC", "num"), Shown("average_precision_macro", "Average precision (macro)", "average precision", "num")),
            cards=("f1_micro", "f1_macro", "subset_accuracy"),
            data=("label_bars", "cardinality"),
            evaluation=("cardinality", "per_label"),
            worst=(Shown("label", "True labels", "true labels", "text"), Shown("predicted", "Predicted labels", "predicted labels", "text"),
                   Shown("wrong_labels", "Wrong labels", "wrong labels", "int"), Shown("confidence", "Surest wrong side", "surest wrong side")),
            worst_title="Most wrong label sets",
            worst_caption="The test rows with the most wrong labels (missed or extra), the surest first: the largest probability on a wrong side of a label",
            no_errors="Every test row's label set was predicted exactly.",
            intro="Micro averages pool every label decision, macro averages weight every label equally, and per-row F1 averages each "
                  "row's F1 (a row with no true and no predicted label counts as right). A label is predicted where its probability "
                  "reaches its threshold.",
            resampling="percentile method, rows resampled with replacement",
            metrics_note="Subset accuracy: the share of rows whose whole label set is right. Hamming loss: the share of wrong label "
                         "decisions (lower is better). AUROC and average precision: per label on its probability, then the mean over "
                         "the labels with both positive and negative test rows.",
        )

TASK = MultiLabel()


def torch_abs_margin(probs, targets):
    """Per row, the largest probability given to a wrong side of a label (1 - p for a missed label, p for a wrong one)."""
    probs, targets = probs.float(), targets.float()
    return (targets * (1 - probs) + (1 - targets) * probs).max(dim=1).values
