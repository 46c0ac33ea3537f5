"""The LLaMA decoder on tensor-parallel layers.

Activations flow as ``[s, b, h]`` (Megatron's layout: sequence parallelism splits dim 0, so its
collectives need no transposes); the public ``forward`` takes and returns batch-first tensors.
Parameter names and per-rank shapes are the contract in docs/architecture.md (fused ``qkv_proj`` laid out
``[q_local; k_local; v_local]``, fused ``gate_up_proj`` laid out ``[gate_local; up_local]``, untied
``lm_head``). Kernels are chosen once, at construction (``megapmc.kernels``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from megapmc.kernels import KernelConfig, Kernels, select_kernels
from megapmc.model.config import LlamaConfig
from megapmc.model.inference import InferenceCache
from megapmc.model.recompute import RecomputeConfig, checkpoint, layer_chunks
from megapmc.model.rotary import RotaryEmbedding
from megapmc.parallel.cross_entropy import vocab_parallel_cross_entropy
from megapmc.parallel.layers import (
    ColumnParallelLinear,
    RowParallelLinear,
    VocabParallelEmbedding,
    derive_seed,
    scaled_init_std,
)
from megapmc.parallel.layout import TensorLayout
from megapmc.parallel.mappings import (
    copy_to_tensor_model_parallel_region,
    gather_from_tensor_model_parallel_region,
)
from megapmc.parallel.state import ParallelState


@dataclass
class TransformerOptions:
    """How the model runs, as opposed to what it is (``LlamaConfig``): kernels, recompute, sequence
    parallelism. Mirrors ``--attention-backend``, ``--kernel-backend``, ``--recompute-granularity``,
    ``--recompute-method``, ``--recompute-num-layers``, ``--sequence-parallel``."""

    attention_backend: str = "auto"
    kernel_backend: str = "auto"
    recompute_granularity: str | None = None
    recompute_method: str = "uniform"
    recompute_num_layers: int = 1
    sequence_parallel: bool = False

    def __post_init__(self):
        KernelConfig(self.attention_backend, self.kernel_backend)  # raise now on a bad flag value
        RecomputeConfig(self.recompute_granularity, self.recompute_method, self.recompute_num_layers)

    @property
    def kernel_config(self) -> KernelConfig:
        return KernelConfig(self.attention_backend, self.kernel_backend)

    @property
    def recompute_config(self) -> RecomputeConfig:
        return RecomputeConfig(self.recompute_granularity, self.recompute_method, self.recompute_num_layers)


class RMSNorm(nn.Module):
    """RMSNorm with a replicated weight ``[h]``. Under sequence parallelism each TP rank sees only its
    sequence chunk, so the weight's gradient is partial: routing the weight through
    ``copy_to_tensor_model_parallel_region`` all-reduces it (``h`` floats) in backward."""

    def __init__(self, hidden_size: int, eps: float, kernel, sequence_parallel_group=None,
                 device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.kernel = kernel
        self.sequence_parallel_group = sequence_parallel_group
        self.weight = nn.Parameter(torch.empty(hidden_size, device=device, dtype=dtype))
        self.weight_layout = TensorLayout((hidden_size,))  # replicated on every TP rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        if self.sequence_parallel_group is not None:
            weight = copy_to_tensor_model_parallel_region(weight, self.sequence_parallel_group)
        return self.kernel(x, weight, self.eps)


class LlamaAttention(nn.Module):
    """Causal self-attention with grouped-query heads. Heads are split across TP ranks (query and KV
    heads alike, so each rank keeps whole KV groups): ``qkv_proj`` is column-parallel, ``o_proj``
    row-parallel."""

    def __init__(self, config: LlamaConfig, parallel: ParallelState, kernels: Kernels, recompute_core: bool,
                 sequence_parallel: bool, device=None, dtype=None):
        super().__init__()
        d, tp = config.head_dim, parallel.tp_size
        self.head_dim = d
        self.num_local_heads = config.num_attention_heads // tp
        self.num_local_kv_heads = config.num_key_value_heads // tp
        self.qkv_proj = ColumnParallelLinear(
            config.hidden_size,
            [config.num_attention_heads * d, config.num_key_value_heads * d, config.num_key_value_heads * d],
            parallel, init_std=config.init_method_std, sequence_parallel=sequence_parallel,
            device=device, dtype=dtype)
        self.o_proj = RowParallelLinear(
            config.num_attention_heads * d, config.hidden_size, parallel,
            init_std=scaled_init_std(config.init_method_std, config.num_layers),
            sequence_parallel=sequence_parallel, device=device, dtype=dtype)
        self.rope = kernels.rope
        self.core_attention = kernels.attention
        self.recompute_core = recompute_core

    def forward(self, x, cos, sin, mask, cache: InferenceCache | None = None, layer: int = 0):
        """With ``cache``, ``x`` holds only the new tokens: their k/v join the cache's ``layer`` and they
        attend over all of it (``mask`` then comes from ``cache.prepare``)."""
        qkv = self.qkv_proj(x)  # [s, b, (nq + 2·nkv)/tp · d]
        s, b = qkv.shape[:2]
        qkv = qkv.view(s, b, self.num_local_heads + 2 * self.num_local_kv_heads, self.head_dim)
        q, k, v = qkv.split([self.num_local_heads, self.num_local_kv_heads, self.num_local_kv_heads], dim=2)
        q, k = self.rope(q, k, cos, sin)  # [s, b, nq/tp, d], [s, b, nkv/tp, d]
        if cache is not None:
            k, v = cache.update(layer, k, v)  # [b, nkv/tp, L + s, d]
            out = self.core_attention.decode(q, k, v, mask)
        elif self.recompute_core:
            out = checkpoint(self.core_attention, q, k, v, mask)
        else:
            out = self.core_attention(q, k, v, mask)  # [s, b, nq/tp · d]
        return self.o_proj(out)  # [s, b, h] (or [s/tp, b, h] with sequence parallelism)


class LlamaMLP(nn.Module):
    """SwiGLU feed-forward: ``gate_up_proj`` column-parallel (rows ``[gate_local; up_local]``),
    ``down_proj`` row-parallel."""

    def __init__(self, config: LlamaConfig, parallel: ParallelState, kernels: Kernels, sequence_parallel: bool,
                 device=None, dtype=None):
        super().__init__()
        f = config.ffn_hidden_size
        self.gate_up_proj = ColumnParallelLinear(
            config.hidden_size, [f, f], parallel, init_std=config.init_method_std,
            sequence_parallel=sequence_parallel, device=device, dtype=dtype)
        self.down_proj = RowParallelLinear(
            f, config.hidden_size, parallel, init_std=scaled_init_std(config.init_method_std, config.num_layers),
            sequence_parallel=sequence_parallel, device=device, dtype=dtype)
        self.swiglu = kernels.swiglu

    def forward(self, x):
        return self.down_proj(self.swiglu(self.gate_up_proj(x)))  # [s, b, 2f/tp] -> [s, b, f/tp] -> [s, b, h]


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, parallel: ParallelState, options: TransformerOptions,
                 kernels: Kernels, device=None, dtype=None):
        super().__init__()
        sp = options.sequence_parallel and parallel.tp_size > 1
        sp_group = parallel.tp_group if sp else None
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, kernels.rms_norm, sp_group,
                                       device, dtype)
        self.self_attn = LlamaAttention(config, parallel, kernels, options.recompute_config.selective, sp,
                                        device, dtype)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, kernels.rms_norm,
                                                sp_group, device, dtype)
        self.mlp = LlamaMLP(config, parallel, kernels, sp, device, dtype)

    def forward(self, x, cos, sin, mask, cache: InferenceCache | None = None, layer: int = 0):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    """LLaMA on tensor-parallel layers; one instance per TP rank.

    ``forward(input_ids [b, s], position_ids=None, segment_ids=None, labels=None)`` returns this rank's
    vocab-parallel logits ``[b, s, V/tp]`` (padded vocabulary columns are ``-inf``), or with ``labels`` the
    per-token fp32 loss ``[b, s]`` (vocab-parallel cross-entropy, never gathering the vocabulary).
    ``segment_ids`` keep attention inside each packed sample; pass ``position_ids`` restarting per sample.
    With an ``inference_cache`` (``megapmc.model.inference``) the same forward runs only the new tokens,
    attending over the cached ones too (incremental decoding): ``position_ids`` then default to
    ``cache.length + 0..s-1`` and ``padding_mask [b, s]`` (True for real tokens) marks left padding.

    ``layers`` (global decoder-layer numbers), ``pre_process`` (the embedding) and ``post_process``
    (final norm and ``lm_head``) select the part of the model this module holds: one pipeline stage
    (``megapmc.pipeline_parallel``). By default it holds everything. A stage without the embedding takes
    the previous stage's output as ``hidden_states [s(/tp), b, h]``; one without the head returns its
    output in that layout.
    """

    def __init__(self, config: LlamaConfig, parallel: ParallelState | None = None,
                 options: TransformerOptions | None = None, kernels: Kernels | None = None,
                 device=None, dtype=None, layers: range | None = None, pre_process: bool = True,
                 post_process: bool = True):
        super().__init__()
        parallel = parallel or ParallelState.single()
        options = options or TransformerOptions()
        config.check_tensor_parallel(parallel.tp_size)
        if kernels is None:  # built in place: choose for that device (meta: the one the model will run on)
            on = torch.device(device) if device is not None else torch.device("meta")
            if on.type == "meta":
                on = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            kernels = select_kernels(options.kernel_config, on)
        self.config, self.parallel, self.options, self.kernels = config, parallel, options, kernels
        self.sequence_parallel = options.sequence_parallel and parallel.tp_size > 1
        padded_vocab = config.padded_vocab_size(parallel.tp_size)
        self.layer_numbers = range(config.num_layers) if layers is None else layers
        self.pre_process, self.post_process = pre_process, post_process

        if pre_process:
            self.embed_tokens = VocabParallelEmbedding(
                config.vocab_size, config.hidden_size, parallel, init_std=config.init_method_std,
                sequence_parallel=self.sequence_parallel,
                pad_to_multiple_of=config.make_vocab_size_divisible_by, device=device, dtype=dtype)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, parallel, options, kernels, device, dtype) for _ in self.layer_numbers)
        if post_process:
            self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, kernels.rms_norm,
                                parallel.tp_group if self.sequence_parallel else None, device, dtype)
            self.lm_head = ColumnParallelLinear(
                config.hidden_size, config.vocab_size, parallel, init_std=config.init_method_std,
                sequence_parallel=self.sequence_parallel,
                pad_to_multiple_of=config.make_vocab_size_divisible_by, device=device, dtype=dtype)
        self.rotary = RotaryEmbedding(config.head_dim, config.rope_theta, config.max_position_embeddings)

        local_vocab = padded_vocab // parallel.tp_size
        self.vocab_start = local_vocab * parallel.tp_rank
        # Columns of this rank's logits that are real tokens; the rest is Megatron's padding.
        self.num_valid_local = max(0, min(local_vocab, config.vocab_size - self.vocab_start))
        self._chunks = layer_chunks(len(self.layer_numbers), options.recompute_config)
        # The whole vocabulary is on this rank at TP = 1 (the chosen kernel); otherwise it is split.
        if parallel.tp_size == 1:
            self.loss_fn = kernels.cross_entropy
        else:
            self.loss_fn = functools.partial(vocab_parallel_cross_entropy, vocab_start=self.vocab_start,
                                             group=parallel.tp_group)

    # ---- weights -------------------------------------------------------------------------------

    @torch.no_grad()
    def init_weights(self, seed: int = 1234) -> None:
        """Materialise every weight from ``seed``: the full (unsharded) weights are identical at every
        TP size, each rank keeping its slice (and at every pipeline split: seeds follow global names)."""
        for name, module in self.named_modules():
            if isinstance(module, (ColumnParallelLinear, RowParallelLinear, VocabParallelEmbedding)):
                module.init_weights(derive_seed(seed, self.global_name(name)))
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)

    def global_name(self, name: str) -> str:
        """``name`` with its local layer index replaced by the global layer number (``layers.0`` of a
        stage holding layers 8-15 is ``layers.8``); unchanged when the module holds every layer."""
        head, dot, rest = name.partition(".")
        if head != "layers" or not rest:
            return name
        index, dot, tail = rest.partition(".")
        return f"layers.{self.layer_numbers[int(index)]}{dot}{tail}"

    # ---- forward -------------------------------------------------------------------------------

    def _run_layers(self, start: int, end: int, cache: InferenceCache | None):
        def run(x, cos, sin, mask):
            for i in range(start, end):
                x = self.layers[i](x, cos, sin, mask, cache, i)
            return x
        return run

    def _mask_padded_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        if self.num_valid_local < logits.shape[-1]:
            logits[..., self.num_valid_local:] = float("-inf")  # in place: the matmul saved no output
        return logits

    def _check_decoding(self, cache: InferenceCache, batch_size: int, segment_ids, labels) -> None:
        if segment_ids is not None or labels is not None:
            raise ValueError("decoding with an inference cache takes neither segment_ids nor labels")
        if self.sequence_parallel:
            raise ValueError("--sequence-parallel is a training feature: build the model for decoding "
                             "without it (TransformerOptions(sequence_parallel=False))")
        if self.options.recompute_granularity is not None:
            raise ValueError(f"--recompute-granularity {self.options.recompute_granularity} is a training "
                             f"feature: build the model for decoding without it")
        if batch_size != cache.batch_size:
            raise ValueError(f"input_ids has {batch_size} rows but the inference cache was allocated for "
                             f"{cache.batch_size}")

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                inference_cache: InferenceCache | None = None, padding_mask: torch.Tensor | None = None,
                hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        b, s = input_ids.shape
        if self.pre_process == (hidden_states is not None):
            raise ValueError("a model holding the embedding takes input_ids alone; a later pipeline stage "
                             "takes the previous stage's hidden_states too")
        cache = inference_cache
        if cache is None:
            if padding_mask is not None:
                raise ValueError("padding_mask goes with an inference_cache; packed training rows use segment_ids")
            if self.sequence_parallel and s % self.parallel.tp_size:
                raise ValueError(f"--sequence-parallel splits the sequence over {self.parallel.tp_size} TP "
                                 f"ranks: sequence length {s} must be divisible by --tensor-model-parallel-size")
            mask = self.kernels.attention.prepare(segment_ids, s, input_ids.device)
        else:
            self._check_decoding(cache, b, segment_ids, labels)
            if position_ids is None:
                position_ids = torch.arange(cache.length, cache.length + s, device=input_ids.device).expand(b, s)
            mask = cache.prepare(padding_mask, s)  # [b, 1, s, L + s]
        # [b, s] -> [s, b] -> [s, b, h] (or [s/tp, b, h] with SP); a later pipeline stage starts from its input.
        x = self.embed_tokens(input_ids.t()) if self.pre_process else hidden_states
        cos, sin = self.rotary(position_ids, s, x.device, x.dtype)  # [s, b|1, 1, d]
        for start, end, recompute in self._chunks:
            run = self._run_layers(start, end, cache)
            x = checkpoint(run, x, cos, sin, mask) if recompute else run(x, cos, sin, mask)
        if cache is not None:
            cache.advance(s)
        if not self.post_process:
            return x  # [s(/tp), b, h]: the next pipeline stage's input
        logits = self._mask_padded_vocab(self.lm_head(self.norm(x)))  # [s, b, V/tp]
        if labels is None:
            return logits.transpose(0, 1).contiguous()  # [b, s, V/tp]
        loss = self.loss_fn(logits, labels.t())  # [s, b]
        return loss.t().contiguous()  # [s, b] -> [b, s] (b·s floats: cheap, and callers may .view it)

    def gather_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Full-vocabulary logits ``[b, s, vocab_size]`` (padding trimmed) from this rank's
        ``[b, s, V/tp]``, for evaluation; every TP rank gets the same tensor."""
        full = gather_from_tensor_model_parallel_region(logits, self.parallel.tp_group)  # [b, s, V]
        return full[..., :self.config.vocab_size]


def build_model(config: LlamaConfig, parallel: ParallelState | None = None,
                options: TransformerOptions | None = None, device="cpu", dtype=torch.float32,
                seed: int | None = 1234, **stage) -> LlamaModel:
    """Build on the meta device (no memory touched), then materialise on ``device`` in ``dtype``.

    ``seed=None`` leaves the weights uninitialised (they are about to be loaded from a checkpoint);
    ``device="meta"`` returns the meta model (parameter counting, memory estimates). ``stage``: the
    ``layers``/``pre_process``/``post_process`` of one pipeline stage (``LlamaModel``).
    """
    options = options or TransformerOptions()
    kernel_device = "cpu" if str(device) == "meta" else device
    kernels = select_kernels(options.kernel_config, kernel_device)
    model = LlamaModel(config, parallel, options, kernels, device="meta", dtype=dtype, **stage)
    if str(device) == "meta":
        return model
    model.to_empty(device=device)
    if seed is not None:
        model.init_weights(seed)
    return model


def num_parameters(model: nn.Module) -> int:
    """Parameters held by this rank (the full count at TP = 1)."""
    return sum(p.numel() for p in model.parameters())
