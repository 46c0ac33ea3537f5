"""OptimizerConfig validation: every bad value names its flag."""
import pytest

from megapmc.optim import OptimizerConfig


@pytest.mark.parametrize("field,value,flag", [
    ("lr", -1.0, "--lr"),
    ("min_lr", 1.0, "--min-lr"),
    ("weight_decay", -0.1, "--weight-decay"),
    ("adam_beta1", 1.0, "--adam-beta1"),
    ("adam_beta2", -0.5, "--adam-beta2"),
    ("adam_eps", 0.0, "--adam-eps"),
    ("clip_grad", -1.0, "--clip-grad"),
    ("bucket_size", 0, "--ddp-bucket-size"),
    ("overlap_param_gather", True, "--overlap-param-gather needs --use-distributed-optimizer"),
])
def test_bad_values_name_the_flag(field, value, flag):
    with pytest.raises(ValueError, match=flag):
        OptimizerConfig(**{field: value})


def test_round_trip_and_unknown_fields():
    config = OptimizerConfig(lr=3e-4, bf16=True, use_distributed_optimizer=True, bucket_size=None)
    assert OptimizerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown OptimizerConfig fields"):
        OptimizerConfig.from_dict({**config.to_dict(), "loss_scale": 1.0})
