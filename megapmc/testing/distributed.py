"""Run a function on N gloo processes on the CPU, the way the tensor- and data-parallel tests need.

``run_distributed(fn, world_size, *args)`` spawns ``world_size`` processes, sets up torchrun's
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), initialises a gloo
process group and calls ``fn(rank, world_size, *args)`` in each. A failure in any rank is re-raised in
the parent with that rank's traceback, so pytest shows the real error.
"""
from __future__ import annotations

import os
import socket
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple, errors) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    # Several ranks share two cores: one thread each keeps them from thrashing.
    torch.set_num_threads(1)
    try:
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
        fn(rank, world_size, *args)
    except BaseException:  # reported to the parent, which raises
        errors.put((rank, traceback.format_exc()))
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], world_size: int, *args: Any) -> None:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo processes; raise if any rank fails.

    ``fn`` must be a module-level function (it is pickled into spawned processes).
    """
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    port = free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, world_size, port, fn, args, errors), daemon=False)
        for r in range(world_size)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    if failures or any(p.exitcode != 0 for p in procs):
        detail = "\n".join(f"--- rank {r} ---\n{tb}" for r, tb in sorted(failures))
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"distributed test failed (exit codes {codes})\n{detail}")


def local_slices(model: torch.nn.Module, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This TP rank's slices of a TP = 1 state dict (same names, same padded vocabulary), cut by each
    parallel layer's own ``shard`` (its ``weight_layout``): what a rank's weights or gradients must equal."""
    modules = dict(model.named_modules())
    out = {}
    for name, tensor in full.items():
        module = modules[name.rpartition(".")[0]]
        out[name] = module.shard(tensor) if hasattr(module, "shard") else tensor
    return out
