"""A number per row (a rating, a price, a score): one output on a standardised target, MSE or Huber loss, MAE/RMSE/R2."""

from __future__ import annotations

import math

#: Quantile bins of the target that sampling and splitting keep balanced (fewer for small data).
STRATA_BINS = 5


class Regression:
    name = "regression"
    title = "regression"
    val_metrics = {"mae": "min", "rmse": "min", "r2": "max"}
    default_monitor = "val_rmse"
    level_metrics = ("r2", "mae")
    headline_metrics = ("mae", "rmse", "r2")
    reasons = ("invalid_target",)
    #: The baseline's model on the modality's features (`baseline_estimator`), in words.
    baseline_model = "ridge regression"
    #: Whether evaluate reads the validation split for `decide`.
    decides_on_validation = False
    #: evaluate's files besides metrics, predictions, decision, slices and comparison (results/evaluate/<name>).
    evaluate_files = {"by_range": "by_range.csv", "worst_errors": "worst_errors.json", "details": "details.json"}

    def check_params(self, params):
        data, problems = params["data"], []
        if data.get("labels") is not None:
            problems.append("data.labels: must be null with task.type regression (a number has no label set); remove it.")
        for key in ("label_separator", "label_columns"):
            if data.get(key) is not None:
                problems.append(f"data.{key}: only for task.type multi_label; remove it (the number is read from data.label_column).")
        if data["source"] in ("rotten_tomatoes", "fashion_mnist", "folder"):
            problems.append(f"task.type regression: data.source {data['source']!r} has labels, not numbers; use data.source: file "
                            "with a numeric data.label_column.")
        return problems

    def read_targets(self, table, data_cfg, source):
        import pandas as pd

        from tunepipe.errors import DataError

        column = data_cfg["label_column"]
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        present = raw.map(lambda value: value is not None and not (isinstance(value, float) and value != value) and str(value).strip() != "")
        if present.sum() and numbers[present].notna().sum() < 0.5 * present.sum():
            example = next(str(value) for value, number in zip(raw[present], numbers[present]) if pd.isna(number))
            raise DataError(f"{source}: column {column!r} (data.label_column) holds words such as {example!r}, not numbers; "
                            "task.type regression needs a numeric target column (or use task.type single_label for labels).")
        return pd.Series([None if math.isnan(value) else float(value) for value in numbers.astype(float)], index=table.index, dtype=object)

    def clean_targets(self, rows, labels):
        invalid = rows["label"].map(lambda value: value is None or not math.isfinite(float(value)))
        return rows, [("invalid_target", invalid)], {}

    def resolve_conflicts(self, rows, alive):
        """Near-duplicates with different numbers are one observation measured several times: each takes the group's mean
        (the duplicate checks then keep one), counted as `conflicting_targets_averaged`."""
        import pandas as pd

        values = pd.to_numeric(rows["label"].where(alive), errors="coerce")
        groups = values.groupby(rows["key"])
        spread = groups.transform("nunique")
        merged = alive & (spread > 1)
        rows = rows.copy()
        rows.loc[merged, "label"] = groups.transform("mean")[merged].astype(float)
        return rows, pd.Series(False, index=rows.index), {"conflicting_targets_averaged": int(merged.sum())}

    def summarise(self, kept, labels, source):
        import numpy as np

        from tunepipe.errors import DataError

        values = np.asarray(kept["label"], dtype=np.float64)
        if len(values) < 10:
            raise DataError(f"{source}: only {len(values)} rows with a numeric target remain after cleaning; regression needs at least 10.")
        if float(values.std()) == 0.0:
            raise DataError(f"{source}: every target is {values[0]}; there is nothing to learn. Check data.label_column.")
        quantiles = np.quantile(values, [0.0, 0.25, 0.5, 0.75, 1.0])
        return {"labels": {}, "label_names": [], "imbalance_ratio": 1.0,
                "target": {"rows": int(len(values)), "mean": round(float(values.mean()), 6), "std": round(float(values.std()), 6),
                           **{name: round(float(q), 6) for name, q in zip(("min", "q25", "median", "q75", "max"), quantiles)}}}

    def strata(self, targets):
        import pandas as pd

        values = pd.to_numeric(targets, errors="coerce")
        bins = max(1, min(STRATA_BINS, int(values.notna().sum()) // 10))
        ranked = values.rank(method="first")
        return pd.qcut(ranked, bins, labels=False).fillna(-1).astype(int).map(lambda b: f"q{b}" if b >= 0 else "invalid")

    def assign_splits(self, group_targets, fractions, seed):
        return None  # stratified draws by `strata`

    def counts(self, targets):
        return {str(k): int(v) for k, v in self.strata(targets).value_counts().sort_index().items()}

    def names(self, declared, data_cfg, *row_sets):
        return [data_cfg["label_column"]]

    def encode(self, rows, names, source):
        from tunepipe.errors import DataError

        values = []
        for row in rows:
            value = row["label"]
            if value is None or not math.isfinite(float(value)):
                raise DataError(f"{source}: row {row['id']} has no numeric target ({value!r}); re-run clean.")
            values.append(float(value))
        return values

    def output_size(self, names):
        return 1

    def target_stats(self, targets):
        import numpy as np

        values = np.asarray(targets, dtype=np.float64)
        std = float(values.std()) if len(values) else 1.0
        return {"mean": float(values.mean()) if len(values) else 0.0, "std": std if std > 0 else 1.0}

    def loss(self, train_cfg, stats, targets):
        from torch import nn

        return StandardisedLoss(nn.HuberLoss() if train_cfg.get("loss") == "huber" else nn.MSELoss(), stats)

    def outputs(self, logits, stats):
        return logits[:, 0] * stats["std"] + stats["mean"]

    def val_collection(self, names, stats):
        import torchmetrics

        return torchmetrics.MetricCollection({"mae": torchmetrics.MeanAbsoluteError(), "rmse": torchmetrics.MeanSquaredError(squared=False),
                                              "r2": torchmetrics.R2Score()}, prefix="val_")

    def probe_head(self, features, targets, stats, outputs):
        import numpy as np
        from sklearn.linear_model import RidgeCV

        # the ridge penalty chosen by leave-one-out error (cheap for ridge): a fixed one overfits a few hundred rows
        scaled = (np.asarray(targets, dtype=np.float64) - stats["mean"]) / stats["std"]
        probe = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(features, scaled)
        return probe.coef_[None, :], np.asarray([probe.intercept_]), float(probe.score(features, scaled))

    def decide(self, outputs, targets, names, evaluate_cfg):
        return {}

    def scores(self, outputs, targets, names, decision=None):
        from tunepipe.tasks._numbers import headline_scores

        return headline_scores(outputs, targets)

    def output_columns(self, names):
        return ["predicted"]

    def prediction_table(self, rows, names, outputs, input_field, baseline=None, decision=None):
        from tunepipe.evaluation import BASELINE_PREFIX

        fields = ["id", "label", "predicted", "error", "input"] + ([f"{BASELINE_PREFIX}predicted"] if baseline is not None else [])
        values = outputs.double().flatten().numpy()
        base = baseline.double().flatten().numpy() if baseline is not None else None
        table = []
        for i, row in enumerate(rows):
            record = {"id": row["id"], "label": row["label"], "predicted": str(float(values[i])), "error": str(float(values[i] - float(row["label"]))),
                      "input": row[input_field]}
            if base is not None:
                record[f"{BASELINE_PREFIX}predicted"] = str(float(base[i]))
            table.append(record)
        return table, fields

    def baseline_estimator(self, baseline_cfg, seed, outputs, features):
        from sklearn.linear_model import Ridge

        return Ridge(alpha=1.0 / baseline_cfg["C"], random_state=seed)

    def baseline_outputs(self, model, inputs, names, stats):
        return model.predict(inputs)

    def evaluate(self, outputs, targets, names, *, resamples, seed, decision=None):
        from tunepipe.tasks._numbers import evaluate_numbers

        return evaluate_numbers(outputs, targets, resamples=resamples, seed=seed)


    def evaluation_files(self, rows, names, model_eval, base_eval, outputs, targets, *, input_field, worst, bootstrap):
        values, truth = outputs.double().flatten(), targets.double().flatten()
        errors = values - truth
        order = sorted(range(len(rows)), key=lambda i: (-abs(float(errors[i])), i))[:worst]
        picked = [{"rank": rank, "id": rows[i]["id"], "label": float(truth[i]), "predicted": round(float(values[i]), 6),
                   "error": round(float(errors[i]), 6), "input": rows[i][input_field]} for rank, i in enumerate(order, start=1)]
        return {
            "by_range": (model_eval["by_range"], ["bin", "low", "high", "rows", "mae", "bias"]),
            "worst_errors": {"target": names[0], "rows": picked},
            "details": {"target": names[0], "bootstrap": {**bootstrap, "level": 0.95, "method": "percentile, rows resampled with replacement"},
                        "models": {name: {key: result[key] for key in ("by_range", "points")}
                                   for name, result in (("fine_tuned", model_eval), ("baseline", base_eval))}},
        }

    # Optimisation: distillation, ensembles, the pruning and INT8 selections.

    #: Two predictions of one row agree (`prediction_agreement`) when they differ by at most this many target stds.
    agreement_tolerance = 0.05

    def distillation_loss(self, student_logits, teacher_logits, targets, *, temperature, alpha, stats):
        """alpha x MSE to the teacher's standardised output + (1 - alpha) x MSE to the standardised true target (no
        temperature: a number has no distribution to soften)."""
        from torch import nn

        soft = nn.functional.mse_loss(student_logits[:, 0], teacher_logits.detach()[:, 0].float())
        hard = nn.functional.mse_loss(student_logits[:, 0], (targets.float() - stats["mean"]) / stats["std"])
        return alpha * soft + (1 - alpha) * hard

    def combine_members(self, member_logits):
        """The mean standardised output (so the mean prediction)."""
        return member_logits.float().mean(dim=0)

    def decision_in_use(self, names, decision):
        return {}

    def variant_score(self, logits, targets, names, stats, decision):
        import torch

        values = self.outputs(torch.from_numpy(logits).double(), stats)
        return self.scores(values, torch.from_numpy(targets), names, decision)[self.level_metrics[0]]

    def prediction_agreement(self, reference, logits, names, stats, decision):
        """Rows whose predictions differ by at most `agreement_tolerance` target stds (the logits are standardised)."""
        import numpy as np

        if not len(reference):
            return 1.0
        return float((np.abs(reference[:, 0].astype(np.float64) - logits[:, 0]) <= self.agreement_tolerance).mean())

    # Serving: the bundle, the light runtime's answers, monitoring.
    #: Help of /metrics' predictions counter and drift gauge.
    monitoring_help = {"predictions": "Predicted values by model version, counted per bin of the test split's target histogram (label: the bin)",
                       "drift": "PSI of the live histogram of predicted values against the test split's target histogram (same bins)"}

    def drift_reference(self, targets, names):
        from tunepipe.tasks._serving import histogram

        return {"target_histogram": histogram([float(value) for value in targets])}

    def served_outputs(self, logits, stats):
        import numpy as np

        values = np.asarray(logits, dtype=np.float64)[:, 0] * stats["std"] + stats["mean"]
        return values.astype("float32")

    def answer_columns(self, names):
        return ["prediction"]

    def answer_rows(self, outputs, names, decision):
        return [[f"{float(value):.7g}"] for value in outputs]  # float32 holds about 7 digits

    def answers(self, outputs, names, decision):
        return {"predictions": [round(float(value), 6) for value in outputs]}

    def oip_outputs(self, outputs, names, decision):
        return {"prediction": {"name": "prediction", "datatype": "FP32", "shape": [len(outputs)], "data": outputs.astype(float).tolist()}}

    def oip_output_specs(self, names):
        return [{"name": "prediction", "datatype": "FP32", "shape": [-1], "note": f"the predicted {names[0]}"}]

    def observed(self, outputs, names, decision, monitoring):
        from tunepipe.tasks._serving import bin_index, bin_names

        edges = monitoring["target_histogram"]["edges"]
        bins = bin_names(edges)
        return [bins[int(i)] for i in bin_index(outputs, edges)]

    def drift(self, live, rows, monitoring):
        from tunepipe.tasks._serving import psi

        return psi(live, monitoring["target_histogram"]["shares"])

    def card_notes(self, names):
        return {"output": "logits[:, 0] * std + mean (bundle.json task.target_stats, the training targets') is the predicted value",
                "use": f"of {names[0]}",
                "limit": "Values far outside the training targets' range are rarely predicted; the model learnt that range."}

    # Trust: slices, the paired comparison with the baseline, explanations, robustness.
    #: The metric slices are ranked on and robustness scores, with `max` (higher is better) or `min`.
    trust_metric = ("mae", "min")
    #: The paired test of two models' per-row errors (tunepipe.trust.significance.PAIRED_TESTS): absolute errors, Wilcoxon's.
    trust_test = "wilcoxon"
    #: What explain's Integrated Gradients attribute.
    explain_output = "the predicted value"
    #: A value that moves by more than this share of the training targets' standard deviation has changed (robustness).
    robust_tolerance = 0.25

    def trust_answers(self, outputs, names, decision=None):
        return outputs.double().flatten().numpy()

    def trust_scores(self, answers, targets, names):
        from tunepipe.tasks._trust import value_scores

        return value_scores(answers, targets)

    def trust_resamples(self, targets, names, *, resamples, seed):
        from tunepipe.trust.significance import row_resamples

        return row_resamples(len(targets), resamples=resamples, seed=seed)

    def trust_row_errors(self, answers, targets):
        import numpy as np

        return np.abs(np.asarray(answers, dtype=float) - np.asarray(targets, dtype=float))

    def trust_labels(self, rows):
        return []

    def trust_owns_table(self, fields):
        return "error" in fields

    def trust_table_names(self, *tables):
        return ["value"]

    def trust_table_answers(self, table, names):
        import numpy as np

        return (np.asarray([float(row["predicted"]) for row in table], dtype=np.float64),
                np.asarray([float(row["label"]) for row in table], dtype=np.float64))

    def explain_candidates(self, predictions, names):
        """The rows above the median absolute error are `error`s, the largest first; the others `correct`, the smallest first."""
        import statistics

        errors = [abs(float(row["predicted"]) - float(row["label"])) for row in predictions]
        middle = statistics.median(errors) if errors else 0.0
        return [("error" if error > middle else "correct", error if error > middle else -error,
                 {"id": str(row["id"]), "label": float(row["label"]), "predicted": round(float(row["predicted"]), 6),
                  "error": round(float(row["predicted"]) - float(row["label"]), 6), "explained": names[0]}, 0)
                for row, error in zip(predictions, errors)]

    def trust_shown(self, value, names):
        return round(float(value), 6)

    def robust_differ(self, answers, clean, stats):
        """A value moved by more than `robust_tolerance` of the training targets' standard deviation."""
        import numpy as np

        return np.abs(np.asarray(answers) - np.asarray(clean)) > self.robust_tolerance * stats["std"]

    def robust_eligible(self, clean, targets):
        import numpy as np

        return np.ones(len(clean), dtype=bool)

    def robust_margin(self, outputs, clean, target, stats, decision=None):
        return (outputs.double().flatten() - float(clean)).abs().numpy()

    def robust_change(self, answers, clean):
        import numpy as np

        moved = np.abs(np.asarray(answers, dtype=float) - np.asarray(clean, dtype=float))
        return {"mean_abs_change": round(float(moved.mean()), 6) if len(moved) else None}


    # Report: what the report shows for this task.

    def report_view(self):
        """The report's metric names, summary cards and blocks for a number: its distribution, predicted against true, error by range."""
        from tunepipe.tasks._report import ReportView, Shown

        return ReportView(
            metrics=(Shown("mae", "MAE (mean absolute error)", "MAE", "num", lower_better=True),
                     Shown("rmse", "RMSE (root mean squared error)", "RMSE", "num", lower_better=True),
                     Shown("r2", "R² (variance explained)", "R²", "num"), Shown("pearson", "Pearson correlation", "Pearson r", "num"),
                     Shown("spearman", "Spearman rank correlation", "Spearman ρ", "num")),
            cards=("mae", "rmse", "r2"),
            data=("target",),
            evaluation=("scatter", "residuals", "by_range"),
            worst=(Shown("label", "True value", "true value", "num"), Shown("predicted", "Predicted", "predicted", "num"),
                   Shown("error", "Error (predicted − true)", "error", "num")),
            worst_title="Largest errors",
            worst_caption="The fine-tuned model's test predictions furthest from the true value",
            no_errors="No test predictions to show.",
            intro="MAE and RMSE are in the target's units (RMSE weighs large errors more); R² is the share of the target's variance "
                  "explained (1: perfect, 0: no better than predicting the mean).",
            resampling="percentile method, rows resampled with replacement",
            metrics_note="Lower is better for MAE and RMSE. Pearson r measures a linear relation between predicted and true values, "
                         "Spearman ρ one between their ranks.",
        )

class StandardisedLoss:
    """MSE or Huber between the single output and the target standardised with the training split's mean and std."""

    def __init__(self, loss, stats):
        self.inner, self.mean, self.std = loss, stats["mean"], stats["std"]

    def __call__(self, logits, targets):
        return self.inner(logits[:, 0], (targets.float() - self.mean) / self.std)


TASK = Regression()
