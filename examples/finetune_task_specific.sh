#!/usr/bin/env bash
# PMC-LLaMA's task-specific fine-tuning setting: fine-tune a checkpoint on each benchmark's own TRAINING
# set (MedQA-USMLE 4-option train, MedMCQA train, PubMedQA PQA-A `ori_pqaa.json`), answers only (no
# rationale), with the very prompt the evaluation asks (`--answers-only`: the instruction and the
# question/options rendering of megapmc/sft/template.py, which tools/evaluate.py --mode generate uses);
# check that no test question leaked into that data; then evaluate on the three test sets.
#
#   1. tools/build_instruction_data.py --answers-only   train splits (original files) -> instruction JSONL
#   2. tools/check_contamination.py      13-gram overlap of that JSONL with the test sets (expect 0)
#   3. tools/preprocess_sft.py           tokens + loss masks (the response tokenised after the prompt)
#   4. python -m megapmc.finetune        steps of GLOBAL_BATCH samples, loss on the answers only
#   5. tools/evaluate.py --load          generation (the paper's setting) and log-likelihood
#
# The defaults run on the CPU in a few minutes: the handmade benchmark items shipped with megapmc and
# the tiny model (the shipped benchmark sample has no PQA-A file; megapmc/sample_data/sft's stands in).
# For the paper's run set BENCH_DIR to the original files (layout in tools/evaluate.py, plus
# pubmedqa/ori_pqaa.json), MODEL=llama-13b, PRETRAINED_CKPT, TOKENIZER_MODEL, TP=8 and the batch/LR below.
#
# Environment (all optional):
#   RUN_DIR          output directory (default runs/finetune_task_specific); a rerun resumes its checkpoints
#   BENCH_DIR        original benchmark files (default megapmc/sample_data/benchmarks)
#   PUBMEDQA_TRAIN   PubMedQA's PQA-A (default $BENCH_DIR/pubmedqa/ori_pqaa.json)
#   PRETRAINED_CKPT  megapmc checkpoint to start from (needs TOKENIZER_MODEL); default: random tiny model
#   TOKENIZER_MODEL  SentencePiece model (default: one trained here on the embedded pretraining samples)
#   MODEL TP SEQ_LENGTH MICRO_BATCH GLOBAL_BATCH LR TRAIN_EPOCHS   (default tiny 1 512 2 8 3e-3 4);
#                    GLOBAL_BATCH counts samples per optimizer step, MICRO_BATCH packed rows per rank
#   MAX_NEW_TOKENS   generation budget at evaluation (default 32: the answer line is all it is trained to say)
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-runs/finetune_task_specific}
BENCH_DIR=${BENCH_DIR:-megapmc/sample_data/benchmarks}
MODEL=${MODEL:-tiny}
TP=${TP:-1}
SEQ_LENGTH=${SEQ_LENGTH:-512}
MICRO_BATCH=${MICRO_BATCH:-2}
GLOBAL_BATCH=${GLOBAL_BATCH:-8}
LR=${LR:-3e-3}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-4}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-32}
# One thread per rank: TP ranks share two cores, and oversubscribed gloo ranks run ~10x slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( TP > 1 ? 1 : 2 ))}
mkdir -p "$RUN_DIR/data"

source examples/cpu_common.sh  # cwd is the repository root (cd above)
sample_tokenizer finetune_task_specific.sh "$RUN_DIR" 1000

# 1. The three training splits, answers only, each row's prompt exactly the evaluation's.
PUBMEDQA_TRAIN=${PUBMEDQA_TRAIN:-$BENCH_DIR/pubmedqa/ori_pqaa.json}
if [[ ! -f "$PUBMEDQA_TRAIN" && "$BENCH_DIR" == megapmc/sample_data/benchmarks ]]; then
    PUBMEDQA_TRAIN=megapmc/sample_data/sft/pubmedqa_ori_pqaa.json
fi
[[ -f "$PUBMEDQA_TRAIN" ]] || { echo "finetune_task_specific.sh: $PUBMEDQA_TRAIN not found; PubMedQA's training set is PQA-A (ori_pqaa.json), set PUBMEDQA_TRAIN" >&2; exit 2; }
python tools/build_instruction_data.py --output "$RUN_DIR/data/task_specific.jsonl" --answers-only \
    --medqa "$BENCH_DIR/medqa/US/4_options/phrases_no_exclude_train.jsonl" \
    --medmcqa "$BENCH_DIR/medmcqa/train.json" --pubmedqa "$PUBMEDQA_TRAIN" \
    --tokenizer-model "$TOKENIZER_MODEL" --no-progress-bar

# 2. Would a test question be in the training data? The table goes to the console and the run directory.
python tools/check_contamination.py --train "$RUN_DIR/data/task_specific.jsonl" --data-dir "$BENCH_DIR" \
    --output-dir "$RUN_DIR/contamination"

# 3-4. Tokenise and instruction-tune.
python tools/preprocess_sft.py --input "$RUN_DIR/data/task_specific.jsonl" --tokenizer-model "$TOKENIZER_MODEL" \
    --output-prefix "$RUN_DIR/data/task_specific" --no-progress-bar
ARGS=(
    --model "$MODEL" --tokenizer-model "$TOKENIZER_MODEL" --tensor-model-parallel-size "$TP"
    --data-path "$RUN_DIR/data/task_specific" --packing --num-workers 0
    --seq-length "$SEQ_LENGTH" --micro-batch-size "$MICRO_BATCH" --global-batch-size "$GLOBAL_BATCH"
    --train-epochs "$TRAIN_EPOCHS" --lr "$LR" --min-lr 0 --lr-decay-style cosine --lr-warmup-iters 2
    --weight-decay 0.0 --clip-grad 1.0 --save "$RUN_DIR/checkpoints" --load "$RUN_DIR/checkpoints"
    --save-interval 50 --log-interval 2 --eval-interval 0 --seed 1234
)
if [[ "$MODEL" == tiny ]]; then
    # The tiny preset's 256 positions would cut the longer benchmark records (up to ~400 tokens) before
    # their answers; rotary positions have no weights, so a longer context is free.
    ARGS+=(--max-position-embeddings "$SEQ_LENGTH")
fi
if [[ -n "${PRETRAINED_CKPT:-}" ]]; then
    ARGS+=(--pretrained-checkpoint "$PRETRAINED_CKPT")
else
    echo "finetune_task_specific.sh: no PRETRAINED_CKPT, the tiny model starts from random weights"
fi
launch() {  # one process, or TP processes under torchrun
    if [[ "$TP" -gt 1 ]]; then
        torchrun --nproc-per-node "$TP" --master-port "${MASTER_PORT:-29533}" "$@"
    else
        python "$@"
    fi
}
launch -m megapmc.finetune "${ARGS[@]}"

# 5. Evaluate the fine-tuned checkpoint: generation (answer parsed) and log-likelihood.
for MODE in generate loglik; do
    launch tools/evaluate.py --load "$RUN_DIR/checkpoints" --tokenizer "$TOKENIZER_MODEL" \
        --tensor-model-parallel-size "$TP" --data-dir "$BENCH_DIR" --mode "$MODE" \
        --max-new-tokens "$MAX_NEW_TOKENS" --output-dir "$RUN_DIR/eval_$MODE"
done
echo "finetune_task_specific.sh: results in $RUN_DIR/eval_generate/results.md and $RUN_DIR/eval_loglik/results.md"
