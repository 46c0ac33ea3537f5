#!/usr/bin/env bash
# PMC-LLaMA stage 1, knowledge injection: LLaMA-13B continued on medical books : papers : general text
# mixed 15:4:1 in every global batch; seq 2048, global batch 3200, lr 2e-5, 5 epochs of the books,
# bf16, activation checkpointing, flash attention; 4 nodes x 8 A100-80GB.
# Where every setting comes from is said beside it in ARGS below, and in docs/paper_fidelity.md:
#   [paper]    PMC-LLaMA (Wu et al., arXiv 2304.14454 / JAMIA 2024), knowledge-injection setup;
#   [release]  the only released pretraining script, chaoyi-wu/PMC-LLaMA Pretrain/training.sh (HF Trainer,
#              FSDP, 8 GPUs; PMC-LLaMA-7B on papers) with training.py and Paper_dataset.py; the paper is
#              silent on the optimizer beyond AdamW and lr, so its AdamW settings come from there;
#   [megapmc]  our choice where neither says anything, with the reason.
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

require_data BOOKS_PREFIX
require_data PAPERS_PREFIX
require_data GENERAL_PREFIX
require TOKENIZER_MODEL "LLaMA's tokenizer.model"
[[ -f "$TOKENIZER_MODEL" ]] || fail "TOKENIZER_MODEL=$TOKENIZER_MODEL: no such file"
require CHECKPOINT_DIR "the run directory for checkpoints (restarts resume from it)"
require LLAMA_CKPT "LLaMA-13B converted with tools/convert_checkpoint.py --saver megapmc"
if [[ "$DRY_RUN" != 1 && ! -e "$LLAMA_CKPT" ]]; then
    fail "LLAMA_CKPT=$LLAMA_CKPT: no such checkpoint"
fi

TP=${TP:-2}
MBS=${MBS:-2}
TENSORBOARD_DIR=${TENSORBOARD_DIR:-$CHECKPOINT_DIR/tensorboard}

# --data-path: [paper] books : papers : general = 15 : 4 : 1 in every batch (exactly, per global batch).
# --train-epochs 5 --epoch-source 0: [paper] 5 epochs, an epoch being one pass over the books; --split 1
#   holds no documents out, so every book token is in the epoch (validation reads VALID_PREFIX instead),
#   and `tools/data_plan.py` with these flags prints the iterations this run trains
#   (tests/examples/test_pretrain_plan.py checks both).
# --seq-length 2048, --global-batch-size 3200: [paper] (the release's 7B run used 512 and 4x4x8 = 128).
# --lr 2e-5: [paper] and [release].
# AdamW betas 0.9/0.999, eps 1e-8, weight decay 0: [release] (HF Trainer's adamw_torch defaults, its
#   --weight_decay 0.); megapmc's own defaults (beta2 0.95, Megatron's) would be a departure nobody ran.
# Warmup 3% then cosine to 0: [release] (--warmup_ratio 0.03 --lr_scheduler_type cosine; HF's cosine ends at 0).
# --clip-grad 1.0: [release] (HF Trainer's default max_grad_norm).
# --bf16: [paper] and [release]. --recompute-granularity selective: [paper] uses gradient checkpointing;
#   [megapmc] selective recompute with flash attention costs almost nothing and fits 80 GB (see Layout).
# TP/SP/distributed optimizer: [megapmc] Megatron's layout in place of the paper's FSDP (same math).
# --seed 1234, save/log/eval intervals: [megapmc] (see above for the save interval).
ARGS=(
    --model llama-13b
    --tokenizer-model "$TOKENIZER_MODEL"
    --tensor-model-parallel-size "$TP" --sequence-parallel
    --use-distributed-optimizer --overlap-grad-reduce
    --bf16 --recompute-granularity selective --attention-backend auto
    --seq-length 2048 --micro-batch-size "$MBS" --global-batch-size 3200
    --data-path 15 "$BOOKS_PREFIX" 4 "$PAPERS_PREFIX" 1 "$GENERAL_PREFIX" --split 1
    --train-epochs 5 --epoch-source 0
    --lr 2e-5 --min-lr 0 --lr-decay-style cosine --lr-warmup-fraction 0.03
    --weight-decay 0 --adam-beta1 0.9 --adam-beta2 0.999 --adam-eps 1e-8 --clip-grad 1.0
    --pretrained-checkpoint "$LLAMA_CKPT" --load "$CHECKPOINT_DIR" --save "$CHECKPOINT_DIR"
    --save-interval 50 --keep-last-checkpoints 3
    --log-interval 1 --eval-interval 100 --eval-iters 10 --tensorboard-dir "$TENSORBOARD_DIR"
    --seed 1234
)
if [[ -n "${VALID_PREFIX:-}" ]]; then
    require_data VALID_PREFIX
    ARGS+=(--valid-data-path "$VALID_PREFIX")
fi
[[ -n "${DATA_CACHE_PATH:-}" ]] && ARGS+=(--data-cache-path "$DATA_CACHE_PATH")
DRY_RUN_ARGS=(--world-size $((NNODES * GPUS_PER_NODE)))
launch megapmc.pretrain "${ARGS[@]}" "$@"
