"""Perplexity on held-out text: the forgetting check.

PMC-LLaMA mixes 1 part general text into 19 of medical text so that continued pretraining does not erase
general language ability; the check is perplexity on held-out general and medical text before and
after each stage (one ``tools/evaluate.py --ppl-files general=G,medical=M`` run per checkpoint, each
adding a column to its results table).

A file is JSON lines with a ``text`` field (the format of the pretraining corpora) or plain text (one
document). Each document is BOS + its tokens, cut into consecutive windows of the model's length that
each start again from BOS (so every token is scored once); perplexity is ``exp`` of the mean negative
log-likelihood per token over the file.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from megapmc.evaluation.backends import CausalLMBackend


def read_documents(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 (byte {e.start}); --ppl-files takes UTF-8 text or JSON lines") from None
    if not text.strip():
        raise ValueError(f"{path}: empty; --ppl-files needs held-out text")
    if path.suffix != ".jsonl":
        return [text]
    docs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise ValueError(f"{path}:{lineno}: expected an object with a string 'text'")
        docs.append(rec["text"])
    return docs


def perplexity(backend: CausalLMBackend, path: str | Path) -> dict:
    """``{"file", "documents", "tokens", "nll_per_token", "ppl"}`` for one held-out file."""
    tok, window = backend.tokenizer, backend.max_length
    requests = []
    docs = read_documents(path)
    for doc in docs:
        ids = tok.encode(doc)
        requests.extend(([tok.bos_id], ids[i:i + window]) for i in range(0, len(ids), window))
    if not requests:
        raise ValueError(f"{path}: no tokens to score")
    total = sum(len(cont) for _, cont in requests)
    nll = -sum(r.logprob for r in backend.loglikelihood(requests)) / total
    return {"file": str(path), "documents": len(docs), "tokens": total, "nll_per_token": nll, "ppl": math.exp(nll)}
