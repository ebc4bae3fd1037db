#!/usr/bin/env bash
# Runs darkroom's whole test suite: style, lints and every test.
#
# Installs what the tests need first, idempotently (curl, a C compiler for the fake
# NVML library, prometheus's promtool, tmux, docker-compose, redis-server and
# openssl via apt-get; awscli, boto3 and the openai SDK via pip), so no test is
# ever skipped for a missing tool.
# Builds go to $CARGO_TARGET_DIR (default ~/.cache/darkroom/target) so repeated
# runs and fresh clones reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/darkroom/target}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_needed=()
command -v curl >/dev/null 2>&1 || apt_needed+=(curl)
# The GPU tests build a fake libnvidia-ml.so from C.
command -v cc >/dev/null 2>&1 || apt_needed+=(gcc libc6-dev)
command -v promtool >/dev/null 2>&1 || apt_needed+=(prometheus)
# The dashboard's end-to-end tests run it in a real terminal.
command -v tmux >/dev/null 2>&1 || apt_needed+=(tmux)
# docker-compose.yml is validated by Debian's docker-compose (no engine needed).
command -v docker-compose >/dev/null 2>&1 || apt_needed+=(docker-compose)
# The Redis queue and cache backends run against a real redis-server (TLS certs by openssl);
# setpriv (util-linux) ties each test server's life to the tests.
command -v redis-server >/dev/null 2>&1 || apt_needed+=(redis-server)
command -v openssl >/dev/null 2>&1 || apt_needed+=(openssl)
command -v setpriv >/dev/null 2>&1 || apt_needed+=(util-linux)
if [ "${#apt_needed[@]}" -gt 0 ]; then
    echo "test.sh: installing ${apt_needed[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi

if ! command -v aws >/dev/null 2>&1 || ! python3 -c 'import boto3, openai' >/dev/null 2>&1; then
    echo "test.sh: installing awscli, boto3 and openai" >&2
    python3 -m pip install -q awscli boto3 openai
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked "$@"
# The binary the Dockerfile builds, from the same lock file.
cargo build --release --locked
