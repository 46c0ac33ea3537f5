"""Data parallelism (contiguous gradient buffer, bucketed reduction) and the (distributed) optimizer."""
from megapmc.optim.config import OptimizerConfig
from megapmc.optim.data_parallel import DataParallel
from megapmc.optim.distributed_optimizer import DistributedOptimizer, build_optimizer
from megapmc.optim.optimizer import MixedPrecisionOptimizer, StepResult, merge_sharded_state_dicts

__all__ = [
    "DataParallel",
    "DistributedOptimizer",
    "MixedPrecisionOptimizer",
    "OptimizerConfig",
    "StepResult",
    "build_optimizer",
    "merge_sharded_state_dicts",
]
