"""One pipeline rank's part of the LLaMA model, and how a stage runs.

A rank holds one model chunk (1F1B) or ``V`` of them (interleaved), each a ``LlamaModel`` built with
the ``layers`` / ``pre_process`` / ``post_process`` it owns (``PipelineConfig.stage_layers``): the
embedding lives on the first stage's first chunk, the final norm, ``lm_head`` and the loss on the last
stage's last chunk. ``PipelineModel`` groups the chunks into one module, so one ``DataParallel`` and
one optimizer cover them. Weights are initialised from their global names, so a pipelined model starts
from exactly the weights of the one-process model.
"""
from __future__ import annotations

import torch
from torch import nn

from megapmc.model.llama import LlamaModel, build_model
from megapmc.parallel.state import ParallelState
from megapmc.pipeline_parallel.config import PipelineConfig


class PipelineModel(nn.Module):
    """The model chunks of one pipeline rank, as one module under the one-process model's names.

    Its submodules are the chunks' pieces registered by global name (``embed_tokens``, ``layers.{global
    number}``, ``norm``, ``lm_head``: whichever this rank holds), so ``named_parameters``, ``state_dict``
    and ``load_state_dict`` speak the names of ``LlamaModel`` at PP = 1, and the optimizer and checkpoints
    name a parameter the same way at every pipeline layout. ``chunks`` (virtual-stage order) is what the
    schedules run; it is a plain list so nothing is registered twice.
    """

    def __init__(self, chunks: list[LlamaModel]):
        super().__init__()
        self.chunks = list(chunks)
        layers = nn.ModuleDict()
        for chunk in chunks:
            if chunk.pre_process:
                self.embed_tokens = chunk.embed_tokens
            for number, layer in zip(chunk.layer_numbers, chunk.layers):
                layers[str(number)] = layer
            if chunk.post_process:
                self.norm, self.lm_head = chunk.norm, chunk.lm_head
        self.layers = layers


def model_chunks(model: nn.Module) -> list[LlamaModel]:
    """The chunks a schedule runs: a ``PipelineModel``'s, or the whole model as one chunk."""
    return model.chunks if isinstance(model, PipelineModel) else [model]


def build_pipeline_model(config, parallel: ParallelState, options, pipeline: PipelineConfig, device="cpu",
                         dtype=torch.float32, seed: int | None = 1234) -> nn.Module:
    """This rank's model: the plain ``LlamaModel`` without pipelining, else a ``PipelineModel``."""
    if pipeline.pipeline_model_parallel_size != parallel.pp_size:
        raise ValueError(f"--pipeline-model-parallel-size {pipeline.pipeline_model_parallel_size} but the process "
                         f"groups were built for {parallel.pp_size} stages")
    if parallel.pp_size == 1:
        return build_model(config, parallel, options, device, dtype, seed)
    ranges = pipeline.stage_layers(config.num_layers)[parallel.pp_rank]
    last = len(ranges) - 1
    return PipelineModel([
        build_model(config, parallel, options, device, dtype, seed, layers=layers,
                    pre_process=parallel.is_pipeline_first_stage and c == 0,
                    post_process=parallel.is_pipeline_last_stage and c == last)
        for c, layers in enumerate(ranges)])


def activation_shape(chunk: LlamaModel, micro_batch_size: int, seq_length: int) -> tuple[int, int, int]:
    """What flows between stages: ``[s, b, h]``, or ``[s/tp, b, h]`` under sequence parallelism."""
    s = seq_length // chunk.parallel.tp_size if chunk.sequence_parallel else seq_length
    return s, micro_batch_size, chunk.config.hidden_size


def stage_forward(chunk: LlamaModel, mb: dict, hidden: torch.Tensor | None) -> torch.Tensor:
    """Run one chunk on micro-batch ``mb`` (every stage gets it: ``input_ids`` give the shape, the last
    stage reads ``labels``). ``hidden``: the previous stage's output ``[s(/tp), b, h]`` (``None`` on the
    first chunk). Returns this chunk's output ``[s(/tp), b, h]``, or on the last one the per-token loss
    ``[b, s]`` (fp32): ``LlamaModel.forward``, the one forward of training, pipelining and decoding."""
    return chunk(mb["input_ids"], position_ids=mb.get("position_ids"), segment_ids=mb.get("segment_ids"),
                 labels=mb["labels"] if chunk.post_process else None,
                 hidden_states=None if chunk.pre_process else hidden)
