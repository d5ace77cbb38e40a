"""tunepipe: a declarative fine-tuning pipeline (clean -> augment -> fine-tune -> evaluate -> prune -> export -> report)."""

from tunepipe.runtime import passive_thread_pools

__version__ = "0.1.0"

# Before anything imports torch (its OpenMP pool reads the policy once, when it is loaded): see the function.
passive_thread_pools()
