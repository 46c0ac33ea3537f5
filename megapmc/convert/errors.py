"""The errors conversion raises, each naming the file and what to do."""
from __future__ import annotations


class ConversionError(ValueError):
    """A checkpoint that cannot be converted as asked (wrong kind of directory, shapes, TP size, shards)."""


class VerificationError(RuntimeError):
    """``--verify`` found logits of the converted model differing from the source's beyond tolerance."""
