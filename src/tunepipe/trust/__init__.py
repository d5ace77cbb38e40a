"""Trusting a model beyond its accuracy: explanations (explain), slices (slices) and significant comparisons (significance)."""
