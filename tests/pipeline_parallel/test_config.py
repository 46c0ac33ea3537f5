"""Pipeline layouts without processes: the split of layers into (virtual) stages, Megatron's flags and
their errors, the micro-batch checks and padding, and the bubble formula."""
import pytest
import torch

from megapmc.model.config import LlamaConfig
from megapmc.parallel.state import ParallelState
from megapmc.pipeline_parallel.config import PipelineConfig
from megapmc.pipeline_parallel.schedules import (
    bubble_fraction,
    check_num_micro_batches,
    get_forward_backward_func,
    micro_batch_multiple,
    pad_micro_batches,
)
from megapmc.pipeline_parallel.stage import PipelineModel, build_pipeline_model


def _split(num_layers, **kw):
    return [[(r.start, r.stop) for r in chunks] for chunks in PipelineConfig(**kw).stage_layers(num_layers)]


def test_even_uneven_and_interleaved_splits():
    assert _split(8, pipeline_model_parallel_size=4) == [[(0, 2)], [(2, 4)], [(4, 6)], [(6, 8)]]
    assert _split(80, pipeline_model_parallel_size=4, decoder_first_pipeline_num_layers=17,
                  decoder_last_pipeline_num_layers=19) == [[(0, 17)], [(17, 39)], [(39, 61)], [(61, 80)]]
    assert _split(5, pipeline_model_parallel_size=2, decoder_last_pipeline_num_layers=1) == [[(0, 4)], [(4, 5)]]
    # Megatron's interleaving: virtual stage c·P + r is chunk c of rank r.
    assert _split(8, pipeline_model_parallel_size=2, num_layers_per_virtual_pipeline_stage=2) == [
        [(0, 2), (4, 6)], [(2, 4), (6, 8)]]
    assert PipelineConfig(2, num_layers_per_virtual_pipeline_stage=1).num_model_chunks(8) == 4


@pytest.mark.parametrize("kw,layers,message", [
    (dict(pipeline_model_parallel_size=3), 8, "the other 3 stages cannot share the remaining 8 layers evenly"),
    (dict(pipeline_model_parallel_size=2, decoder_first_pipeline_num_layers=9), 8, "--decoder-first-pipeline-num-layers 9"),
    (dict(pipeline_model_parallel_size=3, decoder_first_pipeline_num_layers=3, decoder_last_pipeline_num_layers=3),
     6, r"a stage would hold no decoder layer \(\[3, 0, 3\]\)"),
    (dict(pipeline_model_parallel_size=2, num_layers_per_virtual_pipeline_stage=3), 8, "does not divide the 8 layers"),
    (dict(pipeline_model_parallel_size=2, num_layers_per_virtual_pipeline_stage=4), 8, "leaves one chunk per stage"),
])
def test_bad_splits_name_the_flag(kw, layers, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**kw).stage_layers(layers)


def test_bad_flag_combinations():
    with pytest.raises(ValueError, match="need --pipeline-model-parallel-size > 1"):
        PipelineConfig(1, num_layers_per_virtual_pipeline_stage=2)
    with pytest.raises(ValueError, match="interleaved stages are even"):
        PipelineConfig(2, num_layers_per_virtual_pipeline_stage=2, decoder_first_pipeline_num_layers=1)
    with pytest.raises(ValueError, match="must be >= 1"):
        PipelineConfig(0)


def test_interleaving_needs_a_multiple_of_pp_micro_batches():
    interleaved = PipelineConfig(4, num_layers_per_virtual_pipeline_stage=1)
    with pytest.raises(ValueError, match=r"micro-batches per DP rank \(6 = --global-batch-size.*multiple of "
                                         r"--pipeline-model-parallel-size 4"):
        check_num_micro_batches(interleaved, 8, 6)
    assert get_forward_backward_func(interleaved, 8, 8).__name__ == "forward_backward_pipelining_with_interleaving"
    assert get_forward_backward_func(PipelineConfig(4), 8, 3).__name__ == \
        "forward_backward_pipelining_without_interleaving"  # 1F1B runs any count (a long bubble)
    assert get_forward_backward_func(PipelineConfig(), 8, 1).__name__ == "forward_backward_no_pipelining"


def _micro_batch(rows, seq=4):
    return {"input_ids": torch.arange(rows * seq).view(rows, seq), "labels": torch.arange(rows * seq).view(rows, seq),
            "loss_mask": torch.ones(rows, seq), "num_samples": torch.ones(rows, dtype=torch.int64)}


def test_padding_fills_short_and_missing_micro_batches_with_masked_rows():
    assert micro_batch_multiple(PipelineConfig(2, num_layers_per_virtual_pipeline_stage=1), 4) == 2
    assert micro_batch_multiple(PipelineConfig(2), 4) == 1
    step = [_micro_batch(2), _micro_batch(2), _micro_batch(1)]
    padded, rows, extra = pad_micro_batches(step, micro_batch_size=2, multiple=2)
    assert (rows, extra, len(padded)) == (1, 1, 4)
    assert all(mb[k].shape[0] == 2 for mb in padded for k in mb)
    assert torch.equal(padded[2]["input_ids"][1], step[2]["input_ids"][0])  # a real row, repeated
    assert sum(mb["loss_mask"].sum() for mb in padded) == sum(mb["loss_mask"].sum() for mb in step)
    assert sum(mb["num_samples"].sum() for mb in padded) == 5
    assert step[2]["loss_mask"].shape == (1, 4) and step[2]["loss_mask"].all()  # the caller's step untouched
    full, rows, extra = pad_micro_batches(step[:2], 2, 2)
    assert rows == extra == 0 and all(a is b for a, b in zip(full, step[:2]))  # nothing to do: no copies


def test_bubble_fraction():
    assert bubble_fraction(1, 8) == 0
    assert bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert bubble_fraction(4, 8, 2) == pytest.approx(1.5 / 9.5)  # (P - 1)/V passes of fill and drain


def test_stages_hold_their_part_under_global_names():
    config = LlamaConfig.from_name("tiny", num_layers=4)
    pipeline = PipelineConfig(2, num_layers_per_virtual_pipeline_stage=1)
    first = build_pipeline_model(config, ParallelState.for_shapes(pp=2, pp_rank=0), None, pipeline, device="meta")
    last = build_pipeline_model(config, ParallelState.for_shapes(pp=2, pp_rank=1), None, pipeline, device="meta")
    assert isinstance(first, PipelineModel) and len(first.chunks) == 2
    names = [set(m.state_dict()) for m in (first, last)]  # the one-process names
    assert "embed_tokens.weight" in names[0] and "lm_head.weight" in names[1] and "norm.weight" in names[1]
    assert {n.split(".")[1] for n in names[0] if n.startswith("layers.")} == {"0", "2"}
    assert {n.split(".")[1] for n in names[1] if n.startswith("layers.")} == {"1", "3"}
    assert not names[0] & names[1]
