# Sourced by the launch scripts (examples/*_pmc_*.sh): input checks and the launch itself.
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
    run_torchrun "$GPUS_PER_NODE" --nnodes "$NNODES" --node-rank "$NODE_RANK" \
        --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" -m "$module" "$@"
    exit $?
}

# run_torchrun NPROC TORCHRUN_ARGS...: torchrun with NPROC workers, supervised so that a signal ends the run
# with one checkpoint and every process exiting 0 (torchrun alone cannot: see torch/distributed/elastic/
# agent/server/api.py, which forwards the signal, waits, then raises SignalException -> exit 1).
#   - SIGTERM/SIGUSR1/SIGINT sent to this shell (Slurm's --signal=B:..., a scheduler, Ctrl-C) go to each
#     worker directly (not to its process group: DataLoader workers would die of it); the ranks finish the
#     iteration, agree, save once and exit 0, and torchrun, never signalled, exits 0.
#   - A signal sent to torchrun itself: it forwards SIGUSR1 too (TORCHELASTIC_SIGNALS_TO_HANDLE; by default
#     it dies of it) and waits SHUTDOWN_TIMEOUT s (default 1800; torchrun's own 30 s cuts a 13B save short)
#     before SIGKILL. It then exits 1; the workers report a clean end in $MEGAPMC_EXIT_STATUS_DIR
#     (megapmc/training/worker_exit.py) and when all NPROC did, this returns 0.
#   - Workers that outlive a killed torchrun get SIGTERM from the kernel (PR_SET_PDEATHSIG), save and exit;
#     this waits for them, so nothing is left running when it returns.
run_torchrun() {
    local nproc=$1 status_dir rc=0 pidfile pid waited=0 clean
    shift
    status_dir=$(mktemp -d "${TMPDIR:-/tmp}/megapmc-exit.XXXXXX")
    # Environment rather than flags, so an older torchrun that knows neither still starts.
    MEGAPMC_EXIT_STATUS_DIR=$status_dir TORCHELASTIC_SIGNALS_TO_HANDLE=SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 \
        TORCH_ELASTIC_SHUTDOWN_TIMEOUT=${SHUTDOWN_TIMEOUT:-1800} torchrun --nproc-per-node "$nproc" "$@" &
    TORCHRUN_PID=$!
    trap '_forward_to_workers TERM' TERM
    trap '_forward_to_workers USR1' USR1
    trap '_forward_to_workers INT' INT
    while true; do  # `wait` returns early (status > 128) whenever a trapped signal arrives
        rc=0
        wait "$TORCHRUN_PID" || rc=$?
        kill -0 "$TORCHRUN_PID" 2>/dev/null || break
    done
    trap - TERM USR1 INT
    for pidfile in "$status_dir"/rank*.pid; do
        [[ -e "$pidfile" ]] || continue
        pid=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$pidfile")
        while kill -0 "$pid" 2>/dev/null && (( waited < ${SHUTDOWN_TIMEOUT:-1800} )); do
            sleep 1
            waited=$((waited + 1))
        done
    done
    clean=$(find "$status_dir" -name 'rank*.exit' | wc -l)
    if (( rc != 0 && clean == nproc )); then
        echo "${SCRIPT:-run_torchrun}: torchrun exited $rc after a signal; all $nproc workers saved and exited cleanly" >&2
        rc=0
    fi
    rm -rf "$status_dir"
    return "$rc"
}

_forward_to_workers() {
    local workers
    workers=$(ps -o pid= --ppid "$TORCHRUN_PID" 2>/dev/null || true)
    if [[ -n "$workers" ]]; then
        # shellcheck disable=SC2086
        kill -s "$1" $workers 2>/dev/null || true
    else  # no worker started yet: torchrun stops the start-up
        kill -s "$1" "$TORCHRUN_PID" 2>/dev/null || true
    fi
}
