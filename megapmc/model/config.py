"""LLaMA model configuration and the presets of the original checkpoints."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from megapmc.parallel.layout import padded_size
from megapmc.utils.config import from_dict_strict


def padded_vocab_size(vocab_size: int, make_vocab_size_divisible_by: int, tensor_model_parallel_size: int) -> int:
    """Megatron pads the vocabulary to a multiple of ``make_vocab_size_divisible_by × TP``, so every TP rank
    holds an equal, aligned slice of the embedding and output layer (the layers' own padding)."""
    return padded_size(vocab_size, make_vocab_size_divisible_by, tensor_model_parallel_size)


@dataclass
class LlamaConfig:
    """Shape of a LLaMA decoder. Field names follow Megatron-LM's flags; ``to_hf``/``from_hf`` map to
    Hugging Face's ``LlamaConfig``."""

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int
    num_key_value_heads: int | None = None  # None: multi-head attention (as many KV heads as heads)
    vocab_size: int = 32000  # the tokenizer's vocabulary, added tokens included
    make_vocab_size_divisible_by: int = 128
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    init_method_std: float = 0.02

    def __post_init__(self):
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        for name in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LlamaConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def padded_vocab_size(self, tensor_model_parallel_size: int = 1) -> int:
        """Vocabulary rows of the embedding and output layer (``padded_vocab_size`` below)."""
        return padded_vocab_size(self.vocab_size, self.make_vocab_size_divisible_by, tensor_model_parallel_size)

    def check_tensor_parallel(self, tensor_model_parallel_size: int) -> None:
        """Raise a ValueError saying what to change if this shape cannot be split ``tp`` ways."""
        tp = tensor_model_parallel_size
        for name in ("num_attention_heads", "num_key_value_heads", "ffn_hidden_size"):
            value = getattr(self, name)
            if value % tp:
                raise ValueError(
                    f"--tensor-model-parallel-size {tp} does not divide {name}={value}; "
                    f"choose a tensor-parallel size that divides it"
                )

    def num_parameters(self, padded_vocab_size: int | None = None) -> int:
        """Parameter count (untied embedding and output layer), from the shapes alone."""
        h, d = self.hidden_size, self.head_dim
        v = padded_vocab_size or self.vocab_size
        attn = h * (self.num_attention_heads + 2 * self.num_key_value_heads) * d + self.num_attention_heads * d * h
        mlp = 3 * h * self.ffn_hidden_size
        return 2 * v * h + h + self.num_layers * (attn + mlp + 2 * h)

    def replace(self, **overrides) -> "LlamaConfig":
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LlamaConfig":
        return from_dict_strict(cls, d)

    @classmethod
    def from_name(cls, name: str, **overrides) -> "LlamaConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_hf(self) -> dict:
        """The fields of Hugging Face's ``LlamaConfig`` (``config.json``) for this shape."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.ffn_hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "hidden_act": "silu",
            "initializer_range": self.init_method_std,
            "tie_word_embeddings": False,
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
        }

    @classmethod
    def from_hf(cls, hf: dict) -> "LlamaConfig":
        if hf.get("model_type", "llama") != "llama":
            raise ValueError(f"model_type is {hf.get('model_type')!r}, expected 'llama'")
        rope_theta = hf.get("rope_theta")
        if rope_theta is None:  # newer transformers keep it under rope_parameters
            rope_theta = (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        return cls(
            num_layers=hf["num_hidden_layers"],
            hidden_size=hf["hidden_size"],
            num_attention_heads=hf["num_attention_heads"],
            num_key_value_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            ffn_hidden_size=hf["intermediate_size"],
            vocab_size=hf["vocab_size"],
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta),
            init_method_std=hf.get("initializer_range", 0.02),
        )


PRESETS: dict[str, LlamaConfig] = {
    # Tests and the CPU demo.
    "tiny": LlamaConfig(num_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                        ffn_hidden_size=176, vocab_size=512, max_position_embeddings=256,
                        make_vocab_size_divisible_by=64),
    "llama-7b": LlamaConfig(num_layers=32, hidden_size=4096, num_attention_heads=32, ffn_hidden_size=11008),
    "llama-13b": LlamaConfig(num_layers=40, hidden_size=5120, num_attention_heads=40, ffn_hidden_size=13824),
    "llama2-7b": LlamaConfig(num_layers=32, hidden_size=4096, num_attention_heads=32, ffn_hidden_size=11008,
                             max_position_embeddings=4096, rms_norm_eps=1e-5),
    "llama2-13b": LlamaConfig(num_layers=40, hidden_size=5120, num_attention_heads=40, ffn_hidden_size=13824,
                              max_position_embeddings=4096, rms_norm_eps=1e-5),
    "llama2-70b": LlamaConfig(num_layers=80, hidden_size=8192, num_attention_heads=64, num_key_value_heads=8,
                              ffn_hidden_size=28672, max_position_embeddings=4096, rms_norm_eps=1e-5),
}
