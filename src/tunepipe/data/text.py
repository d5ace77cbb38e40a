"""Text normalisation shared by cleaning (duplicate detection) and splitting (leakage check)."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[^\w\s]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalise_whitespace(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def dedup_key(text: str) -> str:
    """Texts with equal keys are near-duplicates: Unicode NFKC, case folded, punctuation dropped, white space collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return normalise_whitespace(_PUNCTUATION.sub(" ", folded))


def has_invalid_encoding(text: str) -> bool:
    """U+FFFD (a byte sequence some earlier tool could not decode) or control characters."""
    return "\ufffd" in text or bool(_CONTROL.search(text))


def word_count(text: str) -> int:
    return len(text.split())
