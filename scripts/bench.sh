#!/usr/bin/env bash
# Runs darkroom's side-by-side benchmarks and prints their ratio tables:
#   S3 server vs s3s-fs (installed into ~/.cache/darkroom/tools on first use),
#   job queue vs Redis 7 (AOF always / everysec) and Python RQ,
#   dispatch end to end (queue -> fake ComfyUI -> store -> complete) vs a bare client,
#   the dashboard's idle CPU and terminal bytes vs top (in tmux),
#   scale-out: jobs/s of one and two nodes on a shared Redis + S3 (vs one embedded node),
#   backups: full and incremental against tar and rsync, GET p99 during a backup,
#   model affinity vs least-loaded dispatch: swaps, makespan, p95 wait,
#   TLS and SSE-S3 against plain HTTP (S3 PUT/GET, 4 KiB and 256 MiB).
# Installs the peers first, idempotently. Benchmarks are timings: run them on a quiet
# machine; the README quotes a run of this script.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/darkroom/target}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi
python3 -c 'import rq' >/dev/null 2>&1 || python3 -m pip install -q rq
python3 -c 'import boto3' >/dev/null 2>&1 || python3 -m pip install -q boto3
command -v tmux >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
command -v rsync >/dev/null 2>&1 || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null

case "${1:-all}" in
    s3) cargo bench --locked --bench s3 ;;
    queue) cargo bench --locked --bench queue ;;
    dispatch) cargo bench --locked --bench dispatch ;;
    dash) cargo bench --locked --bench dash ;;
    cluster) cargo bench --locked --bench cluster ;;
    backup) cargo bench --locked --bench backup ;;
    models) cargo bench --locked --bench models ;;
    crypto) cargo bench --locked --bench crypto ;;
    all)
        cargo bench --locked --bench s3
        cargo bench --locked --bench queue
        cargo bench --locked --bench dispatch
        cargo bench --locked --bench dash
        cargo bench --locked --bench cluster
        cargo bench --locked --bench backup
        cargo bench --locked --bench models
        cargo bench --locked --bench crypto
        ;;
    *) echo "usage: scripts/bench.sh [s3|queue|dispatch|dash|cluster|backup|models|crypto|all]" >&2; exit 2 ;;
esac
