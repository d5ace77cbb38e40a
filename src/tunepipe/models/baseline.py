"""The simple baseline every run is compared with: TF-IDF word n-grams + logistic regression."""

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


def predict_proba(model: Pipeline, texts: Sequence[str], num_classes: int) -> np.ndarray:
    """Probabilities over all classes (columns for classes absent from training are zero)."""
    proba = model.predict_proba(list(texts))
    full = np.zeros((len(texts), num_classes), dtype=np.float64)
    full[:, model.classes_] = proba
    return full
