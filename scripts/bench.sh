#!/usr/bin/env bash
# Runnel's performance figures, measured in one run, each beside its baseline as a ratio
# (see BENCHMARKS.md for the last run and what each figure means).
#
#   bash scripts/bench.sh [--records N] [--rounds R] [--before OLD_RUNNEL] [--json PATH] [--no-build]
#       (defaults: 300000 records of 1024 bytes, 3 rounds, JSON to target/bench-matrix.json)
#
# Installs what is missing (iperf3 and fio from apt, confluent-kafka into .venv), builds
# `target/release/runnel` (unless --no-build), then runs scripts/bench_matrix.py: iperf3
# loopback and fio fsync latency once, then each round on fresh brokers: confluent-kafka
# produce and fetch throughput and broker CPU per GB with default settings and with
# fsync-before-ack, a single-record producer at 5,000 records/s in both modes, 6 against
# 1,000 partitions, and our client against confluent-kafka. With --before, a second binary
# is measured alike in the same rounds, for after/before ratios. Prints the table and writes
# the JSON summary. Every broker is stopped on exit, whatever happens.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

matrix_args=()
build=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --records | --rounds | --before | --json)
            [[ $# -ge 2 ]] || { echo "bench.sh: $1 needs a value" >&2; exit 2; }
            matrix_args+=("$1" "$2"); shift 2 ;;
        --no-build) build=0; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*" >&2; }

missing=()
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v fio >/dev/null 2>&1 || missing+=(fio)
if [[ ${#missing[@]} -gt 0 ]]; then
    step "installing ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then sudo_cmd=(); else sudo_cmd=(sudo -n); fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -q </dev/null
    "${sudo_cmd[@]}" apt-get install -y -q "${missing[@]}" </dev/null
fi
venv_python="$repo_root/.venv/bin/python"
if ! "$venv_python" -c 'import confluent_kafka' >/dev/null 2>&1; then
    step "creating .venv with tests/compat/requirements.txt"
    [[ -x "$venv_python" ]] || python3 -m venv "$repo_root/.venv"
    "$repo_root/.venv/bin/pip" install --quiet --disable-pip-version-check \
        -r tests/compat/requirements.txt </dev/null
fi

if [[ $build -eq 1 ]]; then
    step "cargo build --release -p runnel-cli"
    cargo build --release -p runnel-cli
fi
runnel_bin="$repo_root/target/release/runnel"
[[ -x "$runnel_bin" ]] || { echo "bench.sh: no binary at $runnel_bin" >&2; exit 1; }

# The brokers read RUNNEL_* variables as flags: keep the caller's out of them.
unset_env=()
while read -r name; do unset_env+=(-u "$name"); done < <(compgen -e | grep '^RUNNEL_' || true)
step "scripts/bench_matrix.py"
exec env "${unset_env[@]}" NO_COLOR=1 "$venv_python" scripts/bench_matrix.py \
    --runnel "$runnel_bin" "${matrix_args[@]}"
