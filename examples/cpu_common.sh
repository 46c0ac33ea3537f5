# Sourced by the tiny CPU examples (examples/*_tiny_cpu.sh, finetune_task_specific.sh).

# sample_tokenizer SCRIPT DIR VOCAB: keep the caller's TOKENIZER_MODEL, else train a SentencePiece model
# on the embedded pretraining samples into DIR/tokenizer.model (once; reruns reuse it). A checkpoint
# (PRETRAINED_CKPT) is only usable with the tokenizer it was trained with, so it must come with one.
sample_tokenizer() {
    local script=$1 dir=$2 vocab=$3
    if [[ -n "${PRETRAINED_CKPT:-}" && -z "${TOKENIZER_MODEL:-}" ]]; then
        echo "$script: PRETRAINED_CKPT needs TOKENIZER_MODEL, the tokenizer the checkpoint was trained with" >&2
        exit 2
    fi
    if [[ -z "${TOKENIZER_MODEL:-}" ]]; then
        TOKENIZER_MODEL=$dir/tokenizer.model
        if [[ ! -f "$TOKENIZER_MODEL" ]]; then
            python tools/train_tokenizer.py --input megapmc/sample_data/pretrain/{books,papers,general}.jsonl \
                --json-key text --vocab-size "$vocab" --output-prefix "$dir/tokenizer"
        fi
    fi
}
