# Sourced by the 13B launch scripts (examples/*_pmc_13b.sh): input checks and the launch itself.
# The sourcing script sets SCRIPT (its name, for messages) and DEFAULT_MASTER_PORT first, and may set
# the array DRY_RUN_ARGS (extra flags for --dry-run).

fail() { echo "$SCRIPT: $*" >&2; exit 2; }
require() { [[ -n "${!1:-}" ]] || fail "set $1 to $2"; }
require_data() {
    require "$1" "the prefix of an indexed dataset (PREFIX.bin and PREFIX.idx, from tools/preprocess_data.py)"
    [[ -f "${!1}.idx" && -f "${!1}.bin" ]] || fail "$1=${!1}: ${!1}.bin/.idx not found; run tools/preprocess_data.py"
}

GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-localhost}
MASTER_PORT=${MASTER_PORT:-$DEFAULT_MASTER_PORT}
# One CUDA work queue, so each TP/SP collective starts before the GEMM it overlaps (Megatron needs it).
export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}

# launch MODULE ARGS...: print the resolved run under DRY_RUN=1; run this process as one rank when
# torchrun (or srun with torchrun's variables) started it; otherwise start torchrun on this node.
launch() {
    local module=$1
    shift
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        exec python -m "$module" "$@" ${DRY_RUN_ARGS[@]+"${DRY_RUN_ARGS[@]}"} --dry-run
    fi
    if [[ -n "${RANK:-}" && -n "${LOCAL_RANK:-}" ]]; then
        exec python -m "$module" "$@"
    fi
    exec torchrun --nproc-per-node "$GPUS_PER_NODE" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
        --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" -m "$module" "$@"
}
