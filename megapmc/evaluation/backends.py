"""Models to evaluate: a Hugging Face directory through transformers, or a megapmc checkpoint.

Both implement ``loglikelihood`` (summed log-probabilities of continuation tokens, batched) and
``generate`` (greedy). Token ids are built by the caller (``megapmc.evaluation.scoring``), so both
backends see exactly the same inputs; a backend only runs the network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm


class Tokenizer(Protocol):
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...  # no BOS/EOS added

    def decode(self, ids: Sequence[int]) -> str: ...


class HFTokenizer:
    """A transformers tokenizer (``AutoTokenizer.from_pretrained``) behind the ``Tokenizer`` interface."""

    def __init__(self, tokenizer):
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no BOS or EOS token; LLaMA tokenizers have both")
        self._tok = tokenizer
        self.bos_id, self.eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id

    def encode(self, text: str) -> list[int]:
        return self._tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)


class SentencePieceTokenizer:
    """A SentencePiece ``.model`` file (LLaMA's ``tokenizer.model``) behind the ``Tokenizer`` interface."""

    def __init__(self, model_file: str | Path):
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.bos_id, self.eos_id = self._sp.bos_id(), self._sp.eos_id()
        if self.bos_id < 0 or self.eos_id < 0:
            raise ValueError(f"{model_file}: SentencePiece model has no BOS or EOS id")

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode(list(ids))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A SentencePiece ``.model`` file, or a directory transformers can load a tokenizer from."""
    path = Path(path)
    if path.is_file() and path.suffix == ".model":
        return SentencePieceTokenizer(path)
    if path.is_dir():
        from transformers import AutoTokenizer

        return HFTokenizer(AutoTokenizer.from_pretrained(str(path)))
    raise FileNotFoundError(f"--tokenizer {path}: expected a SentencePiece .model file or a tokenizer directory")


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (LLaMA's training precision), fp32 on the CPU (bf16 matmuls there are slow and inexact)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_generation_budget(max_new_tokens: int, max_length: int) -> None:
    if not 0 < max_new_tokens < max_length:
        raise ValueError(
            f"--max-new-tokens {max_new_tokens} must be positive and leave room for the prompt in the "
            f"model's {max_length} positions"
        )


@dataclass(frozen=True)
class LoglikResult:
    logprob: float  # sum over the continuation's tokens
    is_greedy: bool  # every continuation token is the argmax


class CausalLMBackend:
    """Batched log-likelihood and greedy decoding over ``self.logits(input_ids [b, s]) -> [b, s, vocab]``.

    Rows are right-padded: in a causal model the padding after a row's last token cannot change the
    logits before it, so no attention mask is needed and any backend that runs a plain forward works.
    """

    def __init__(self, model, tokenizer: Tokenizer, batch_size: int = 8, max_length: int | None = None,
                 show_progress: bool = True):
        """``model`` has a ``config.max_position_embeddings``; ``max_length`` (default: that) bounds a
        scored or generated sequence."""
        if batch_size <= 0:
            raise ValueError(f"--batch-size must be positive, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.batch_size = batch_size
        self.max_length = max_length or model.config.max_position_embeddings
        self.show_progress = show_progress

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _pad(self, rows: list[list[int]]) -> torch.Tensor:
        width = max(len(r) for r in rows)
        padded = [r + [self.tokenizer.eos_id] * (width - len(r)) for r in rows]
        return torch.tensor(padded, dtype=torch.long, device=self.device)  # [b, s]

    @torch.no_grad()
    def loglikelihood(self, requests: Sequence[tuple[list[int], list[int]]]) -> list[LoglikResult]:
        """Each request is ``(context_ids, continuation_ids)``; the context starts with BOS. Contexts
        longer than ``max_length`` lose tokens on the left, as lm-evaluation-harness does."""
        results: list[LoglikResult | None] = [None] * len(requests)
        # Longest first: similar lengths share a batch (less padding) and out-of-memory shows at once.
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][0]) + len(requests[i][1])))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="loglikelihood", disable=not self.show_progress, leave=False):
            rows, spans = [], []
            for i in batch:
                ctx, cont = requests[i]
                if not cont:
                    raise ValueError(f"request {i}: empty continuation")
                full = (list(ctx) + list(cont))[-(self.max_length + 1):]
                inp = full[:-1]
                rows.append(inp)
                spans.append((len(inp) - len(cont), len(inp)))  # positions predicting the continuation
            logits = self.logits(self._pad(rows))  # [b, s, vocab]
            for row, i, (start, end) in zip(range(len(batch)), batch, spans):
                cont = torch.tensor(requests[i][1], device=logits.device)
                logp = F.log_softmax(logits[row, start:end].float(), dim=-1)  # [len(cont), vocab]
                results[i] = LoglikResult(
                    logprob=float(logp.gather(-1, cont[:, None]).sum()),
                    is_greedy=bool((logp.argmax(-1) == cont).all()),
                )
        return results  # type: ignore[return-value]

    def loglikelihood_grouped(self, groups: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[LoglikResult]]:
        """Each group is ``(context_ids, [continuation_ids, ...])``: the choices of one item, sharing its
        context. This reference scores every pair on its own (one forward per choice); backends that can
        reuse the context's forward override it and must equal it."""
        flat = [(ctx, cont) for ctx, conts in groups for cont in conts]
        scores = iter(self.loglikelihood(flat))
        return [[next(scores) for _ in conts] for _, conts in groups]

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy decoding without a KV cache: every step reruns the (right-padded) batch and reads each
        row's logits at its own last token. Stops a row at EOS; returns the new tokens (EOS excluded)."""
        check_generation_budget(max_new_tokens, self.max_length)
        outputs: list[list[int]] = [[] for _ in prompts]
        batches = [list(range(i, min(i + self.batch_size, len(prompts)))) for i in range(0, len(prompts), self.batch_size)]
        for batch in tqdm(batches, desc="generate", disable=not self.show_progress, leave=False):
            rows = [list(prompts[i])[-(self.max_length - max_new_tokens):] for i in batch]
            done = [False] * len(batch)
            for _ in range(max_new_tokens):
                logits = self.logits(self._pad(rows))  # [b, s, vocab]
                last = torch.tensor([len(r) - 1 for r in rows], device=logits.device)
                next_ids = logits[torch.arange(len(rows), device=logits.device), last].argmax(-1).tolist()
                for j, tok in enumerate(next_ids):
                    if done[j]:
                        continue
                    if tok == self.tokenizer.eos_id:
                        done[j] = True
                    else:
                        rows[j].append(tok)
                        outputs[batch[j]].append(tok)
                if all(done):
                    break
        return outputs


class HFBackend(CausalLMBackend):
    """A Hugging Face model directory loaded with ``AutoModelForCausalLM`` (bf16 on CUDA, fp32 on CPU)."""

    @classmethod
    def from_pretrained(cls, hf_dir: str | Path, batch_size: int = 8, device: torch.device | None = None,
                        dtype: torch.dtype | None = None, tokenizer: Tokenizer | None = None, **kwargs) -> "HFBackend":
        from transformers import AutoModelForCausalLM

        hf_dir = Path(hf_dir)
        if not (hf_dir / "config.json").is_file():
            raise FileNotFoundError(f"--hf-dir {hf_dir}: no config.json; expected a Hugging Face model directory")
        device = device or default_device()
        model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=dtype or default_dtype(device)).to(device)
        return cls(model, tokenizer or load_tokenizer(hf_dir), batch_size=batch_size, **kwargs)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids).logits  # [b, s, vocab]

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy decoding with transformers' ``generate`` (KV cache), rows left-padded with a mask."""
        check_generation_budget(max_new_tokens, self.max_length)
        outputs: list[list[int]] = []
        eos = self.tokenizer.eos_id
        batches = [prompts[i:i + self.batch_size] for i in range(0, len(prompts), self.batch_size)]
        for batch in tqdm(batches, desc="generate", disable=not self.show_progress, leave=False):
            rows = [list(p)[-(self.max_length - max_new_tokens):] for p in batch]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[eos] * (width - len(r)) + r for r in rows], device=self.device)  # [b, s]
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=eos, pad_token_id=eos,
            )  # [b, s + new]
            for row in out[:, width:].tolist():
                outputs.append(row[:row.index(eos)] if eos in row else row)
        return outputs


class MegapmcBackend(CausalLMBackend):
    """A megapmc checkpoint run directly on ``megapmc.model.LlamaModel`` at any tensor-parallel size.

    Under torchrun every TP rank holds its slice of the weights; ``gather_logits`` all-gathers the
    vocabulary (padding trimmed), so every rank computes the same scores and greedy tokens and only
    rank 0 needs to write. Generation prefills each batch of left-padded prompts once and then runs one
    token per row per step over a KV cache (``megapmc.model.inference``), each rank caching its KV heads.
    """

    @classmethod
    def from_checkpoint(cls, load_dir: str | Path, parallel=None, tokenizer: Tokenizer | None = None,
                        batch_size: int = 8, device: torch.device | None = None, dtype: torch.dtype | None = None,
                        **kwargs) -> "MegapmcBackend":
        """Load a run directory (``latest_checkpointed_iteration.txt``) or an ``iter_XXXXXXX`` directory.
        A checkpoint saved at another TP size is resharded in memory; at the same size each rank reads
        only its own shard. The tokenizer defaults to the checkpoint's ``tokenizer.tokenizer_model``."""
        from megapmc.checkpoint import model_io
        from megapmc.convert import load_megapmc, resolve_checkpoint_dir
        from megapmc.model.config import LlamaConfig
        from megapmc.model.llama import build_model
        from megapmc.parallel.state import ParallelState

        parallel = parallel or ParallelState.single()
        ckpt = resolve_checkpoint_dir(load_dir)
        raw = model_io.load_config(ckpt)
        if tokenizer is None:
            tok_path = (raw.get("tokenizer") or {}).get("tokenizer_model")
            if not tok_path or not Path(tok_path).is_file():
                raise FileNotFoundError(
                    f"{ckpt / model_io.CONFIG_NAME}: tokenizer.tokenizer_model is {tok_path!r}, not a file; "
                    f"pass --tokenizer PATH (a SentencePiece .model or a tokenizer directory)"
                )
            tokenizer = load_tokenizer(tok_path)
        if model_io.tensor_parallel_size(raw) == parallel.tp_size:
            config, state = LlamaConfig.from_dict(raw["model"]), model_io.load_model_shard(ckpt, parallel.tp_rank)
        else:
            config, shards = load_megapmc(ckpt, parallel.tp_size)
            state = shards[parallel.tp_rank]
        device = device or default_device()
        model = build_model(config, parallel, device=device, dtype=dtype or default_dtype(device), seed=None)
        model.load_state_dict(state, strict=True)
        return cls(model, tokenizer, batch_size=batch_size, **kwargs)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.gather_logits(self.model(input_ids))  # [b, s, V/tp] -> [b, s, vocab]

    @staticmethod
    def _one_row(conts: list[list[int]]) -> list[int] | None:
        """The tokens to feed after the context so that one row scores every choice: the longest
        choice minus its last token, if every choice but its last token is a prefix of it (``" A"`` and
        ``"▁" + "B"`` both fit context + ``"▁"``); else None."""
        longest = max(conts, key=len)[:-1]
        return longest if all(c[:-1] == longest[:len(c) - 1] for c in conts) else None

    def _score_rows(self, groups) -> list[list[LoglikResult]]:
        """One right-padded forward of context + ``_one_row`` tokens for a batch of groups."""
        rows = [ctx + self._one_row(conts) for ctx, conts in groups]
        logits = self.logits(self._pad(rows))  # [b, s, vocab]
        out = []
        for j, (ctx, conts) in enumerate(groups):
            logp = F.log_softmax(logits[j, len(ctx) - 1:len(rows[j])].float(), dim=-1)  # [fed + 1, vocab]
            scored = []
            for c in conts:
                steps, target = logp[:len(c)], torch.tensor(c, device=logp.device)
                scored.append(LoglikResult(logprob=float(steps.gather(-1, target[:, None]).sum()),
                                           is_greedy=bool((steps.argmax(-1) == target).all())))
            out.append(scored)
        return out

    @torch.no_grad()
    def loglikelihood_grouped(self, groups: Sequence[tuple[list[int], list[list[int]]]]) -> list[list[LoglikResult]]:
        """One forward per item for the shared context. Items whose choices all fit one row (each but its
        last token a prefix of the longest) run context + that prefix once, right-padded, every choice read
        from it, as lm-eval's logits cache does. Otherwise a batch of contexts (longest first, left-padded)
        is prefilled into a KV cache whose last position scores every choice's first token; the cache rows
        are then repeated once per choice and all choices' remaining tokens run in one short forward.
        Groups that would need left truncation go through the per-choice reference, whose truncation
        depends on each choice's length."""
        from megapmc.model.inference import InferenceCache, left_padded_positions

        results: list[list[LoglikResult] | None] = [None] * len(groups)
        for i, (_, conts) in enumerate(groups):
            if not conts or not all(conts):
                raise ValueError(f"request group {i}: no choices or an empty continuation")
        # A batch's cache holds its longest context plus the longest continuation of all groups.
        tail_all = max((len(c) for _, conts in groups for c in conts), default=1) - 1
        fits = [i for i, (ctx, _) in enumerate(groups) if len(ctx) + tail_all <= self.max_length]
        rest = sorted(set(range(len(groups))) - set(fits))
        for i, res in zip(rest, super().loglikelihood_grouped([groups[i] for i in rest]) if rest else []):
            results[i] = res
        # Items whose choices fit one row (single tokens " A".." D", or " A" beside "▁" + "B" in a small
        # vocabulary) need one plain forward of context + _one_row tokens. No cache, no per-row positions.
        plain = {i for i in fits if self._one_row(groups[i][1]) is not None}
        batches = []
        for kind in (plain, set(fits) - plain):
            order = sorted(kind, key=lambda i: -len(groups[i][0]))
            batches += [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc="loglikelihood", disable=not self.show_progress, leave=False):
            if batch[0] in plain:
                for i, scored in zip(batch, self._score_rows([groups[i] for i in batch])):
                    results[i] = scored
                continue
            ctxs = [groups[i][0] for i in batch]
            conts = [groups[i][1] for i in batch]
            width = max(map(len, ctxs))
            tail = max(len(c) for cs in conts for c in cs) - 1  # continuation tokens fed after the context
            n = max(map(len, conts))
            ids = torch.tensor([[self.tokenizer.eos_id] * (width - len(c)) + c for c in ctxs], device=self.device)
            real = torch.tensor([[False] * (width - len(c)) + [True] * len(c) for c in ctxs], device=self.device)
            positions = left_padded_positions(real)  # [b, w]
            cache = InferenceCache.allocate(self.model, len(batch), width + tail)
            hidden = self.model(ids, position_ids=positions, inference_cache=cache, padding_mask=real)
            first = F.log_softmax(self.model.gather_logits(hidden[:, -1:]).float(), dim=-1)[:, 0]  # [b, vocab]
            rest_logp = None
            if tail:
                # Every row repeated once per choice: [b * n, ...]; choice k of item j is row j * n + k.
                cache = InferenceCache(key=[k.repeat_interleave(n, 0) for k in cache.key],
                                       value=[v.repeat_interleave(n, 0) for v in cache.value],
                                       key_padding_mask=cache.key_padding_mask.repeat_interleave(n, 0),
                                       length=cache.length)
                # Each choice's tokens but its last, right-padded: a pad after a row's last real token
                # cannot reach the positions before it.
                fed = [cs[k][:-1] if k < len(cs) else [] for cs in conts for k in range(n)]
                eos = self.tokenizer.eos_id
                inp = torch.tensor([r + [eos] * (tail - len(r)) for r in fed], device=self.device)  # [b * n, tail]
                start = positions[:, -1:].repeat_interleave(n, 0) + 1  # [b * n, 1]
                pos = start + torch.arange(tail, device=self.device)  # [b * n, tail]
                out = self.model(inp, position_ids=pos, inference_cache=cache)  # [b * n, tail, V/tp]
                rest_logp = F.log_softmax(self.model.gather_logits(out).float(), dim=-1)  # [b * n, tail, vocab]
            for j, i in enumerate(batch):
                scored = []
                for k, cont in enumerate(conts[j]):
                    target = torch.tensor(cont, device=first.device)
                    steps = first[j:j + 1]  # [1, vocab]
                    if len(cont) > 1:
                        steps = torch.cat([steps, rest_logp[j * n + k, :len(cont) - 1]])  # [len(cont), vocab]
                    scored.append(LoglikResult(logprob=float(steps.gather(-1, target[:, None]).sum()),
                                               is_greedy=bool((steps.argmax(-1) == target).all())))
                results[i] = scored
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy decoding with a KV cache: rows are left-padded (the padding masked out, positions
        counting real tokens only) and prefilled in one forward, then every step feeds one token per row.
        Stops a row at EOS; returns the new tokens (EOS excluded). ``CausalLMBackend.generate`` is the
        uncached reference it must equal."""
        from megapmc.model.inference import InferenceCache, left_padded_positions

        check_generation_budget(max_new_tokens, self.max_length)
        eos = self.tokenizer.eos_id
        outputs: list[list[int]] = []
        batches = [prompts[i:i + self.batch_size] for i in range(0, len(prompts), self.batch_size)]
        for batch in tqdm(batches, desc="generate", disable=not self.show_progress, leave=False):
            rows = [list(p)[-(self.max_length - max_new_tokens):] for p in batch]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[eos] * (width - len(r)) + r for r in rows], device=self.device)  # [b, s]
            real = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows], device=self.device)
            positions = left_padded_positions(real)  # [b, s]
            cache = InferenceCache.allocate(self.model, len(rows), width + max_new_tokens)
            logits = self.model(ids, position_ids=positions, inference_cache=cache, padding_mask=real)
            positions = positions[:, -1:]  # [b, 1]
            new: list[list[int]] = [[] for _ in rows]
            done = [False] * len(rows)
            for step in range(max_new_tokens):
                # Only the last position is needed: slice before gathering the vocabulary.
                next_ids = self.model.gather_logits(logits[:, -1:]).argmax(-1)  # [b, 1]
                for j, tok in enumerate(next_ids[:, 0].tolist()):
                    if done[j]:
                        continue
                    if tok == eos:
                        done[j] = True
                    else:
                        new[j].append(tok)
                if all(done) or step == max_new_tokens - 1:
                    break
                positions = positions + 1
                logits = self.model(next_ids, position_ids=positions, inference_cache=cache)  # [b, 1, V/tp]
            outputs.extend(new)
        return outputs
