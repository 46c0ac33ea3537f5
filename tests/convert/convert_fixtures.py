"""Builders for the conversion tests: tiny random LLaMA checkpoints made with transformers (no download)
and Meta-format checkpoints derived from them."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from megapmc.convert.name_map import all_params
from megapmc.convert.rotary_layout import hf_to_meta_rows


def make_hf_model(vocab_size=500, num_heads=4, num_kv_heads=2, seed=0, rope_theta=10000.0, num_layers=2):
    """A random ``LlamaForCausalLM`` (``num_layers``, hidden 64, GQA by default) in fp32. Norm weights are
    randomised too, so a swapped or dropped norm shows in the logits."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=176, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, max_position_embeddings=128,
        rms_norm_eps=1e-6, rope_theta=rope_theta, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.1 * torch.randn_like(p) if "norm" in name else 0.05 * torch.randn_like(p))
    return model


def save_bin_shards(model, path: Path, num_files: int = 3) -> None:
    """``pytorch_model-0000N-of-0000M.bin`` shards with their index, as older transformers wrote them."""
    path.mkdir(parents=True)
    model.config.save_pretrained(path)
    state = model.state_dict()
    names = list(state)
    files = {n: f"pytorch_model-{1 + i * num_files // len(names):05d}-of-{num_files:05d}.bin"
             for i, n in enumerate(names)}
    for file in sorted(set(files.values())):
        torch.save({n: state[n].clone() for n in names if files[n] == file}, path / file)
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": files}))


def save_meta_checkpoint(model, path: Path, model_parallel: int = 2) -> None:
    """Meta's format from an HF model: q/k rows back to interleaved pairs, every tensor cut into
    ``model_parallel`` consolidated.NN.pth slices along Meta's split dimension."""
    c = model.config
    state = model.state_dict()
    shards: list[dict[str, torch.Tensor]] = [{} for _ in range(model_parallel)]
    for spec in all_params(c.num_hidden_layers):
        tensors = [state[n] for n in spec.hf]
        if spec.rotary:
            tensors[0] = hf_to_meta_rows(tensors[0], c.num_attention_heads)
            tensors[1] = hf_to_meta_rows(tensors[1], c.num_key_value_heads)
        for name, t in zip(spec.meta, tensors):
            parts = [t] * model_parallel if spec.meta_mp_dim is None else t.chunk(model_parallel, spec.meta_mp_dim)
            for shard, part in zip(shards, parts):
                shard[name] = part.clone()
    path.mkdir(parents=True)
    for r, shard in enumerate(shards):
        torch.save(shard, path / f"consolidated.{r:02d}.pth")
    params = {"dim": c.hidden_size, "n_layers": c.num_hidden_layers, "n_heads": c.num_attention_heads,
              "n_kv_heads": c.num_key_value_heads, "vocab_size": -1, "multiple_of": 16,
              "norm_eps": c.rms_norm_eps, "rope_theta": 10000.0}
    (path / "params.json").write_text(json.dumps(params))


def logits_of(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids).logits


def random_ids(vocab_size: int, shape=(2, 12), seed: int = 5) -> torch.Tensor:
    return torch.randint(0, vocab_size, shape, generator=torch.Generator().manual_seed(seed))
