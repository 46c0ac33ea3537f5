#!/usr/bin/env bash
# Instruction tuning on the CPU in a few minutes: the embedded MedC-I fixtures (conversations with an
# instruction pool, MedQA/MedMCQA/PubMedQA-style items with rationales, UMLS RRF rows, a released-format
# excerpt) → instruction JSONL → tokens + loss masks → `python -m megapmc.finetune` on the tiny model.
# The instruction-tuning step of the README's main command; its loss falls over the run.
#
# Environment (all optional):
#   RUN_DIR          where everything goes (default runs/finetune_tiny); a rerun resumes its checkpoints
#   PRETRAINED_CKPT  a megapmc checkpoint of the tiny model to start from (e.g. examples/pretrain_tiny_cpu.sh's
#                    run directory); needs TOKENIZER_MODEL, the tokenizer it was trained with. Without it the
#                    tiny model starts from random weights (a notice says so).
#   TOKENIZER_MODEL  SentencePiece model; default: one trained here on the embedded pretraining samples
#   TP               tensor-parallel size (default 1; >1 runs that many gloo processes under torchrun)
#   TRAIN_EPOCHS     passes over the instruction samples (default 6; a step is 8 samples, packed into rows)
# Extra arguments are passed on to `python -m megapmc.finetune`.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=${RUN_DIR:-runs/finetune_tiny}
SAMPLE=megapmc/sample_data/sft
TP=${TP:-1}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-6}
mkdir -p "$RUN_DIR/data"
# One thread per rank: TP ranks share two cores, and oversubscribed gloo ranks run ~10x slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( TP > 1 ? 1 : 2 ))}

source examples/cpu_common.sh  # cwd is the repository root (cd above)
sample_tokenizer finetune_tiny_cpu.sh "$RUN_DIR" 1000

python tools/build_instruction_data.py --output "$RUN_DIR/data/medc_i.jsonl" \
    --conversations "$SAMPLE/conversations.json" --instruction-pool "$SAMPLE/instruction_pool.json" \
    --medqa "$SAMPLE/medqa_train.jsonl" --medmcqa "$SAMPLE/medmcqa_train.json" \
    --pubmedqa "$SAMPLE/pubmedqa_ori_pqal.json" --pubmedqa-exclude "$SAMPLE/pubmedqa_test_ground_truth.json" \
    --rationales "$SAMPLE/rationales.jsonl" --umls-dir "$SAMPLE/umls" --medc-i "$SAMPLE/medc_i_excerpt.json" \
    --tokenizer-model "$TOKENIZER_MODEL" --no-progress-bar
python tools/preprocess_sft.py --input "$RUN_DIR/data/medc_i.jsonl" --tokenizer-model "$TOKENIZER_MODEL" \
    --output-prefix "$RUN_DIR/data/medc_i" --redraw-epochs 2 --no-progress-bar

ARGS=(
    --model tiny --tokenizer-model "$TOKENIZER_MODEL" --tensor-model-parallel-size "$TP"
    --data-path "$RUN_DIR/data/medc_i" --packing --num-workers 0
    --max-position-embeddings 512 --seq-length 512 --micro-batch-size 2 --global-batch-size 8
    --train-epochs "$TRAIN_EPOCHS"
    --lr 3e-3 --min-lr 3e-4 --lr-decay-style cosine --lr-warmup-iters 2 --weight-decay 0.0 --clip-grad 1.0
    --save "$RUN_DIR/checkpoints" --load "$RUN_DIR/checkpoints" --save-interval 20 --keep-last-checkpoints 2
    --log-interval 2 --eval-interval 0 --tensorboard-dir "$RUN_DIR/tensorboard" --seed 1234
)
if [[ -n "${PRETRAINED_CKPT:-}" ]]; then
    ARGS+=(--pretrained-checkpoint "$PRETRAINED_CKPT")
else
    echo "finetune_tiny_cpu.sh: no PRETRAINED_CKPT, the tiny model starts from random weights"
fi

if [[ "$TP" -gt 1 ]]; then
    torchrun --nproc-per-node "$TP" --master-port "${MASTER_PORT:-29531}" -m megapmc.finetune "${ARGS[@]}" "$@"
else
    python -m megapmc.finetune "${ARGS[@]}" "$@"
fi
echo "finetune_tiny_cpu.sh: checkpoints in $RUN_DIR/checkpoints, per-iteration metrics in $RUN_DIR/checkpoints/metrics.jsonl"
