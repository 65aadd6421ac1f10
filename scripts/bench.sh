#!/usr/bin/env bash
# End-to-end throughput of a release `runnel server`, against the loopback limit measured by
# iperf3 in the same run (see BENCHMARKS.md and shared TESTING.md "Benchmarks").
#
#   bash scripts/bench.sh [--records N]     (default 300000 records of 1024 bytes)
#
# Steps: build `target/release/runnel`; iperf3 on 127.0.0.1 for 5 s (receiver bits/s); start
# the broker on a free loopback port with a temp data dir; confluent-kafka (scripts/
# bench_clients.py, from .venv) produces N records to a 6-partition topic with acks=1, again
# with acks=all, then fetches the acks=1 topic from the beginning; kcat produces a file of N
# 1 KiB lines and consumes it back. Prints a table (with each figure's ratio to iperf3) and a
# final line `BENCH_JSON {...}`. The broker is stopped on exit, whatever happens.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

records=300000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --records) records="${2:?--records needs a number}"; shift 2 ;;
        --records=*) records="${1#--records=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ "$records" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --records must be a positive integer" >&2; exit 2; }
record_bytes=1024
partitions=6

step() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

# --- Tools ---------------------------------------------------------------------------------
missing=()
command -v iperf3 >/dev/null 2>&1 || missing+=(iperf3)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
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

step "cargo build --release -p runnel-cli"
cargo build --release -p runnel-cli
runnel_bin="$repo_root/target/release/runnel"
[[ -x "$runnel_bin" ]] || die "no binary at $runnel_bin"

# --- Temp dir, cleanup -----------------------------------------------------------------------
work="$(mktemp -d -t runnel-bench.XXXXXX)"
broker_pid=""
iperf_pid=""
cleanup() {
    local status=$?
    if [[ -n "$iperf_pid" ]] && kill -0 "$iperf_pid" 2>/dev/null; then kill "$iperf_pid" 2>/dev/null || true; fi
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -f "$work/broker.log" ]]; then
        echo "bench.sh: failed (status $status); broker log tail:" >&2
        tail -n 30 "$work/broker.log" >&2 || true
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() { # port, seconds
    local deadline=$((SECONDS + $2))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.05
    done
}
now() { date +%s.%N; }
cpu_ticks() { # utime + stime of a pid, in clock ticks
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
clk_tck="$(getconf CLK_TCK)"

# --- (a) Loopback baseline -------------------------------------------------------------------
step "iperf3 loopback, 5 s"
iperf_port="$(free_port)"
iperf3 -s -1 -B 127.0.0.1 -p "$iperf_port" >"$work/iperf3-server.log" 2>&1 &
iperf_pid=$!
# Not wait_port: a probe connection would be the one test `-s -1` serves.
listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q LISTEN; }
for _ in $(seq 200); do listening "$iperf_port" && break; sleep 0.05; done
listening "$iperf_port" || die "iperf3 server did not start"
iperf3 -c 127.0.0.1 -p "$iperf_port" -t 5 -J >"$work/iperf3.json"
wait "$iperf_pid" 2>/dev/null || true
iperf_pid=""
iperf_bps="$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' "$work/iperf3.json")"
echo "iperf3 receiver: $iperf_bps bits/s" >&2

# --- The broker -------------------------------------------------------------------------------
port="$(free_port)"
bootstrap="127.0.0.1:$port"
step "starting $runnel_bin server on $bootstrap"
mkdir -p "$work/data"
# The broker reads RUNNEL_* variables as flags: keep the caller's out of it.
unset_env=()
while read -r name; do unset_env+=(-u "$name"); done < <(compgen -e | grep '^RUNNEL_' || true)
env "${unset_env[@]}" NO_COLOR=1 "$runnel_bin" server --listen "$bootstrap" \
    --advertised-listener "$bootstrap" --data-dir "$work/data" --node-id 0 \
    >"$work/broker.log" 2>&1 </dev/null &
broker_pid=$!
wait_port "$port" 20 || die "broker did not listen on $bootstrap"

# --- (b), (c) confluent-kafka ---------------------------------------------------------------
step "confluent-kafka: produce $records x ${record_bytes} B (acks=1, acks=all), then fetch"
"$venv_python" scripts/bench_clients.py run --bootstrap "$bootstrap" --records "$records" \
    --size "$record_bytes" --partitions "$partitions" --broker-pid "$broker_pid" >"$work/clients.json"

# --- (d) kcat ---------------------------------------------------------------------------------
step "kcat: produce and consume $records lines of ${record_bytes} B"
python3 - "$work/lines.txt" "$records" "$record_bytes" <<'EOF'
import random, string, sys
path, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
alphabet = (string.ascii_letters + string.digits).encode()
block = bytes(rng.choice(alphabet) for _ in range(size * 64))
with open(path, "wb") as out:
    for i in range(count):
        start = (i * 131) % (len(block) - size)
        out.write(block[start : start + size] + b"\n")
EOF
kcat_topic="bench-kcat-$RANDOM$RANDOM"
"$venv_python" scripts/bench_clients.py create-topic --bootstrap "$bootstrap" --topic "$kcat_topic" \
    --partitions "$partitions"
kcat_opts=(-b "$bootstrap" -t "$kcat_topic" -q)
TIMEFORMAT='%R %U %S'

b0="$(cpu_ticks "$broker_pid")"
{ time kcat -P "${kcat_opts[@]}" -X acks=1 -X linger.ms=5 -X batch.size=1000000 \
    <"$work/lines.txt" 2>>"$work/kcat.err"; } 2>"$work/kcat-produce.time"
b1="$(cpu_ticks "$broker_pid")"
{ time kcat -C "${kcat_opts[@]}" -o beginning -e -f '%o\n' 2>>"$work/kcat.err" \
    | wc -l >"$work/kcat-consumed"; } 2>"$work/kcat-consume.time"
b2="$(cpu_ticks "$broker_pid")"
consumed="$(tr -d ' ' <"$work/kcat-consumed")"
[[ "$consumed" == "$records" ]] || die "kcat consumed $consumed records, expected $records ($(cat "$work/kcat.err"))"

# --- Summary ----------------------------------------------------------------------------------
step "summary"
python3 - "$work" "$iperf_bps" "$records" "$record_bytes" "$b0" "$b1" "$b2" "$clk_tck" <<'EOF'
import json, sys
work, iperf_bps, records, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
b0, b1, b2, clk_tck = (float(x) for x in sys.argv[5:9])
results = json.load(open(f"{work}/clients.json"))

def kcat_result(name, broker_ticks):
    real, user, sys_ = (float(x) for x in open(f"{work}/kcat-{name}.time").read().split())
    return {
        "records": records, "record_bytes": size, "seconds": round(real, 3),
        "records_per_s": round(records / real), "mb_per_s": round(records * size / 1e6 / real, 2),
        "bits_per_s": round(records * size * 8 / real),
        "client_cpu_pct": round(100 * (user + sys_) / real),
        "broker_cpu_pct": round(100 * broker_ticks / clk_tck / real),
    }

results["kcat_produce_acks_1"] = kcat_result("produce", b1 - b0)
results["kcat_consume"] = kcat_result("consume", b2 - b1)
for value in results.values():
    value["ratio_to_loopback"] = round(value["bits_per_s"] / iperf_bps, 4)

print(f"iperf3 loopback (receiver): {iperf_bps / 1e9:.2f} Gbit/s = {iperf_bps / 8e6:.0f} MB/s")
print(f"{records} records x {size} B values, {records * size / 1e6:.0f} MB per run; MB = 10^6 B of values")
header = f"{'run':<22}{'MB/s':>9}{'records/s':>12}{'seconds':>9}{'vs iperf3':>11}{'client CPU':>12}{'broker CPU':>12}"
print(header)
print("-" * len(header))
for name, r in results.items():
    print(f"{name:<22}{r['mb_per_s']:>9.1f}{r['records_per_s']:>12}{r['seconds']:>9.2f}"
          f"{r['ratio_to_loopback']:>10.1%} {r['client_cpu_pct']:>10}% {r['broker_cpu_pct']:>10}%")
print("(CPU: % of one core over the run; 200% = both cores)")
summary = {"iperf3_loopback_bits_per_s": round(iperf_bps), **results}
print("BENCH_JSON " + json.dumps(summary))
EOF
