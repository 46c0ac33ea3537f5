"""Small shards for the GPT/blended dataset tests: documents with recognisable tokens, EOD-terminated."""
from __future__ import annotations

import numpy as np

from megapmc.data.indexed_dataset import IndexedDatasetBuilder

EOD = 2


def write_shard(prefix, docs, dtype=np.uint16) -> str:
    builder = IndexedDatasetBuilder(prefix, dtype=dtype)
    for doc in docs:
        builder.add_document(np.asarray(doc, dtype=dtype))
    builder.finalize()
    return str(prefix)


def random_docs(n: int, seed: int, base: int, min_len: int = 3, max_len: int = 120) -> list[np.ndarray]:
    """``n`` documents of random length and random tokens in ``[base, base + 997)``, then EOD, so every
    token says which source it came from (``base // 10000``)."""
    rng = np.random.default_rng(seed)
    docs = []
    for d in range(n):
        length = int(rng.integers(min_len, max_len))
        body = base + rng.integers(0, 997, size=length)
        docs.append(np.concatenate([body, [EOD]]))
    return docs


def make_sources(directory, sizes=(120, 200, 80)) -> list[str]:
    """Three shards books/papers/general (token bases 3000, 13000, 23000) under ``directory``."""
    prefixes = []
    for k, (name, n) in enumerate(zip(("books", "papers", "general"), sizes)):
        prefixes.append(write_shard(f"{directory}/{name}_text_document", random_docs(n, seed=k, base=3000 + 10000 * k)))
    return prefixes
