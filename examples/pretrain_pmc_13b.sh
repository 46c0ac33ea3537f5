#!/usr/bin/env bash
# PMC-LLaMA stage 1, knowledge injection: LLaMA-13B continued on medical books : papers : general text
# mixed 15:4:1 in every global batch; seq 2048, global batch 3200, lr 2e-5, 5 epochs of the books,
# bf16, activation checkpointing, flash attention; 4 nodes x 8 A100-80GB.
# The recipe (data, schedule, optimizer), with where every setting comes from, is examples/stage1_recipe.sh,
# shared with the 70B script; this file adds the model and its layout. docs/paper_fidelity.md has the table.
#
# Layout: TP=2 x DP=16, sequence parallel, distributed optimizer, selective recompute, micro-batch 2:
# what megapmc.model.memory picks (`DRY_RUN=1 bash examples/pretrain_pmc_13b.sh` prints it): 62 GiB per
# GPU, the smallest TP that fits 80 GB with a 10% reserve. TP=1 needs 79 GiB even with full recompute
# and micro-batch 1 (bf16 weights + fp32 main grads alone are 73 GiB); selective recompute at
# micro-batch 4 needs 84 GiB. Less TP means less communication inside each layer; flash attention
# stores no s x s scores, so selective recompute costs almost nothing. Override with TP=..., MBS=....
#
# Environment (the run stops with a message naming what is missing):
#   BOOKS_PREFIX, PAPERS_PREFIX, GENERAL_PREFIX  indexed datasets (tools/preprocess_data.py output, no .bin/.idx);
#                     every document is trained on: an epoch is every book token
#   optional VALID_PREFIX  held-out documents for validation, not in any of the three above (the release
#                     held out 10,000 random papers, Paper_dataset.py read_jsonl(eval_num)); e.g. keep one
#                     S2ORC shard's PMC papers out of PAPERS_PREFIX and tokenise it alone. Unset: no validation.
#   TOKENIZER_MODEL   LLaMA's tokenizer.model
#   LLAMA_CKPT        LLaMA-13B converted to megapmc at the same TP (tools/convert_checkpoint.py --loader hf
#                     --saver megapmc --target-tensor-parallel-size $TP)
#   CHECKPOINT_DIR    run directory: checkpoints, metrics.jsonl; a restart resumes from it (shared filesystem)
#   optional: TENSORBOARD_DIR (default $CHECKPOINT_DIR/tensorboard), DATA_CACHE_PATH, GPUS_PER_NODE (8),
#             NNODES (1), NODE_RANK (0), MASTER_ADDR (localhost), MASTER_PORT (6000), DRY_RUN=1
#
# Launch lines:
#   one node:            bash examples/pretrain_pmc_13b.sh
#   4 nodes, on each:    NNODES=4 NODE_RANK=<0..3> MASTER_ADDR=<node 0> bash examples/pretrain_pmc_13b.sh
#   under torchrun:      torchrun --no-python --nproc-per-node 8 --nnodes 4 --node-rank <0..3> \
#                            --master-addr <node 0> --master-port 6000 examples/pretrain_pmc_13b.sh
#   Slurm:               sbatch examples/pretrain_pmc_13b.slurm
#   check, no GPU:       DRY_RUN=1 bash examples/pretrain_pmc_13b.sh   (config, data plan, memory estimate)
# An iteration (3200 x 2048 tokens) takes about 100 s on 32 A100s at 50% MFU, so --save-interval 50
# risks at most ~1.4 h; a checkpoint is ~180 GB (bf16 weights + fp32 optimizer shards), 3 are kept.
# Preemption: SIGTERM or SIGUSR1 to the training processes makes every rank finish its iteration, save
# and exit 0 (Slurm's --signal does this, see the .slurm file). SIGTERM/SIGUSR1 to this script or to
# torchrun under it is forwarded to the ranks, and their save gets SHUTDOWN_TIMEOUT s (default 1800)
# instead of torchrun's own 30 s (examples/launch_common.sh, run_torchrun).
# Extra arguments are passed on to `python -m megapmc.pretrain` (they win over the ones below).
set -euo pipefail

SCRIPT=pretrain_pmc_13b.sh
DEFAULT_MASTER_PORT=6000
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && DRY_RUN=1; done
source "$(dirname "${BASH_SOURCE[0]}")/stage1_recipe.sh"
stage1_require_env LLaMA-13B
stage1_recipe_args

TP=${TP:-2}
MBS=${MBS:-2}

# TP/SP/distributed optimizer: [megapmc] Megatron's layout in place of the paper's FSDP (same math).
ARGS=(
    --model llama-13b
    --tensor-model-parallel-size "$TP" --sequence-parallel
    --use-distributed-optimizer --overlap-grad-reduce
    --micro-batch-size "$MBS"
    "${STAGE1_ARGS[@]}"
)
DRY_RUN_ARGS=(--world-size $((NNODES * GPUS_PER_NODE)))
launch megapmc.pretrain "${ARGS[@]}" "$@"
