"""tunepipe: a declarative fine-tuning pipeline (clean -> augment -> fine-tune -> evaluate -> prune -> export -> report)."""

__version__ = "0.1.0"
