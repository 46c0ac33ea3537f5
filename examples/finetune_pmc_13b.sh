#!/usr/bin/env bash
# PMC-LLaMA stage 2, instruction tuning: the knowledge-injected LLaMA-13B (stage 1) tuned on MedC-I with the
# loss on the response only; 3 epochs, global batch 256 SAMPLES per optimizer step (packed into as few rows
# of 2048 tokens as they need, attention kept inside each sample; the loss is the token mean over the
# step's response tokens), lr 2e-5 (cosine, 3% warmup), bf16; one node of 8 A100-80GB. The log's
# `samples` field shows the 256 each step consumed; MBS counts packed rows per rank (memory only).
#
# Layout: TP=2 x DP=4, distributed optimizer, full recompute. Per GPU: bf16 weights 13 GB + fp32 main
# grads 26 GB + fp32 master weights and Adam moments 78 GB / DP 4 = 19.5 GB, about 59 GB before
# activations; TP=1 does not fit (weights + grads alone are 78 GB). Override with TP=..., MBS=....
#
# Data, built once (see tools/build_instruction_data.py --help for every source):
#   python tools/build_instruction_data.py --output medc_i.jsonl --conversations ... --instruction-pool ... \
#       --medqa US/4_options/phrases_no_exclude_train.jsonl --medmcqa train.json --pubmedqa ori_pqaa.json \
#       --rationales ... --umls-dir META --tokenizer-model tokenizer.model
#   (or --medc-i release.json: the released MedC-I, taken byte for byte)
#   python tools/preprocess_sft.py --input medc_i.jsonl --tokenizer-model tokenizer.model \
#       --output-prefix data/medc_i --redraw-epochs 3 --workers 16
#
# Environment (the run stops with a message naming what is missing):
#   SFT_DATA         prefix written by tools/preprocess_sft.py (SFT_DATA_sft.json must exist)
#   TOKENIZER_MODEL  LLaMA's tokenizer.model (the one the data was tokenised with)
#   PRETRAINED_CKPT  the stage-1 run directory or one of its iter_XXXXXXX checkpoints (any converted
#                    megapmc checkpoint of LLaMA-13B works too), at the same TP size
#   CHECKPOINT_DIR   run directory of this stage: checkpoints, metrics.jsonl; a restart resumes from it
#   optional: TENSORBOARD_DIR (default $CHECKPOINT_DIR/tensorboard), GPUS_PER_NODE (8), NNODES (1),
#             NODE_RANK (0), MASTER_ADDR (localhost), MASTER_PORT (6001), DRY_RUN=1
#
# Launch lines:
#   one node:         bash examples/finetune_pmc_13b.sh
#   under torchrun:   torchrun --no-python --nproc-per-node 8 examples/finetune_pmc_13b.sh
#   check, no GPU:    DRY_RUN=1 bash examples/finetune_pmc_13b.sh   (resolved config and data plan)
# Extra arguments are passed on to `python -m megapmc.finetune` (they win over the ones below).
set -euo pipefail

SCRIPT=finetune_pmc_13b.sh
DEFAULT_MASTER_PORT=6001
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && DRY_RUN=1; done

require SFT_DATA "the prefix written by tools/preprocess_sft.py"
[[ -f "${SFT_DATA}_sft.json" ]] || fail "SFT_DATA=$SFT_DATA: ${SFT_DATA}_sft.json not found; run tools/preprocess_sft.py"
require TOKENIZER_MODEL "LLaMA's tokenizer.model"
[[ -f "$TOKENIZER_MODEL" ]] || fail "TOKENIZER_MODEL=$TOKENIZER_MODEL: no such file"
require CHECKPOINT_DIR "the run directory for checkpoints (restarts resume from it)"
require PRETRAINED_CKPT "the stage-1 run directory (examples/pretrain_pmc_13b.sh's CHECKPOINT_DIR)"
if [[ "$DRY_RUN" != 1 && ! -e "$PRETRAINED_CKPT" ]]; then
    fail "PRETRAINED_CKPT=$PRETRAINED_CKPT: no such checkpoint"
fi

TP=${TP:-2}
MBS=${MBS:-4}
TENSORBOARD_DIR=${TENSORBOARD_DIR:-$CHECKPOINT_DIR/tensorboard}

# AdamW betas 0.9/0.999, eps 1e-8, clip 1.0: [release] SFT/train.py runs HF Trainer with optim adamw_torch
#   and sets no optimizer field itself, so TrainingArguments' defaults. lr 2e-5, 3 epochs, batch 256: [paper].
#   Weight decay 0, 3% warmup, cosine: [megapmc] Stanford Alpaca's command, which SFT/train.py says it is
#   adapted from (no SFT command line was released).
ARGS=(
    --model llama-13b
    --tokenizer-model "$TOKENIZER_MODEL"
    --tensor-model-parallel-size "$TP" --sequence-parallel
    --use-distributed-optimizer --overlap-grad-reduce
    --bf16 --recompute-granularity full --attention-backend auto
    --seq-length 2048 --micro-batch-size "$MBS" --global-batch-size 256
    --data-path "$SFT_DATA" --packing --valid-fraction 0.005
    --train-epochs 3
    --lr 2e-5 --min-lr 0 --lr-decay-style cosine --lr-warmup-fraction 0.03
    --weight-decay 0.0 --adam-beta1 0.9 --adam-beta2 0.999 --adam-eps 1e-8 --clip-grad 1.0
    --pretrained-checkpoint "$PRETRAINED_CKPT" --load "$CHECKPOINT_DIR" --save "$CHECKPOINT_DIR"
    --save-interval 100 --keep-last-checkpoints 3
    --log-interval 1 --eval-interval 100 --eval-iters 5 --tensorboard-dir "$TENSORBOARD_DIR"
    --seed 1234
)
launch megapmc.finetune "${ARGS[@]}" "$@"
