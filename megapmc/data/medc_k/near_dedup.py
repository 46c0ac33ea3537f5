"""Near-duplicate books (another edition, another scan of the same PDF) found with MinHash LSH (datasketch).

Each book is reduced to the set of its lower-cased word 5-grams; MinHash estimates the Jaccard similarity
of two such sets, and LSH finds the earlier books that may reach ``threshold`` without comparing every
pair. A candidate counts only when its estimated similarity really reaches the threshold, so the LSH's
false positives are not dropped. Books are decided in input order (the first copy is kept), with fixed
hash seeds, so a rerun removes the same books.
"""
from __future__ import annotations

import re

SHINGLE_WORDS = 5
NUM_PERM = 128  # MinHash standard error on a Jaccard estimate: sqrt(J(1-J)/128), under 0.045
# Above this, 128 permutations leave too few LSH bands to find candidates (datasketch refuses), and
# the estimate's error is as large as the gap to an exact copy, which duplicate_documents catches.
MAX_NEAR_DUPLICATE_THRESHOLD = 0.95
_WORD = re.compile(r"\w+")


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[bytes]:
    """The set of lower-cased word n-grams (a text shorter than n words is one shingle)."""
    words = _WORD.findall(text.lower())
    if len(words) <= n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


class NearDuplicateFilter:
    """Keeps the first of every group of books whose word 5-gram Jaccard similarity is >= ``threshold``."""

    def __init__(self, threshold: float = 0.8, num_perm: int = NUM_PERM, seed: int = 1):
        if not 0 < threshold <= MAX_NEAR_DUPLICATE_THRESHOLD:
            raise ValueError(f"near-duplicate threshold must be in (0, {MAX_NEAR_DUPLICATE_THRESHOLD}], got {threshold}")
        from datasketch import MinHashLSH

        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._kept: dict[int, object] = {}

    def signature(self, text: str):
        """The ``datasketch.MinHash`` of ``text`` (what worker processes compute and send back)."""
        from datasketch import MinHash

        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch(sorted(shingles(text)))
        return m

    def is_duplicate(self, m) -> bool:
        """Whether a kept book is a near copy of the book with MinHash ``m``; if none is, this book is kept
        (and later ones are compared with it)."""
        if any(self._kept[key].jaccard(m) >= self.threshold for key in self._lsh.query(m)):
            return True
        key = len(self._kept)
        self._kept[key] = m
        self._lsh.insert(key, m)
        return False
