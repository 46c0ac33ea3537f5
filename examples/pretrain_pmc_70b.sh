#!/usr/bin/env bash
# PMC-LLaMA's stage 1 (knowledge injection) at LLaMA-2-70B scale: the 13B recipe (books : papers :
# general 15:4:1 in every global batch, seq 2048, global batch 3200, lr 2e-5, 5 epochs of the books,
# bf16; the same flags, from examples/stage1_recipe.sh) on LLaMA-2-70B (GQA, 8 KV heads, 80 layers);
# 4 nodes x 8 A100/H100-80GB.
#
# Layout: TP=8 (inside a node) x PP=2 (1F1B, 40 layers per stage, across nodes) x DP=2, sequence
# parallel, distributed optimizer, selective recompute, micro-batch 1: 1600 micro-batches per DP rank
# and iteration, so the pipeline bubble is 1/1601. What megapmc.model.memory shows
# (`DRY_RUN=1 bash examples/pretrain_pmc_70b.sh`): 60.5 GiB on the fullest stage (the first, with its 2
# in-flight micro-batches), the smallest PP that fits 80 GB with a 10% reserve. Without pipelining
# even TP=8 x DP=4 needs 85 GiB (70B/8 bf16 weights + fp32 main grads + Adam over DP 4); TP=8 x PP=4
# x DP=1 needs 49 GiB (more stages, no optimizer sharding). Override with TP=..., PP=..., MBS=....
#
# Checkpoints: one file per (TP, PP) rank (model_tpXX_ppYYY, optim_tpXX_ppYYY_dpZZ), under the
# one-process names, so conversion and evaluation read them like any other. Convert LLAMA_CKPT into this
# layout (--target-tensor-parallel-size $TP --target-pipeline-parallel-size $PP) and each stage reads only
# its own files; a TP-only conversion works too (each stage then picks its layers out of it).
#
# Environment (the run stops with a message naming what is missing):
#   BOOKS_PREFIX, PAPERS_PREFIX, GENERAL_PREFIX  indexed datasets (tools/preprocess_data.py output, no .bin/.idx);
#                     every document is trained on: an epoch is every book token
#   optional VALID_PREFIX  held-out documents for validation (as examples/pretrain_pmc_13b.sh). Unset: no validation.
#   TOKENIZER_MODEL   LLaMA-2's tokenizer.model
#   LLAMA_CKPT        LLaMA-2-70B converted to megapmc (tools/convert_checkpoint.py --loader hf --saver megapmc
#                     --target-tensor-parallel-size $TP --target-pipeline-parallel-size $PP)
#   CHECKPOINT_DIR    run directory: checkpoints, metrics.jsonl; a restart resumes from it (shared filesystem)
#   optional: TENSORBOARD_DIR (default $CHECKPOINT_DIR/tensorboard), DATA_CACHE_PATH, GPUS_PER_NODE (8),
#             NNODES (1), NODE_RANK (0), MASTER_ADDR (localhost), MASTER_PORT (6000), DRY_RUN=1
#
# Launch lines (as examples/pretrain_pmc_13b.sh):
#   4 nodes, on each:    NNODES=4 NODE_RANK=<0..3> MASTER_ADDR=<node 0> bash examples/pretrain_pmc_70b.sh
#   under torchrun:      torchrun --no-python --nproc-per-node 8 --nnodes 4 --node-rank <0..3> \
#                            --master-addr <node 0> --master-port 6000 examples/pretrain_pmc_70b.sh
#   check, no GPU:       DRY_RUN=1 bash examples/pretrain_pmc_70b.sh   (config, data plan, memory estimate)
# Extra arguments are passed on to `python -m megapmc.pretrain` (they win over the ones below).
set -euo pipefail

SCRIPT=pretrain_pmc_70b.sh
DEFAULT_MASTER_PORT=6000
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && DRY_RUN=1; done
source "$(dirname "${BASH_SOURCE[0]}")/stage1_recipe.sh"
stage1_require_env LLaMA-2-70B
stage1_recipe_args

TP=${TP:-8}
PP=${PP:-2}
MBS=${MBS:-1}

ARGS=(
    --model llama2-70b
    --tensor-model-parallel-size "$TP" --sequence-parallel --pipeline-model-parallel-size "$PP"
    --use-distributed-optimizer --overlap-grad-reduce
    --micro-batch-size "$MBS"
    "${STAGE1_ARGS[@]}"
)
DRY_RUN_ARGS=(--world-size $((NNODES * GPUS_PER_NODE)))
launch megapmc.pretrain "${ARGS[@]}" "$@"
