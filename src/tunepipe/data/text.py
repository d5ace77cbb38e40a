"""Text normalisation shared by cleaning (duplicate detection) and splitting (leakage check)."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalise_whitespace(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """Texts with equal keys count as the same text: Unicode NFKC, case folded, white space collapsed."""
    return normalise_whitespace(unicodedata.normalize("NFKC", text)).casefold()


def word_count(text: str) -> int:
    return len(text.split())
