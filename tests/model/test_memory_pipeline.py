"""The memory estimator with pipeline parallelism: per-stage parameters on the meta device, the 1F1B and
interleaved in-flight micro-batches, the bubble, and the 70B layout of examples/pretrain_pmc_70b.sh."""
import pytest

from megapmc.model import LlamaConfig
from megapmc.model.llama import TransformerOptions
from megapmc.model.memory import activation_bytes, count_parameters, estimate_stages, in_flight_passes, layouts_for
from megapmc.model.recompute import RecomputeConfig
from megapmc.optim import OptimizerConfig
from megapmc.pipeline_parallel.config import PipelineConfig

LLAMA2_70B = LlamaConfig.from_name("llama2-70b")
BF16_ZERO1 = OptimizerConfig(bf16=True, use_distributed_optimizer=True)
SELECTIVE_SP = TransformerOptions(recompute_granularity="selective", sequence_parallel=True)


def test_llama2_70b_parameter_count_on_the_meta_device():
    total, per_rank = count_parameters(LLAMA2_70B)
    h, layers, f, kv = 8192, 80, 28672, 8 * 128
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * f + 2 * h  # q, o; k, v (GQA: 8 KV heads); SwiGLU; 2 norms
    assert total == per_rank == 2 * 32000 * h + h + layers * per_layer == 68_976_648_192


def test_stages_split_the_parameters():
    pipeline = PipelineConfig(4)
    per_stage = [count_parameters(LLAMA2_70B, 8, pipeline, r)[1] for r in range(4)]
    h, v = 8192, 32768 // 8  # 32000 padded to a multiple of 128 x 8, split over TP 8
    layer = (2 * h * h + 2 * h * 1024 + 3 * h * 28672) // 8 + 2 * h
    assert per_stage == [v * h + 20 * layer, 20 * layer, 20 * layer, v * h + h + 20 * layer]


@pytest.mark.parametrize("p,v,expected", [(4, 1, [4, 3, 2, 1]), (4, 2, [11, 9, 7, 5])])
def test_in_flight_follows_the_schedule(p, v, expected):
    assert [in_flight_passes(p, r, v, None) for r in range(p)] == expected
    assert in_flight_passes(4, 0, 1, 2) == 2  # never more than the micro-batches there are


def test_stage_activations_hold_the_in_flight_micro_batches():
    stages = estimate_stages(LLAMA2_70B, 8, 1, 1, 4096, SELECTIVE_SP, BF16_ZERO1, PipelineConfig(4), 3200)
    one = activation_bytes(LLAMA2_70B, 8, 4096, 1, RecomputeConfig("selective"), True, False, 2, num_layers=20,
                           output_layer=False)
    assert [s.activations for s in stages[:3]] == [4 * one, 3 * one, 2 * one]
    assert stages[3].activations > one  # one micro-batch plus the logits of the output layer
    assert all(s.pipeline_bubble == pytest.approx(3 / 3203) for s in stages)
    interleaved = estimate_stages(LLAMA2_70B, 8, 1, 1, 4096, SELECTIVE_SP, BF16_ZERO1,
                                  PipelineConfig(4, num_layers_per_virtual_pipeline_stage=10), 3200)
    # 11 passes of 10 layers against 4 of 20: 1 + (P - 1)/(P·V) = 1.375 times the 1F1B amount.
    assert interleaved[0].activations == pytest.approx(stages[0].activations * 11 / 8, rel=1e-6)
    assert interleaved[0].pipeline_bubble == pytest.approx(3 / (2 * 3200 + 3))
    with pytest.raises(ValueError, match="multiple of --pipeline-model-parallel-size 4"):
        estimate_stages(LLAMA2_70B, 8, 1, 1, 4096, None, None,
                        PipelineConfig(4, num_layers_per_virtual_pipeline_stage=10), 6)


def test_the_70b_layout_fits_32_gpus_of_80_gb():
    layouts = {(e.tensor_model_parallel_size, e.pipeline_model_parallel_size): e for e in layouts_for(
        LLAMA2_70B, 32, 1, 4096, SELECTIVE_SP, BF16_ZERO1, pipeline_sizes=(1, 2, 4, 8), global_batch_size=3200)}
    assert layouts[8, 4].fits(80) and layouts[8, 4].data_parallel_size == 1
    # Without pipelining even TP 8 does not fit: 70B/8 bf16 weights + fp32 grads + Adam over DP 4.
    assert not layouts[8, 1].fits(80) and not layouts[8, 2].fits(80)
