# Sourced by the stage-1 scripts (examples/pretrain_pmc_13b.sh, examples/pretrain_pmc_70b.sh) after
# launch_common.sh: PMC-LLaMA's knowledge-injection recipe, the same whatever the model and layout.
# stage1_require_env MODEL_NAME checks the environment; stage1_recipe_args fills STAGE1_ARGS (data,
# schedule, optimizer, checkpoints, logging); the script adds the model and its parallel layout.
#
# Where every setting comes from (docs/paper_fidelity.md):
#   [paper]    PMC-LLaMA (Wu et al., arXiv 2304.14454 / JAMIA 2024), knowledge-injection setup;
#   [release]  the only released pretraining script, chaoyi-wu/PMC-LLaMA Pretrain/training.sh (HF Trainer,
#              FSDP, 8 GPUs; PMC-LLaMA-7B on papers) with training.py and Paper_dataset.py; the paper is
#              silent on the optimizer beyond AdamW and lr, so its AdamW settings come from there;
#   [megapmc]  our choice where neither says anything, with the reason.
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
#   [megapmc] selective recompute with flash attention costs almost nothing (the scripts' Layout notes).
# --seed 1234, save/log/eval intervals: [megapmc] (the 13B script's header says what --save-interval 50 risks).

stage1_require_env() {
    local model=$1
    require_data BOOKS_PREFIX
    require_data PAPERS_PREFIX
    require_data GENERAL_PREFIX
    require TOKENIZER_MODEL "$model's tokenizer.model"
    [[ -f "$TOKENIZER_MODEL" ]] || fail "TOKENIZER_MODEL=$TOKENIZER_MODEL: no such file"
    require CHECKPOINT_DIR "the run directory for checkpoints (restarts resume from it)"
    require LLAMA_CKPT "$model converted with tools/convert_checkpoint.py --saver megapmc"
    if [[ "${DRY_RUN:-0}" != 1 && ! -e "$LLAMA_CKPT" ]]; then
        fail "LLAMA_CKPT=$LLAMA_CKPT: no such checkpoint"
    fi
    if [[ -n "${VALID_PREFIX:-}" ]]; then
        require_data VALID_PREFIX
    fi
}

stage1_recipe_args() {
    local tensorboard_dir=${TENSORBOARD_DIR:-$CHECKPOINT_DIR/tensorboard}
    STAGE1_ARGS=(
        --tokenizer-model "$TOKENIZER_MODEL"
        --bf16 --recompute-granularity selective --attention-backend auto
        --seq-length 2048 --global-batch-size 3200
        --data-path 15 "$BOOKS_PREFIX" 4 "$PAPERS_PREFIX" 1 "$GENERAL_PREFIX" --split 1
        --train-epochs 5 --epoch-source 0
        --lr 2e-5 --min-lr 0 --lr-decay-style cosine --lr-warmup-fraction 0.03
        --weight-decay 0 --adam-beta1 0.9 --adam-beta2 0.999 --adam-eps 1e-8 --clip-grad 1.0
        --pretrained-checkpoint "$LLAMA_CKPT" --load "$CHECKPOINT_DIR" --save "$CHECKPOINT_DIR"
        --save-interval 50 --keep-last-checkpoints 3
        --log-interval 1 --eval-interval 100 --eval-iters 10 --tensorboard-dir "$tensorboard_dir"
        --seed 1234
    )
    [[ -n "${VALID_PREFIX:-}" ]] && STAGE1_ARGS+=(--valid-data-path "$VALID_PREFIX")
    [[ -n "${DATA_CACHE_PATH:-}" ]] && STAGE1_ARGS+=(--data-cache-path "$DATA_CACHE_PATH")
    return 0
}
