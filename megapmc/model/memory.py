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

Pipeline parallelism (``pipeline``, a ``PipelineConfig``): each stage holds its layers (the first also
the embedding, the last the final norm and ``lm_head``), so the weights, gradients and optimizer states
are counted per stage on the meta device. Activations: under 1F1B, stage ``r`` of ``P`` holds up to
``min(P - r, m)`` micro-batches in flight (its warm-up forwards plus the one being run); interleaved with
``V`` chunks, ``min(2(P - r - 1) + (V - 1)P + 1, V·m)`` chunk passes of ``L/(P·V)`` layers each, i.e.
about ``1 + (P - 1)/(P·V)`` times the 1F1B amount on the first stage. The output layer's logits are held
for one micro-batch (the last stage runs each backward right after its forward). The estimate is the
stage that needs the most; ``pipeline_bubble`` is ``(P - 1)/(V·m + P - 1)``.

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
    pipeline_model_parallel_size: int = 1
    pipeline_rank: int = 0  # the stage this estimate is for (the one that needs the most)
    num_model_chunks: int = 1  # V of the interleaved schedule
    num_micro_batches: int | None = None  # per DP rank and iteration; None: not given
    in_flight: int = 1  # micro-batch passes (of one chunk when interleaved) whose activations are held
    pipeline_bubble: float = 0.0

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
        p = self.pipeline_model_parallel_size
        layout = f"TP {self.tensor_model_parallel_size} x DP {self.data_parallel_size}" + (f" x PP {p}" if p > 1 else "")
        lines = []
        if p > 1:
            schedule = f"interleaved, {self.num_model_chunks} chunks per stage" if self.num_model_chunks > 1 else "1F1B"
            m = "unknown" if self.num_micro_batches is None else self.num_micro_batches
            bubble = "" if self.num_micro_batches is None else f", bubble {100 * self.pipeline_bubble:.1f}% of the step"
            lines = [f"pipeline: {schedule}, {m} micro-batches{bubble}; stage {self.pipeline_rank} (the fullest) "
                     f"holds {self.in_flight} micro-batch passes of activations"]
        return "\n".join([
            f"{layout}, micro-batch "
            f"{self.micro_batch_size}, seq {self.seq_length}, {'bf16' if self.bf16 else 'fp32'}, recompute "
            f"{self.recompute_granularity}, sequence parallel {'on' if self.sequence_parallel else 'off'}",
            f"parameters: {self.params_total:,} total, {self.params_per_rank:,} per rank",
            f"  weights      {gib(self.weights)}",
            f"  gradients    {gib(self.gradients)}  (contiguous main-grad buffer)",
            f"  optimizer    {gib(self.optimizer)}  ({opt}; {shard})",
            f"  activations  {gib(self.activations)}",
            f"  total        {gib(self.total)}",
            *lines,
        ])


def count_parameters(config: LlamaConfig, tensor_model_parallel_size: int = 1, pipeline=None,
                     pipeline_rank: int = 0) -> tuple[int, int]:
    """``(total, per_rank)`` from the model built on the meta device: the TP=1 model's count and TP
    rank 0's at ``tensor_model_parallel_size`` (every TP rank holds the same number), on pipeline stage
    ``pipeline_rank`` of ``pipeline`` (a ``PipelineConfig``; default: no pipelining)."""
    from megapmc.model.llama import TransformerOptions, build_model
    from megapmc.parallel.state import ParallelState
    from megapmc.pipeline_parallel.config import PipelineConfig
    from megapmc.pipeline_parallel.stage import build_pipeline_model

    options = TransformerOptions(attention_backend="math", kernel_backend="torch")  # no backend probing
    pipeline = pipeline or PipelineConfig()
    tp, pp = tensor_model_parallel_size, pipeline.pipeline_model_parallel_size
    config.check_tensor_parallel(tp)
    total = sum(p.numel() for p in build_model(config, ParallelState.single(), options, device="meta").parameters())
    if tp == 1 and pp == 1:
        return total, total
    state = ParallelState.for_shapes(tp=tp, pp=pp, pp_rank=pipeline_rank)
    model = build_pipeline_model(config, state, options, pipeline, device="meta")
    return total, sum(p.numel() for p in model.parameters())


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
                     bytes_per_element: int, num_layers: int | None = None, in_flight: int = 1,
                     output_layer: bool = True) -> int:
    """Peak bytes of activations kept for backward on one rank: ``in_flight`` micro-batch passes through
    ``num_layers`` layers (default: the whole model, one pass) plus, with ``output_layer``, the final norm
    and the logits of one micro-batch."""
    s, b, h, e = seq_length, micro_batch_size, config.hidden_size, bytes_per_element
    sp = tp if sequence_parallel and tp > 1 else 1
    per_layer = layer_activation_bytes(config, tp, s, b, sequence_parallel, recompute.selective,
                                       materialized_attention, e)
    stored = working = 0.0
    for start, end, checkpointed in layer_chunks(config.num_layers if num_layers is None else num_layers, recompute):
        if checkpointed:
            stored += e * s * b * h / sp  # the chunk's input
            working = max(working, (end - start) * per_layer)  # rebuilt during this chunk's backward
        else:
            stored += (end - start) * per_layer
    vocab = config.padded_vocab_size(tp)
    head = _norm_bytes(s * b * h / sp, s * b / sp, e) + e * s * b * h + 4 * s * b * vocab / tp
    return int(in_flight * stored + working + (head if output_layer else 0))


def in_flight_passes(pipeline_size: int, pipeline_rank: int, num_model_chunks: int,
                     num_micro_batches: int | None) -> int:
    """Micro-batch passes (through one model chunk) whose activations stage ``pipeline_rank`` holds at
    its peak: the warm-up forwards of the schedule plus the one running (``megapmc.pipeline_parallel.schedules``)."""
    p, r, v = pipeline_size, pipeline_rank, num_model_chunks
    if p == 1:
        return 1
    warm = (p - r - 1) if v == 1 else 2 * (p - r - 1) + (v - 1) * p
    passes = warm + 1
    return passes if num_micro_batches is None else min(passes, v * num_micro_batches)


def estimate_memory(config: LlamaConfig, tensor_model_parallel_size: int, data_parallel_size: int,
                    micro_batch_size: int, seq_length: int, options=None, optimizer=None, pipeline=None,
                    num_micro_batches: int | None = None) -> MemoryEstimate:
    """Per-GPU memory of training ``config`` with this layout: with pipelining, of the stage that needs
    the most (``estimate_stages`` gives every stage).

    ``options`` is a ``TransformerOptions`` (recompute, sequence parallelism, attention backend;
    default: none of them, auto attention), ``optimizer`` an ``OptimizerConfig`` (bf16, distributed
    optimizer, gradient-reduction dtype; default: its defaults, i.e. fp32, not distributed), ``pipeline``
    a ``PipelineConfig`` and ``num_micro_batches`` the micro-batches per DP rank and iteration (they
    bound the in-flight ones and give the bubble; default: unknown, the schedule's maximum is assumed).
    """
    return max(estimate_stages(config, tensor_model_parallel_size, data_parallel_size, micro_batch_size,
                               seq_length, options, optimizer, pipeline, num_micro_batches), key=lambda e: e.total)


def estimate_stages(config: LlamaConfig, tensor_model_parallel_size: int, data_parallel_size: int,
                    micro_batch_size: int, seq_length: int, options=None, optimizer=None, pipeline=None,
                    num_micro_batches: int | None = None) -> list[MemoryEstimate]:
    """``estimate_memory`` of every pipeline stage, first to last."""
    from megapmc.pipeline_parallel.config import PipelineConfig

    pipeline = pipeline or PipelineConfig()
    return [_estimate_stage(config, tensor_model_parallel_size, data_parallel_size, micro_batch_size, seq_length,
                            options, optimizer, pipeline, num_micro_batches, r)
            for r in range(pipeline.pipeline_model_parallel_size)]


def _estimate_stage(config, tensor_model_parallel_size, data_parallel_size, micro_batch_size, seq_length, options,
                    optimizer, pipeline, num_micro_batches, pipeline_rank) -> MemoryEstimate:
    from megapmc.model.llama import TransformerOptions
    from megapmc.optim.config import OptimizerConfig
    from megapmc.pipeline_parallel.schedules import bubble_fraction

    options = options or TransformerOptions()
    optimizer = optimizer or OptimizerConfig()
    tp, dp = tensor_model_parallel_size, data_parallel_size
    if tp < 1 or dp < 1 or micro_batch_size < 1 or seq_length < 1:
        raise ValueError(f"TP ({tp}), DP ({dp}), micro-batch size ({micro_batch_size}) and sequence length "
                         f"({seq_length}) must all be positive")
    p = pipeline.pipeline_model_parallel_size
    chunks = pipeline.stage_layers(config.num_layers)[pipeline_rank]
    v = len(chunks)
    if num_micro_batches is not None and v > 1 and num_micro_batches % p:
        raise ValueError(f"the interleaved schedule needs the micro-batches per DP rank ({num_micro_batches}) to be "
                         f"a multiple of --pipeline-model-parallel-size {p}; change the global batch size")
    in_flight = in_flight_passes(p, pipeline_rank, v, num_micro_batches)
    total, per_rank = count_parameters(config, tp, pipeline, pipeline_rank)
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
                                     options.attention_backend == "math", param_bytes, num_layers=len(chunks[0]),
                                     in_flight=in_flight, output_layer=pipeline_rank == p - 1),
        pipeline_model_parallel_size=p, pipeline_rank=pipeline_rank, num_model_chunks=v,
        num_micro_batches=num_micro_batches, in_flight=in_flight,
        pipeline_bubble=0.0 if num_micro_batches is None else bubble_fraction(p, num_micro_batches, v),
    )


def layouts_for(config: LlamaConfig, num_gpus: int, micro_batch_size: int, seq_length: int, options=None,
                optimizer=None, tensor_parallel_sizes=(1, 2, 4, 8), pipeline_sizes=(1,),
                global_batch_size: int | None = None) -> list[MemoryEstimate]:
    """The estimate of every ``TP × PP × DP = num_gpus`` layout that the model's shape allows (PP from
    ``pipeline_sizes``, even 1F1B splits; ``global_batch_size`` gives each layout its micro-batch count)."""
    from megapmc.pipeline_parallel.config import PipelineConfig

    out = []
    for pp in pipeline_sizes:
        for tp in tensor_parallel_sizes:
            if num_gpus % (tp * pp):
                continue
            pipeline = PipelineConfig(pp)
            try:
                config.check_tensor_parallel(tp)
                pipeline.stage_layers(config.num_layers)
            except ValueError:
                continue
            dp = num_gpus // (tp * pp)
            m = None
            if global_batch_size is not None and global_batch_size % (micro_batch_size * dp) == 0:
                m = global_batch_size // (micro_batch_size * dp)
            out.append(estimate_memory(config, tp, dp, micro_batch_size, seq_length, options, optimizer, pipeline, m))
    return out


def format_layouts(estimates: list[MemoryEstimate], gpu_memory_gib: float, reserve_fraction: float) -> str:
    """A table of layouts: TP, (PP and the bubble when any layout pipelines), DP, the breakdown in GiB of
    the fullest stage, and whether each fits the device."""
    usable = gpu_memory_gib * (1.0 - reserve_fraction)
    piped = any(e.pipeline_model_parallel_size > 1 for e in estimates)
    rows = [f"{'TP':>3} " + (f"{'PP':>3} {'bubble':>6} " if piped else "")
            + f"{'DP':>4} {'weights':>8} {'grads':>8} {'optim':>8} {'activ':>8} {'total':>8}  "
            f"fits {gpu_memory_gib:g} GiB (usable {usable:.1f})"]
    for e in estimates:
        cells = [e.weights, e.gradients, e.optimizer, e.activations, e.total]
        bubble = "" if e.num_micro_batches is None else f"{100 * e.pipeline_bubble:5.1f}%"
        rows.append(f"{e.tensor_model_parallel_size:>3} "
                    + (f"{e.pipeline_model_parallel_size:>3} {bubble:>6} " if piped else "")
                    + f"{e.data_parallel_size:>4} "
                    + " ".join(f"{c / GIB:8.2f}" for c in cells)
                    + f"  {'yes' if e.fits(gpu_memory_gib, reserve_fraction) else 'no'}")
    return "\n".join(rows)
