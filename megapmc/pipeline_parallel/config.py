"""Pipeline-parallel settings and the split of the decoder layers into (virtual) stages.

Megatron's flags: ``--pipeline-model-parallel-size P``; ``--decoder-first-pipeline-num-layers`` /
``--decoder-last-pipeline-num-layers`` give the first / last stage fewer (or more) layers than the
rest (the first stage also holds the embedding, the last the output layer and the loss), the middle
stages sharing what is left evenly; ``--num-layers-per-virtual-pipeline-stage N`` cuts each stage into
``V = L / (P·N)`` model chunks for the interleaved schedule.

Interleaved layout (Megatron's): virtual stage ``c·P + r`` is chunk ``c`` of pipeline rank ``r`` and
holds layers ``[(c·P + r)·N, (c·P + r + 1)·N)``, so activations go round the ranks ``V`` times.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class PipelineConfig:
    pipeline_model_parallel_size: int = 1
    num_layers_per_virtual_pipeline_stage: int | None = None
    decoder_first_pipeline_num_layers: int | None = None
    decoder_last_pipeline_num_layers: int | None = None

    def __post_init__(self):
        p = self.pipeline_model_parallel_size
        if p < 1:
            raise ValueError(f"--pipeline-model-parallel-size must be >= 1, got {p}")
        uneven = (self.decoder_first_pipeline_num_layers, self.decoder_last_pipeline_num_layers)
        if p == 1 and (self.num_layers_per_virtual_pipeline_stage is not None or any(n is not None for n in uneven)):
            raise ValueError("--num-layers-per-virtual-pipeline-stage and --decoder-first/last-pipeline-num-layers "
                             "split layers across pipeline stages: they need --pipeline-model-parallel-size > 1")
        for flag, n in (("--num-layers-per-virtual-pipeline-stage", self.num_layers_per_virtual_pipeline_stage),
                        ("--decoder-first-pipeline-num-layers", uneven[0]),
                        ("--decoder-last-pipeline-num-layers", uneven[1])):
            if n is not None and n < 1:
                raise ValueError(f"{flag} must be >= 1, got {n}")
        if self.num_layers_per_virtual_pipeline_stage is not None and any(n is not None for n in uneven):
            raise ValueError("--num-layers-per-virtual-pipeline-stage with --decoder-first/last-pipeline-num-layers "
                             "is not supported: interleaved stages are even; drop one of them")

    def num_model_chunks(self, num_layers: int) -> int:
        """Model chunks per pipeline rank: ``V`` when interleaved, else 1."""
        n = self.num_layers_per_virtual_pipeline_stage
        return 1 if n is None else num_layers // (self.pipeline_model_parallel_size * n)

    def stage_layers(self, num_layers: int) -> list[list[range]]:
        """``[pp_rank][chunk]`` → the global decoder-layer numbers that chunk holds; raises a ValueError
        naming the flag when the layers do not split this way."""
        p, n = self.pipeline_model_parallel_size, self.num_layers_per_virtual_pipeline_stage
        if n is not None:
            if num_layers % (p * n):
                raise ValueError(
                    f"--num-layers-per-virtual-pipeline-stage {n} x --pipeline-model-parallel-size {p} = {p * n} "
                    f"does not divide the {num_layers} layers; choose N so that P·N divides the layer count")
            v = num_layers // (p * n)
            if v < 2:
                raise ValueError(f"--num-layers-per-virtual-pipeline-stage {n} leaves one chunk per stage "
                                 f"({num_layers} layers / {p} stages); drop the flag or lower N")
            return [[range((c * p + r) * n, (c * p + r + 1) * n) for c in range(v)] for r in range(p)]
        first, last = self.decoder_first_pipeline_num_layers, self.decoder_last_pipeline_num_layers
        sizes: list[int | None] = [first] + [None] * (p - 2) + [last]  # p > 1 whenever first/last are set
        if p == 1:
            sizes = [None]
        fixed = sum(s for s in sizes if s is not None)
        free = sizes.count(None)
        rest = num_layers - fixed
        what = (f"{num_layers} layers over --pipeline-model-parallel-size {p}"
                + (f" with --decoder-first-pipeline-num-layers {first}" if first is not None else "")
                + (f" with --decoder-last-pipeline-num-layers {last}" if last is not None else ""))
        if rest < 0 or (free and rest % free) or (not free and rest):
            raise ValueError(f"{what}: the other {free} stages cannot share the remaining {rest} layers evenly")
        sizes = [s if s is not None else rest // free for s in sizes]
        if min(sizes) < 1:
            raise ValueError(f"{what}: a stage would hold no decoder layer ({sizes}); use fewer stages")
        starts = [sum(sizes[:r]) for r in range(p)]
        return [[range(starts[r], starts[r] + sizes[r])] for r in range(p)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
