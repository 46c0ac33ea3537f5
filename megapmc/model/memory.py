"""Per-GPU memory of a training configuration: weights, gradients, optimizer states, activations.

Parameters are counted on the meta device with the real model (``build_model(..., device="meta")``),
so padding, GQA and the TP split are exactly the model's.

Static memory per rank, for ``P`` parameters on the rank (after the TP split):

* weights: ``P × 2`` bytes in bf16 (``× 4`` in fp32);
* gradients: the contiguous main-grad buffer, ``P × 4`` (fp32; ``× 2`` with bf16 reduction);
* optimizer: Adam's ``exp_avg`` and ``exp_avg_sq`` (``8P``) plus the fp32 master copy for bf16
  parameters (``4P``; fp32 parameters are their own master), divided by DP with the distributed optimizer.

Activations follow the method of Korthikanti et al., "Reducing Activation Recomputation in Large
Transformer Models" (2022): add up, per decoder layer, what autograd keeps for backward. Their
``sbh(34/t + 5as/(ht))`` is for GPT (LayerNorm, GeLU MLP, dropout); this is rederived for LLaMA (RMSNorm,
SwiGLU, GQA, no dropout or biases) as megapmc's plain-PyTorch kernels run it, in bytes, with ``s``
sequence, ``b`` micro-batch, ``h`` hidden, ``f`` FFN, ``a``/``k`` query/KV heads of size ``d``, ``e``
bytes of the compute dtype, ``t`` = TP, ``t'`` = TP with sequence parallelism and 1 without:

* each of the two RMSNorms: its input as fp32 ``4·sbh/t'``, ``1/rms`` ``4·sb/t'``, the normalised
  input ``e·sbh/t'``;
* the inputs of the two column-parallel layers (``qkv_proj``, ``gate_up_proj``): ``e·sbh`` each.
  Under sequence parallelism megapmc keeps the all-gathered input for the weight gradient (Megatron
  re-gathers it in backward instead, which would make this ``e·sbh/t``);
* attention with a flash/memory-efficient kernel: q and k after RoPE, the fused qkv output (alive
  through v) and the output, ``e·sb(h + kd + (a+2k)d + h)/t``, plus the fp32 log-sum-exp ``4·sba/t``.
  Selective recompute drops the log-sum-exp; on the ``math`` backend (fp32 inside) the kernel keeps q and
  the head-expanded k, v ``4·3·sbh/t`` and the ``s×s`` probabilities ``4·as²b/t`` unless selective
  recompute drops them;
* SwiGLU: the fused gate/up output, ``silu(gate)`` and the ``down_proj`` input, ``4·e·sbf/t``.

Full recompute keeps one ``e·sbh/t'`` input per checkpointed chunk plus, during the backward of a
chunk, that chunk's activations. Outside the layers: the final RMSNorm, the ``lm_head`` input ``e·sbh``
and the fp32 softmax of the vocab-parallel cross-entropy ``4·sbV/t``. tests/model/test_memory.py holds
this to the bytes autograd actually saves, within a few percent. Fused RMSNorm/SwiGLU kernels keep less,
so for them this is an upper bound.

Not counted: the CUDA context, the caching allocator's fragmentation, NCCL buffers and kernel
workspaces; ``fits`` keeps a reserve fraction of the device for them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from megapmc.model.config import LlamaConfig
from megapmc.model.recompute import RecomputeConfig, layer_chunks

GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of one configuration, and what it was computed for."""

    tensor_model_parallel_size: int
    data_parallel_size: int
    micro_batch_size: int
    seq_length: int
    recompute_granularity: str
    sequence_parallel: bool
    use_distributed_optimizer: bool
    bf16: bool
    params_total: int
    params_per_rank: int
    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def fits(self, gpu_memory_gib: float = 80.0, reserve_fraction: float = 0.1) -> bool:
        """True if the estimate leaves ``reserve_fraction`` of the device free."""
        return self.total <= gpu_memory_gib * GIB * (1.0 - reserve_fraction)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total"] = self.total
        d["gib"] = {k: round(d[k] / GIB, 3) for k in ("weights", "gradients", "optimizer", "activations", "total")}
        return d

    def __str__(self) -> str:
        def gib(n: int) -> str:
            return f"{n / GIB:8.2f} GiB"

        opt = "fp32 master + Adam m, v" if self.bf16 else "Adam m, v (fp32 weights are the master)"
        shard = f"sharded over DP={self.data_parallel_size}" if self.use_distributed_optimizer else "not sharded"
        return "\n".join([
            f"TP {self.tensor_model_parallel_size} x DP {self.data_parallel_size}, micro-batch "
            f"{self.micro_batch_size}, seq {self.seq_length}, {'bf16' if self.bf16 else 'fp32'}, recompute "
            f"{self.recompute_granularity}, sequence parallel {'on' if self.sequence_parallel else 'off'}",
            f"parameters: {self.params_total:,} total, {self.params_per_rank:,} per rank",
            f"  weights      {gib(self.weights)}",
            f"  gradients    {gib(self.gradients)}  (contiguous main-grad buffer)",
            f"  optimizer    {gib(self.optimizer)}  ({opt}; {shard})",
            f"  activations  {gib(self.activations)}",
            f"  total        {gib(self.total)}",
        ])


def count_parameters(config: LlamaConfig, tensor_model_parallel_size: int = 1) -> tuple[int, int]:
    """``(total, per_rank)`` from the model built on the meta device: the TP=1 model's count and TP
    rank 0's at ``tensor_model_parallel_size`` (every rank holds the same number)."""
    from megapmc.model.llama import TransformerOptions, build_model
    from megapmc.parallel.state import ParallelState

    options = TransformerOptions(attention_backend="math", kernel_backend="torch")  # no backend probing

    def count(parallel: ParallelState) -> int:
        model = build_model(config, parallel, options, device="meta")
        return sum(p.numel() for p in model.parameters())

    tp = tensor_model_parallel_size
    config.check_tensor_parallel(tp)
    total = count(ParallelState.single())
    per_rank = total if tp == 1 else count(ParallelState.for_shapes(tp=tp))
    return total, per_rank


def layer_activation_bytes(config: LlamaConfig, tp: int, seq_length: int, micro_batch_size: int,
                           sequence_parallel: bool, selective_recompute: bool, materialized_attention: bool,
                           bytes_per_element: int) -> float:
    """Bytes one decoder layer keeps for backward (formula in the module docstring)."""
    s, b, h, f = seq_length, micro_batch_size, config.hidden_size, config.ffn_hidden_size
    a, k, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    e = bytes_per_element
    sp = tp if sequence_parallel and tp > 1 else 1
    sb = s * b
    norms = 2 * _norm_bytes(sb * h / sp, sb / sp, e)
    column_inputs = 2 * e * sb * h
    if materialized_attention and not selective_recompute:
        # The reference path works in fp32: q, and k, v expanded to every query head, the probabilities;
        # then the output in the compute dtype.
        attention = 4 * sb * 3 * h / tp + 4 * a * s * s * b / tp + e * sb * h / tp
    else:
        # q and k after RoPE, the fused qkv output (alive through v), the output.
        attention = e * sb * (h + k * d + (a + 2 * k) * d + h) / tp
        if not selective_recompute:
            attention += 4 * sb * a / tp  # the kernel's fp32 log-sum-exp
    mlp = 4 * e * sb * f / tp
    return norms + column_inputs + attention + mlp


def _norm_bytes(inputs: float, rows: float, e: int) -> float:
    # The fp32 copy of the input, the fp32 1/rms per row, the normalised input in the compute dtype.
    return 4 * inputs + 4 * rows + e * inputs


def activation_bytes(config: LlamaConfig, tp: int, seq_length: int, micro_batch_size: int,
                     recompute: RecomputeConfig, sequence_parallel: bool, materialized_attention: bool,
                     bytes_per_element: int) -> int:
    """Peak bytes of activations kept for backward by the whole model on one rank."""
    s, b, h, e = seq_length, micro_batch_size, config.hidden_size, bytes_per_element
    sp = tp if sequence_parallel and tp > 1 else 1
    per_layer = layer_activation_bytes(config, tp, s, b, sequence_parallel, recompute.selective,
                                       materialized_attention, e)
    stored = working = 0.0
    for start, end, checkpointed in layer_chunks(config.num_layers, recompute):
        if checkpointed:
            stored += e * s * b * h / sp  # the chunk's input
            working = max(working, (end - start) * per_layer)  # rebuilt during this chunk's backward
        else:
            stored += (end - start) * per_layer
    vocab = config.padded_vocab_size(tp)
    head = _norm_bytes(s * b * h / sp, s * b / sp, e) + e * s * b * h + 4 * s * b * vocab / tp
    return int(stored + working + head)


def estimate_memory(config: LlamaConfig, tensor_model_parallel_size: int, data_parallel_size: int,
                    micro_batch_size: int, seq_length: int, options=None, optimizer=None) -> MemoryEstimate:
    """Per-GPU memory of training ``config`` with this layout.

    ``options`` is a ``TransformerOptions`` (recompute, sequence parallelism, attention backend;
    default: none of them, auto attention) and ``optimizer`` an ``OptimizerConfig`` (bf16, distributed
    optimizer, gradient-reduction dtype; default: its defaults, i.e. fp32, not distributed).
    """
    from megapmc.model.llama import TransformerOptions
    from megapmc.optim.config import OptimizerConfig

    options = options or TransformerOptions()
    optimizer = optimizer or OptimizerConfig()
    tp, dp = tensor_model_parallel_size, data_parallel_size
    if tp < 1 or dp < 1 or micro_batch_size < 1 or seq_length < 1:
        raise ValueError(f"TP ({tp}), DP ({dp}), micro-batch size ({micro_batch_size}) and sequence length "
                         f"({seq_length}) must all be positive")
    total, per_rank = count_parameters(config, tp)
    param_bytes = 2 if optimizer.bf16 else 4
    grad_bytes = 4 if optimizer.grad_reduce_in_fp32 else param_bytes
    state_bytes = 8 + (4 if optimizer.bf16 else 0)
    optimizer_bytes = per_rank * state_bytes
    if optimizer.use_distributed_optimizer:
        optimizer_bytes = -(-optimizer_bytes // dp)
    recompute = options.recompute_config
    sequence_parallel = options.sequence_parallel and tp > 1
    return MemoryEstimate(
        tensor_model_parallel_size=tp, data_parallel_size=dp, micro_batch_size=micro_batch_size,
        seq_length=seq_length, recompute_granularity=recompute.granularity or "none",
        sequence_parallel=sequence_parallel, use_distributed_optimizer=optimizer.use_distributed_optimizer,
        bf16=optimizer.bf16, params_total=total, params_per_rank=per_rank,
        weights=per_rank * param_bytes, gradients=per_rank * grad_bytes, optimizer=optimizer_bytes,
        activations=activation_bytes(config, tp, seq_length, micro_batch_size, recompute, sequence_parallel,
                                     options.attention_backend == "math", param_bytes),
    )


def layouts_for(config: LlamaConfig, num_gpus: int, micro_batch_size: int, seq_length: int, options=None,
                optimizer=None, tensor_parallel_sizes=(1, 2, 4, 8)) -> list[MemoryEstimate]:
    """The estimate of every ``TP × DP = num_gpus`` layout that the model's shape allows."""
    out = []
    for tp in tensor_parallel_sizes:
        if num_gpus % tp:
            continue
        try:
            config.check_tensor_parallel(tp)
        except ValueError:
            continue
        out.append(estimate_memory(config, tp, num_gpus // tp, micro_batch_size, seq_length, options, optimizer))
    return out


def format_layouts(estimates: list[MemoryEstimate], gpu_memory_gib: float, reserve_fraction: float) -> str:
    """A table of layouts: TP, DP, the breakdown in GiB, and whether each fits the device."""
    usable = gpu_memory_gib * (1.0 - reserve_fraction)
    rows = [f"{'TP':>3} {'DP':>4} {'weights':>8} {'grads':>8} {'optim':>8} {'activ':>8} {'total':>8}  "
            f"fits {gpu_memory_gib:g} GiB (usable {usable:.1f})"]
    for e in estimates:
        cells = [e.weights, e.gradients, e.optimizer, e.activations, e.total]
        rows.append(f"{e.tensor_model_parallel_size:>3} {e.data_parallel_size:>4} "
                    + " ".join(f"{c / GIB:8.2f}" for c in cells)
                    + f"  {'yes' if e.fits(gpu_memory_gib, reserve_fraction) else 'no'}")
    return "\n".join(rows)
