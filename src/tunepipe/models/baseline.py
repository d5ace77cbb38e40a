"""The simple baseline every run is compared with: TF-IDF word n-grams (texts) or raw pixels (images) + the task's linear
model (logistic regression; one per label; ridge: `Task.baseline_estimator`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline


def describe(features: str, model: str) -> str:
    """What the baseline is, as results/baseline/metrics.json, the diagnosis and the report name it: "TF-IDF + ridge regression"."""
    return f"{features} + {model}"


def fit_tfidf(texts: Sequence[str], targets: Sequence, estimator, *, max_features: int, ngram_max: int) -> Pipeline:
    model = Pipeline(
        [
            ("tfidf", TfidfVectorizer(max_features=max_features, ngram_range=(1, ngram_max), sublinear_tf=True, min_df=1)),
            ("model", estimator),
        ]
    )
    return model.fit(list(texts), np.asarray(targets))


def predict_proba(model: Pipeline, inputs, num_classes: int) -> np.ndarray:
    """Probabilities over all classes for texts or feature rows (columns for classes absent from training are zero)."""
    proba = model.predict_proba(inputs)
    full = np.zeros((len(inputs), num_classes), dtype=np.float64)
    full[:, model.classes_] = proba
    return full


def pixel_features(paths: Sequence[str], size: int = 28) -> np.ndarray:
    """Grey-scale pixels, downsampled to size x size and scaled to [0, 1]: the image baseline's features."""
    from tunepipe.data.images import open_image, to_array

    return np.stack([to_array(open_image(path), size, channels=1).reshape(-1) for path in paths]).astype(np.float32) / 255.0


def fit_pixels(features: np.ndarray, targets: Sequence, estimator) -> Pipeline:
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", estimator)]).fit(features, np.asarray(targets))
