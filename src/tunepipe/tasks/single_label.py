"""One label per row out of a fixed set (the default task): softmax, cross-entropy, accuracy and F1."""

from __future__ import annotations

from typing import Any


#: The most memory the baseline's L-BFGS history may take (`baseline_estimator`).
LBFGS_HISTORY_BYTES = 1 << 30


class SingleLabel:
    name = "single_label"
    title = "classification"
    val_metrics = {"accuracy": "max", "f1_macro": "max"}
    default_monitor = "val_f1_macro"
    level_metrics = ("accuracy", "f1_macro")
    headline_metrics = ("accuracy", "f1_macro", "auroc")
    reasons = ("missing_label", "undeclared_label")
    #: The baseline's model on the modality's features (`baseline_estimator`), in words.
    baseline_model = "logistic regression"
    #: Whether evaluate reads the validation split for `decide`.
    decides_on_validation = False
    #: evaluate's files besides metrics, predictions, decision, slices and comparison (results/evaluate/<name>).
    evaluate_files = {"confusion": "confusion.json", "per_class": "per_class.csv", "roc": "roc.csv", "pr": "pr.csv",
                      "calibration": "calibration.csv", "worst_errors": "worst_errors.json", "details": "details.json"}

    def check_params(self, params):
        data = params["data"]
        return [f"data.{key}: only for task.type multi_label; remove it (one label per row is read from data.label_column)."
                for key in ("label_separator", "label_columns") if data.get(key) is not None]

    def read_targets(self, table, data_cfg, source):
        from tunepipe.data.readers import cell_text

        return table[data_cfg["label_column"]].map(cell_text)  # as text: clean counts an empty cell as missing_label

    def clean_targets(self, rows, labels):
        import pandas as pd

        rows = rows.assign(label=rows["label"].map(lambda value: str(value).strip()))
        undeclared = ~rows["label"].isin(labels) if labels is not None else pd.Series(False, index=rows.index)
        return rows, [("missing_label", rows["label"] == ""), ("undeclared_label", undeclared)], {}

    def resolve_conflicts(self, rows, alive):
        label_counts = rows[alive].groupby("key")["label"].nunique()
        return rows, rows["key"].isin(set(label_counts[label_counts > 1].index)), {}

    def summarise(self, kept, labels, source):
        from tunepipe.errors import DataError

        counts = kept["label"].value_counts()
        order = list(labels) if labels is not None else sorted(counts.index)
        empty_declared = [label for label in order if counts.get(label, 0) == 0]
        if empty_declared:
            raise DataError(
                f"{source}: declared label(s) {', '.join(map(repr, empty_declared))} have no rows after cleaning; "
                f"found: {', '.join(f'{k} ({v})' for k, v in counts.items())}. Fix data.labels or the label column."
            )
        if len(order) < 2:
            raise DataError(
                f"{source}: only one class ({order[0]!r}, {int(counts.iloc[0])} rows) remains after cleaning; a classifier "
                "needs at least two. Check data.label_column and data.labels."
            )
        return {"labels": {label: int(counts[label]) for label in order}, "label_names": order,
                "imbalance_ratio": round(float(counts.max() / counts.min()), 4)}

    def strata(self, targets):
        return targets

    def assign_splits(self, group_targets, fractions, seed):
        return None  # stratified draws by `strata`

    def counts(self, targets):
        return {str(k): int(v) for k, v in targets.value_counts().sort_index().items()}

    def names(self, declared, data_cfg, *row_sets):
        from tunepipe.data.labels import label_names

        return label_names(declared, *row_sets)

    def encode(self, rows, names, source):
        from tunepipe.data.labels import encode

        return encode(rows, names, source)

    def output_size(self, names):
        return len(names)

    def target_stats(self, targets):
        return {}

    def loss(self, train_cfg, stats, targets):
        from torch import nn

        return nn.CrossEntropyLoss()

    def outputs(self, logits, stats):
        return logits.softmax(dim=-1)

    def val_collection(self, names, stats):
        import torchmetrics

        return torchmetrics.MetricCollection(
            {
                "accuracy": torchmetrics.Accuracy(task="multiclass", num_classes=len(names)),
                "f1_macro": torchmetrics.F1Score(task="multiclass", num_classes=len(names), average="macro"),
            },
            prefix="val_",
        )

    def probe_head(self, features, targets, stats, outputs):
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        labels = np.asarray(targets)
        probe = LogisticRegression(max_iter=2000, C=1.0).fit(features, labels)
        weight, bias = probe.coef_, probe.intercept_
        if weight.shape[0] == 1:  # binary: sklearn keeps one row; softmax over [-z/2, z/2] gives the same probabilities
            weight = np.concatenate([-weight / 2, weight / 2])
            bias = np.concatenate([-bias / 2, bias / 2])
        if len(probe.classes_) < outputs:
            # Labels the probe's rows lack (a sample of many classes): no weights, and a bias below every fitted one by
            # log(rows), as if seen less than once, so they start unlikely and fine-tuning learns them.
            full_weight, full_bias = np.zeros((outputs, weight.shape[1])), np.full(outputs, bias.min() - np.log(len(labels)))
            full_weight[probe.classes_], full_bias[probe.classes_] = weight, bias
            weight, bias = full_weight, full_bias
        return weight, bias, float(probe.score(features, labels))

    def decide(self, outputs, targets, names, evaluate_cfg):
        return {}

    def scores(self, outputs, targets, names, decision=None):
        from tunepipe.evaluation import classification_metrics

        return classification_metrics(outputs, targets)

    def output_columns(self, names):
        from tunepipe.evaluation import PROB_PREFIX

        return [f"{PROB_PREFIX}{name}" for name in names]

    def prediction_table(self, rows, names, outputs, input_field, baseline=None, decision=None):
        from tunepipe.evaluation import prediction_rows

        return prediction_rows(rows, names, outputs, input_field, baseline)

    def baseline_estimator(self, baseline_cfg, seed, outputs, features):
        from sklearn.linear_model import LogisticRegression

        # L-BFGS keeps 10 pairs of coefficient-sized vectors: 632 labels x 50,000 TF-IDF features took 9.8 GB. Past
        # LBFGS_HISTORY_BYTES, SAGA fits the same model with a table of rows x labels gradients instead.
        if 20 * outputs * (features + 1) * 8 <= LBFGS_HISTORY_BYTES:
            return LogisticRegression(C=baseline_cfg["C"], max_iter=2000, random_state=seed)
        return LogisticRegression(C=baseline_cfg["C"], solver="saga", max_iter=100, tol=1e-3, random_state=seed)

    def baseline_outputs(self, model, inputs, names, stats):
        from tunepipe.models.baseline import predict_proba

        return predict_proba(model, inputs, len(names))

    def evaluate(self, outputs, targets, names, *, resamples, seed, decision=None):
        from tunepipe.evaluation import CI_NAMES, DETAILED_NAMES, evaluate_predictions

        result = evaluate_predictions(outputs, targets, names, resamples=resamples, seed=seed)
        keys = list(DETAILED_NAMES) + [f"{name}_ci_{end}" for name in CI_NAMES for end in ("low", "high")]
        return {**result, "metrics": {key: result["metrics"][key] for key in keys}}

    def evaluation_files(self, rows, names, model_eval, base_eval, outputs, targets, *, input_field, worst, bootstrap):
        from tunepipe.evaluation import curve_classes, worst_errors

        picked = []
        for rank, i in enumerate(worst_errors(outputs, targets, worst), start=1):
            row, p = rows[i], outputs[i]
            best = int(p.argmax())
            picked.append({"rank": rank, "id": row["id"], "label": row["label"], "predicted": names[best], "confidence": round(float(p[best]), 6),
                           "label_probability": round(float(p[int(targets[i])]), 6), "input": row[input_field]})
        return {
            "confusion": {"labels": names, "matrix": model_eval["confusion"], "normalized": model_eval["confusion_normalized"]},
            "per_class": (model_eval["per_class"], ["label", "precision", "recall", "f1", "auroc", "average_precision", "support"]),
            "roc": (model_eval["roc"], ["class", "fpr", "tpr"]),
            "pr": (model_eval["pr"], ["class", "recall", "precision"]),
            "calibration": (model_eval["calibration"], ["bin", "lower", "upper", "confidence", "accuracy", "count"]),
            "worst_errors": {"labels": names, "rows": picked},
            "details": {
                "labels": names,
                "curve_labels": [names[c] for c in curve_classes(len(names))],
                "bootstrap": {**bootstrap, "level": 0.95, "method": "percentile, resampled within each true class"},
                "models": {
                    name: {key: result[key] for key in ("per_class", "confusion", "confusion_normalized", "roc", "pr", "calibration")}
                    for name, result in (("fine_tuned", model_eval), ("baseline", base_eval))
                },
            },
        }

    # Optimisation: distillation, ensembles, the pruning and INT8 selections.

    def distillation_loss(self, student_logits, teacher_logits, targets, *, temperature, alpha, stats):
        """alpha x T^2 x KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) x cross-entropy, batch means; the T^2
        keeps the soft term's gradients the size of the hard term's whatever the temperature (Hinton et al., 2015)."""
        import torch
        from torch import nn

        soft_teacher = torch.log_softmax(teacher_logits.detach() / temperature, dim=-1)
        soft_student = torch.log_softmax(student_logits / temperature, dim=-1)
        soft = nn.functional.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=True) * temperature**2
        hard = nn.functional.cross_entropy(student_logits, targets)
        return alpha * soft + (1 - alpha) * hard

    def combine_members(self, member_logits):
        """The log of the members' mean class probabilities: its softmax is exactly their mean softmax."""
        import math

        import torch

        return torch.logsumexp(member_logits.float().log_softmax(dim=-1), dim=0) - math.log(member_logits.shape[0])

    def decision_in_use(self, names, decision):
        return {}

    def variant_score(self, logits, targets, names, stats, decision):
        return float((logits.argmax(1) == targets).mean()) if len(targets) else float("nan")

    def prediction_agreement(self, reference, logits, names, stats, decision):
        return float((reference.argmax(1) == logits.argmax(1)).mean()) if len(reference) else 1.0

    # Serving: the bundle, the light runtime's answers, monitoring.
    #: Help of /metrics' predictions counter and drift gauge.
    monitoring_help = {"predictions": "Predicted labels by model version",
                       "drift": "PSI of the live predicted-label distribution against the test split's label distribution"}

    def drift_reference(self, targets, names):
        from collections import Counter

        counts, total = Counter(targets), len(targets) or 1
        return {"label_distribution": {name: counts.get(name, 0) / total for name in names}}

    def served_outputs(self, logits, stats):
        from tunepipe.tasks._serving import softmax

        return softmax(logits).astype("float32")

    def answer_columns(self, names):
        return ["label", "confidence", *(f"prob_{name}" for name in names)]

    def answer_rows(self, outputs, names, decision):
        best = outputs.argmax(1)
        return [[names[int(i)], f"{row[i]:.6f}", *(f"{p:.6f}" for p in row)] for row, i in zip(outputs, best)]

    def answers(self, outputs, names, decision):
        best = outputs.argmax(1)
        return {"labels": [names[int(i)] for i in best], "confidences": [round(float(row[i]), 6) for row, i in zip(outputs, best)],
                "probabilities": [{name: round(float(p), 6) for name, p in zip(names, row)} for row in outputs]}

    def oip_outputs(self, outputs, names, decision):
        best, count = outputs.argmax(1), len(outputs)
        return {"label": {"name": "label", "datatype": "BYTES", "shape": [count], "data": [names[int(i)] for i in best]},
                "confidence": {"name": "confidence", "datatype": "FP32", "shape": [count], "data": [float(row[i]) for row, i in zip(outputs, best)]},
                "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": [count, len(names)], "data": outputs.astype(float).ravel().tolist()}}

    def oip_output_specs(self, names):
        return [{"name": "label", "datatype": "BYTES", "shape": [-1]}, {"name": "confidence", "datatype": "FP32", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(names)]}]

    def observed(self, outputs, names, decision, monitoring):
        return [names[int(i)] for i in outputs.argmax(1)]

    def drift(self, live, rows, monitoring):
        from tunepipe.tasks._serving import psi

        return psi(live, monitoring["label_distribution"])

    def card_notes(self, names):
        return {"output": "softmax for probabilities; argmax indexes `labels`", "use": "into the labels above",
                "limit": "Labels outside the list above cannot be predicted; the model always returns one of them."}

    # Trust: slices, the paired comparison with the baseline, explanations, robustness.
    #: The metric slices are ranked on and robustness scores, with `max` (higher is better) or `min`.
    trust_metric = ("accuracy", "max")
    #: The paired test of two models' per-row errors (tunepipe.trust.significance.PAIRED_TESTS): correct or not, McNemar's.
    trust_test = "mcnemar"
    #: What explain's Integrated Gradients attribute.
    explain_output = "the predicted class's probability"

    def trust_answers(self, outputs, names, decision=None):
        return outputs.argmax(dim=1).numpy()

    def trust_scores(self, answers, targets, names):
        import numpy as np

        from tunepipe.trust.significance import macro_f1

        return {"accuracy": np.mean(answers == targets, axis=-1), "f1_macro": macro_f1(answers, targets, len(names))}

    def trust_resamples(self, targets, names, *, resamples, seed):
        from tunepipe.trust.significance import resample_indices

        return resample_indices(targets, len(names), resamples=resamples, seed=seed)

    def trust_row_errors(self, answers, targets):
        return (answers != targets).astype("int64")

    def trust_labels(self, rows):
        return [str(row["label"]) for row in rows]

    def trust_owns_table(self, fields):
        return "confidence" in fields

    def trust_table_names(self, *tables):
        return sorted({str(row[key]) for table in tables for row in table for key in ("label", "predicted")})

    def trust_table_answers(self, table, names):
        import numpy as np

        code = {name: k for k, name in enumerate(names)}
        return (np.asarray([code[str(row["predicted"])] for row in table], dtype=np.int64),
                np.asarray([code[str(row["label"])] for row in table], dtype=np.int64))

    def explain_candidates(self, predictions, names):
        return [("correct" if str(row["label"]) == str(row["predicted"]) else "error", float(row["confidence"]),
                 {"id": str(row["id"]), "label": str(row["label"]), "predicted": str(row["predicted"]), "confidence": round(float(row["confidence"]), 6)},
                 names.index(str(row["predicted"])) if str(row["predicted"]) in names else None) for row in predictions]

    def trust_shown(self, value, names):
        return names[int(value)]

    def robust_differ(self, answers, clean, stats):
        return answers != clean

    def robust_eligible(self, clean, targets):
        return clean == targets

    def robust_margin(self, outputs, clean, target, stats, decision=None):
        return -outputs[:, int(target)].numpy()

    def robust_change(self, answers, clean):
        return {}


    # Report: what the report shows for this task.

    def report_view(self):
        """The report's metric names, summary cards and blocks for one label per row (the report as it always was)."""
        from tunepipe.tasks._report import ReportView, Shown

        return ReportView(
            metrics=(Shown("accuracy", "Accuracy", "accuracy", abbr="acc."), Shown("precision_macro", "Precision (macro)", "macro precision"),
                     Shown("recall_macro", "Recall (macro)", "macro recall"), Shown("f1_macro", "F1 (macro)", "macro F1"),
                     Shown("precision_weighted", "Precision (weighted)", "weighted precision"), Shown("recall_weighted", "Recall (weighted)", "weighted recall"),
                     Shown("f1_weighted", "F1 (weighted)", "weighted F1"), Shown("auroc", "AUROC", "AUROC", "num"),
                     Shown("average_precision", "Average precision", "average precision", "num"),
                     Shown("ece", "Calibration error (ECE)", "ECE", "num", lower_better=True)),
            cards=("accuracy", "f1_macro"),
            data=("labels",),
            evaluation=("confusion", "curves", "calibration", "per_class"),
            worst=(Shown("label", "True label", "true label", "text"), Shown("predicted", "Predicted", "predicted", "text"),
                   Shown("confidence", "Confidence", "confidence"), Shown("label_probability", "P(true label)", "P(true label)")),
            worst_title="Most confident errors",
            worst_caption="The fine-tuned model's wrong test predictions with the highest confidence",
            no_errors="No wrong predictions on the test split.",
            intro="Macro averages weight every class equally, weighted averages by the class's share of the test rows.",
            resampling="percentile method, resampled within each true label",
            metrics_note="Two labels: AUROC and average precision score the second label as the positive class. More: one-vs-rest per label, "
                         "then the macro average. ECE: expected calibration error over 15 equal-width confidence bins (lower is better).",
        )

TASK = SingleLabel()
