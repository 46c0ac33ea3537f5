"""Tokenizers behind one interface: SentencePiece (LLaMA's ``tokenizer.model``) and Hugging Face ``tokenizer.json``.

``build_tokenizer(path)`` picks the backend from the path: a ``.model`` file is SentencePiece, a
``.json`` file is a Hugging Face fast tokenizer, and a directory uses its ``tokenizer.json`` if it has
one, else its ``tokenizer.model``. Neither backend adds BOS/EOS in ``encode``: the caller decides
(preprocessing has ``--prepend-bos``/``--append-eod``; the SFT and evaluation code add them explicitly).
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

# Token strings tried, in order, when a Hugging Face tokenizer does not name its BOS/EOS.
_BOS_CANDIDATES = ("<s>", "<|begin_of_text|>", "<bos>", "[BOS]")
_EOS_CANDIDATES = ("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]")
_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>")


class Tokenizer:
    """What every backend provides. Token ids are plain ints; batch encoding may use several threads."""

    vocab_size: int  # every id the tokenizer can produce, added tokens included
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None

    @property
    def eod(self) -> int | None:
        """End-of-document token: LLaMA's EOS, as in Megatron."""
        return self.eos_id

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        raise NotImplementedError

    def encode_batch_flat(self, texts: Sequence[str], num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Encode ``texts`` into one int64 array of all tokens back to back and an int64 array of lengths.

        This is the shape the C++ dataset builder takes, so preprocessing never walks tokens in Python.
        """
        ids = self.encode_batch(texts, num_threads=num_threads)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return tokens, lengths

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    """LLaMA's SentencePiece model (``tokenizer.model``: bos 1, eos 2, no pad, vocab 32000)."""

    def __init__(self, model_path: str | os.PathLike):
        import sentencepiece as spm

        self.path = os.fspath(model_path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"SentencePiece model {self.path} does not exist")
        try:
            self._sp = spm.SentencePieceProcessor(model_file=self.path)
        except (RuntimeError, OSError) as e:
            raise ValueError(f"{self.path} is not a SentencePiece model: {e}") from e
        self.vocab_size = self._sp.get_piece_size()
        self.bos_id = _none_if_negative(self._sp.bos_id())
        self.eos_id = _none_if_negative(self._sp.eos_id())
        self.pad_id = _none_if_negative(self._sp.pad_id())
        # sentencepiece >= 0.2.1 can hand back int32 numpy arrays straight from C++.
        try:
            self._sp.encode(["a"], return_type="numpy")
            self._numpy_out = True
        except (TypeError, ValueError):
            self._numpy_out = False

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        return self._sp.encode(list(texts), num_threads=num_threads)

    def encode_batch_flat(self, texts: Sequence[str], num_threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if not self._numpy_out:
            return super().encode_batch_flat(texts, num_threads)
        arrays = self._sp.encode(list(texts), num_threads=num_threads, return_type="numpy")
        lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
        tokens = np.concatenate(arrays).astype(np.int64) if arrays else np.empty(0, np.int64)
        return tokens, lengths

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids])

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({self.path!r}, vocab_size={self.vocab_size})"


class HuggingFaceTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer (``tokenizer.json``), via the ``tokenizers`` library.

    BOS/EOS/PAD come from ``tokenizer_config.json`` or ``special_tokens_map.json`` next to it when
    present, else from the usual token strings. Batch encoding runs on Rust threads; the thread count
    is set per process with ``RAYON_NUM_THREADS`` (preprocessing workers set it to 1).
    """

    def __init__(self, tokenizer_json: str | os.PathLike):
        from tokenizers import Tokenizer as _HFTokenizer

        self.path = os.fspath(tokenizer_json)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"tokenizer file {self.path} does not exist")
        try:
            self._tok = _HFTokenizer.from_file(self.path)
        except Exception as e:  # the Rust side raises a bare Exception on a malformed file
            raise ValueError(f"{self.path} is not a Hugging Face tokenizer.json: {e}") from e
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        named = _named_special_tokens(Path(self.path).parent)
        self.bos_id = self._special_id(named.get("bos_token"), _BOS_CANDIDATES)
        self.eos_id = self._special_id(named.get("eos_token"), _EOS_CANDIDATES)
        self.pad_id = self._special_id(named.get("pad_token"), _PAD_CANDIDATES)

    def _special_id(self, name: str | None, candidates: Sequence[str]) -> int | None:
        for token in ([name] if name else []) + list(candidates):
            tid = self._tok.token_to_id(token)
            if tid is not None:
                return tid
        return None

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def __repr__(self) -> str:
        return f"HuggingFaceTokenizer({self.path!r}, vocab_size={self.vocab_size})"


def _none_if_negative(i: int) -> int | None:
    return i if i >= 0 else None


def _named_special_tokens(directory: Path) -> dict[str, str]:
    """bos/eos/pad token strings named by a Hugging Face tokenizer directory's config files."""
    out: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins
        path = directory / name
        if not path.is_file():
            continue
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e})") from e
        for key in ("bos_token", "eos_token", "pad_token"):
            value = cfg.get(key)
            if isinstance(value, dict):  # {"content": "<s>", "lstrip": false, ...}
                value = value.get("content")
            if isinstance(value, str):
                out[key] = value
    return out


def build_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A tokenizer from a ``tokenizer.model``, a ``tokenizer.json``, or a directory holding either."""
    p = Path(path)
    if p.is_dir():
        if (p / "tokenizer.json").is_file():
            return HuggingFaceTokenizer(p / "tokenizer.json")
        if (p / "tokenizer.model").is_file():
            return SentencePieceTokenizer(p / "tokenizer.model")
        raise FileNotFoundError(f"tokenizer directory {p} has neither tokenizer.json nor tokenizer.model")
    if not p.exists():
        raise FileNotFoundError(f"tokenizer {p} does not exist (give a tokenizer.model, a tokenizer.json or "
                                f"a directory holding one)")
    if p.suffix == ".json":
        return HuggingFaceTokenizer(p)
    return SentencePieceTokenizer(p)
