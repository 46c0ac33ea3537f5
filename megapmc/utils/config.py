"""Config dataclasses read back from JSON (checkpoints' ``config.json``)."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_dict_strict(cls: type[T], d: dict[str, Any]) -> T:
    """``cls(**d)``, refusing keys that ``cls`` has no field for: a config written by another version
    of megapmc, or edited by hand, fails here by name instead of being half-read."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**d)
