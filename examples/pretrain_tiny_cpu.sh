#!/usr/bin/env bash
# Stage 1 (knowledge injection) in miniature, on the CPU: the tiny LLaMA preset with TP=2 (two gloo
# processes under torchrun, sequence parallel) on the embedded sample books : papers : general (15:4:1).
# The same pipeline as examples/pretrain_pmc_13b.sh; a few minutes on two cores.
#
#   bash examples/pretrain_tiny_cpu.sh                   # writes runs/tiny_cpu/
#   OUT=/tmp/run TRAIN_ITERS=60 bash examples/pretrain_tiny_cpu.sh
#
# Optional environment: OUT (run folder), TRAIN_ITERS (150), TOKENIZER_MODEL (default: a SentencePiece
# model trained here on the samples, in seconds), BOOKS_PREFIX / PAPERS_PREFIX / GENERAL_PREFIX (default:
# the samples, tokenised here). Running it again resumes from OUT/checkpoints (finished: nothing to do).
# Output: OUT/checkpoints (iter_XXXXXXX, metrics.jsonl), OUT/tensorboard, OUT/run.png.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/tiny_cpu}
TRAIN_ITERS=${TRAIN_ITERS:-150}
SAMPLES=megapmc/sample_data/pretrain
mkdir -p "$OUT/data"

source examples/cpu_common.sh  # cwd is the repository root (cd above)
sample_tokenizer pretrain_tiny_cpu.sh "$OUT" 512
for source in books papers general; do
    var=${source^^}_PREFIX
    if [[ -z "${!var:-}" ]]; then
        printf -v "$var" '%s' "$OUT/data/${source}_text_document"
        if [[ ! -f "${!var}.idx" ]]; then
            python tools/preprocess_data.py --input "$SAMPLES/$source.jsonl" --output-prefix "$OUT/data/$source" \
                --tokenizer-model "$TOKENIZER_MODEL" --append-eod --workers 1 --no-progress
        fi
    fi
done

# Two ranks on two cores: one thread each.
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m megapmc.pretrain \
    --model tiny --tokenizer-model "$TOKENIZER_MODEL" \
    --tensor-model-parallel-size 2 --sequence-parallel \
    --data-path 15 "$BOOKS_PREFIX" 4 "$PAPERS_PREFIX" 1 "$GENERAL_PREFIX" --split 80,20,0 --num-workers 0 \
    --seq-length 128 --micro-batch-size 4 --global-batch-size 16 --train-iters "$TRAIN_ITERS" \
    --lr 3e-3 --min-lr 3e-4 --lr-decay-style cosine --lr-warmup-iters 10 --weight-decay 0.1 --clip-grad 1.0 \
    --save "$OUT/checkpoints" --load "$OUT/checkpoints" --save-interval 50 --keep-last-checkpoints 2 \
    --log-interval 10 --eval-interval 50 --eval-iters 2 --tensorboard-dir "$OUT/tensorboard" \
    --no-progress-bar "$@"

python tools/plot_run.py "$OUT/checkpoints" --output "$OUT/run.png"
