"""The simple baseline every run is compared with: TF-IDF word n-grams (texts) or raw pixels (images) + logistic regression."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


def fit_tfidf_logreg(texts: Sequence[str], labels: Sequence[int], *, max_features: int, ngram_max: int, C: float, seed: int) -> Pipeline:
    model = Pipeline(
        [
            ("tfidf", TfidfVectorizer(max_features=max_features, ngram_range=(1, ngram_max), sublinear_tf=True, min_df=1)),
            ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed)),
        ]
    )
    return model.fit(list(texts), np.asarray(labels))


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


def fit_pixels_logreg(features: np.ndarray, labels: Sequence[int], *, C: float, seed: int) -> Pipeline:
    from sklearn.preprocessing import StandardScaler

    model = Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(C=C, max_iter=2000, random_state=seed))])
    return model.fit(features, np.asarray(labels))
