"""Tensor- and data-parallel process groups, collectives and layers."""
from megapmc.parallel.state import ParallelState, initialize_parallel

__all__ = ["ParallelState", "initialize_parallel"]
