"""``--verify``: run the source and the converted checkpoint on a few prompts and compare logits.

Each side runs in its own implementation: Hugging Face checkpoints in ``transformers``, megapmc ones in
``megapmc.model.llama.LlamaModel`` (merged to TP=1), Meta ones in the small reference forward below, which
follows Meta's ``model.py`` (interleaved complex rotary) on the unpermuted weights, streamed layer by
layer. Both sides use the weights rounded to the output dtype and compute in fp32, so a correct
conversion differs only by fp32 rounding; a wrong rotary layout or split differs by whole logits.
Sides are run one after the other, so memory peaks at one model in fp32.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from megapmc.convert.errors import VerificationError
from megapmc.convert.loaders import open_loader
from megapmc.convert.meta import MetaLoader
from megapmc.convert.name_map import conversion_units, unit_params

PROMPTS = (
    "The patient presents with chest pain and",
    "Metformin is a first-line treatment for",
    "Question: Which organ produces insulin? Answer:",
)


def verification_prompts(vocab_size: int, tokenizer: Path | None = None, length: int = 12) -> list[torch.Tensor]:
    """Token ids ``[1, s]`` per prompt: PROMPTS tokenized (BOS first) by ``tokenizer`` (anything megapmc's
    ``build_tokenizer`` takes), or fixed random ids without one or if it yields ids beyond the model's."""
    if tokenizer is not None:
        from megapmc.data.tokenizer import build_tokenizer

        tok = build_tokenizer(tokenizer)
        bos = [tok.bos_id] if tok.bos_id is not None else []
        prompts = [torch.tensor([bos + tok.encode(p)]) for p in PROMPTS]
        if all(int(p.max()) < vocab_size for p in prompts):
            return prompts
    generator = torch.Generator().manual_seed(1234)
    return [torch.randint(0, vocab_size, (1, length), generator=generator) for _ in PROMPTS]


def _rounded(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).float()


@torch.no_grad()
def hf_logits(path: Path, prompts: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    for p in model.parameters():
        p.copy_(_rounded(p, dtype))
    return [model(ids).logits[0] for ids in prompts]  # [s, vocab] each


@torch.no_grad()
def megapmc_logits(path: Path, prompts: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    from megapmc.convert.megapmc_format import load_megapmc
    from megapmc.model import build_model

    config, (state,) = load_megapmc(path, tensor_model_parallel_size=1)
    model = build_model(config, seed=None).eval()
    model.load_state_dict({k: _rounded(v, dtype) for k, v in state.items()}, strict=True)
    return [model.gather_logits(model(ids))[0] for ids in prompts]  # [s, vocab] each


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


@torch.no_grad()
def meta_reference_logits(path: Path, prompts: list[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """Meta's LLaMA forward (``model.py``): rotary on interleaved pairs as complex numbers."""
    loader = MetaLoader(path)
    c = loader.config
    nq, nkv, d, eps = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.rms_norm_eps
    freqs = 1.0 / (c.rope_theta ** (torch.arange(0, d, 2).float() / d))  # [d/2]
    hidden: list[torch.Tensor] = []
    for unit in conversion_units(c.num_layers):
        w = {k: _rounded(v, dtype) for k, v in loader.read_unit_raw(unit).items()}
        if unit == "embedding":
            hidden = [F.embedding(ids[0], w["tok_embeddings.weight"]) for ids in prompts]  # [s, h]
            continue
        if unit == "final":
            return [_rms_norm(h, w["norm.weight"], eps) @ w["output.weight"].T for h in hidden]
        names = [n for spec in unit_params(unit) for n in spec.meta]
        attn_norm, wq, wk, wv, wo, ffn_norm, w1, w3, w2 = (w[n] for n in names)
        for j, h in enumerate(hidden):
            s = h.shape[0]
            rot = torch.polar(torch.ones(s, d // 2), torch.outer(torch.arange(s).float(), freqs))  # [s, d/2]
            x = _rms_norm(h, attn_norm, eps)
            q = torch.view_as_real(torch.view_as_complex((x @ wq.T).reshape(s, nq, d // 2, 2)) * rot[:, None])
            k = torch.view_as_real(torch.view_as_complex((x @ wk.T).reshape(s, nkv, d // 2, 2)) * rot[:, None])
            q, k = q.reshape(s, nq, d), k.reshape(s, nkv, d).repeat_interleave(nq // nkv, dim=1)
            v = (x @ wv.T).reshape(s, nkv, d).repeat_interleave(nq // nkv, dim=1)
            scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d)  # [nq, s, s]
            scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
            out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(s, nq * d)
            h = h + out @ wo.T
            x = _rms_norm(h, ffn_norm, eps)
            hidden[j] = h + (F.silu(x @ w1.T) * (x @ w3.T)) @ w2.T
    raise AssertionError("unreachable: conversion units end with 'final'")


SIDES = {"hf": hf_logits, "megapmc": megapmc_logits, "meta": meta_reference_logits}


def compare_logits(reference: list[torch.Tensor], candidate: list[torch.Tensor]) -> tuple[float, float]:
    """(largest absolute difference, largest absolute reference logit) over all prompts."""
    diff = max((r - c).abs().max().item() for r, c in zip(reference, candidate))
    scale = max(r.abs().max().item() for r in reference)
    return diff, scale


def verify_conversion(source_kind: str, source_dir: Path, target_kind: str, target_dir: Path, *,
                      dtype: torch.dtype, tokenizer: Path | None = None, tolerance: float = 1e-3,
                      vocab_size: int | None = None) -> float:
    """Compare logits of both checkpoints; print the largest difference; raise if above
    ``tolerance × max(1, largest logit)``. Returns the largest difference."""
    if vocab_size is None:
        loader = open_loader(source_kind, Path(source_dir))
        vocab_size = loader.config.vocab_size
        loader.close()
    prompts = verification_prompts(vocab_size, tokenizer)
    reference = SIDES[source_kind](Path(source_dir), prompts, dtype)
    candidate = SIDES[target_kind](Path(target_dir), prompts, dtype)
    diff, scale = compare_logits(reference, candidate)
    limit = tolerance * max(1.0, scale)
    print(f"verify: largest |logits difference| {diff:.3e} over {len(prompts)} prompts "
          f"(largest logit {scale:.2f}, limit {limit:.3e}): {'OK' if diff <= limit else 'FAILED'}")
    if not diff <= limit:
        raise VerificationError(
            f"converted checkpoint {target_dir} disagrees with {source_dir}: largest logits difference {diff:.3e} "
            f"> {limit:.3e}. The output is wrong (rotary q/k layout, a split, or the vocabulary); do not use it"
        )
    return diff
